"""The run lifecycle every radtune trainer shares: arguments, splits, resume, finishing, publishing, `run_info.json`.

A task's `train.py` (after TRL's `sft.py`) declares its dataclasses (its script arguments subclass
`RunArguments`, or `GenerationRunArguments` when it generates), a public `build_trainer(...)` and a short `main`:

    def main(script_args, training_args, model_args):
        push = take_push_request(training_args)          # before the Trainer exists: radtune publishes, not it
        trainer, ... = build_trainer(script_args, training_args, model_args)   # uses load_run_splits
        train_result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
        finish_run(trainer, train_result, run_info=run_info(...), processors=[...], title=...)
        if splits.test is not None: report = <the task's evaluator>(..., out_dir=training_args.output_dir)
        publish_run(training_args.output_dir, push, base_model=..., dataset_name=..., tags=...)

    if __name__ == "__main__":
        run_main(main, make_parser)

Evaluation commands read what the run recorded (`read_run_info`) and write into a new folder
(`evaluation_out_dir`), never over the run's own files. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radtune.common.generation_eval import GENERATION_EVAL_SAMPLES

RUN_INFO_FILE = "run_info.json"
EVAL_FOLDER_PREFIX = "eval-"


# The help texts of the shared arguments (`--help` of every training module shows them).
_HELP = {
    "dataset_name": "The dataset: a folder written by `radtune data build` / `radtune data qa` (save_to_disk), any "
    "local data folder `datasets.load_dataset` reads, or a Hub dataset repo id.",
    "dataset_eval_split": "Split evaluated during training (when eval_strategy is not `no`). When the dataset has "
    "none, dataset_test_split is used, with a warning (its final numbers then select the model).",
    "dataset_test_split": "Split of the final evaluation after training (skipped, with a notice, when the dataset has "
    "none). Skip the final evaluation with --eval_after_training false.",
    "image_column": "Column of the images (else the first of an `images` list column).",
    "max_eval_samples": "Evaluate on the first N rows only, both during training (eval split) and after it (test "
    "split).",
    "eval_after_training": "After training, evaluate on dataset_test_split and write evaluation_results.csv and "
    "metrics.json into output_dir (false: skip).",
    "generation_eval_samples": "At each evaluation during training, generate for the first N rows of the eval split "
    "and log the task's metrics as eval_<metric>, usable as metric_for_best_model (captioning: eval_bleu_1..4, "
    "eval_rouge_l, eval_cider; VQA: eval_strict_closed_accuracy, eval_strict_open_recall, …); 0: eval loss only.",
    "eval_ablation": "The final evaluation also generates with blank and noise images and flags a model that ignores "
    "the image, as the task's evaluate command does by default (false: real images only).",
}


def _arg(default, name: str):
    return field(default=default, metadata={"help": _HELP[name]})


@dataclass
class RunArguments:
    """The data arguments every trainer shares (TRL's names): the dataset, its splits and sample limits."""

    dataset_name: str | None = _arg(None, "dataset_name")
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_eval_split: str = _arg("validation", "dataset_eval_split")
    dataset_test_split: str = _arg("test", "dataset_test_split")
    image_column: str = _arg("image", "image_column")
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    max_eval_samples: int | None = _arg(None, "max_eval_samples")
    eval_after_training: bool = _arg(True, "eval_after_training")

    def __post_init__(self):
        if not self.dataset_name:
            raise ValueError("dataset_name is required: a folder written by `radtune data build`/`radtune data qa`, "
                             "a local data folder or a Hub dataset repo id")  # fmt: skip
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")


@dataclass
class GenerationRunArguments(RunArguments):
    """`RunArguments` of a trainer whose model generates text (captions, answers), scored while it trains and after.

    A task changes a default by redeclaring the field in its subclass (e.g. `max_new_tokens: int = 32`).
    """

    generation_eval_samples: int = _arg(GENERATION_EVAL_SAMPLES, "generation_eval_samples")
    max_new_tokens: int = field(default=64, metadata={"help": "Longest generated text, in tokens."})
    eval_batch_size: int = field(default=8, metadata={"help": "Rows per generate call in the final evaluation."})
    eval_ablation: bool = _arg(True, "eval_ablation")

    def __post_init__(self):
        super().__post_init__()
        for name, low in (("generation_eval_samples", 0), ("max_new_tokens", 1), ("eval_batch_size", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")


@dataclass
class RunSplits:
    """The splits of a run: the whole `DatasetDict` and the train / eval / test splits with their limits applied.

    `eval` is `None` when the trainer does not evaluate during training; `test` is `None` when the final
    evaluation is off (`eval_after_training false`) or the dataset has no test split.
    """

    dataset: Any
    train: Any
    eval: Any = None
    test: Any = None
    eval_split: str | None = None
    test_split: str | None = None


def _first(dataset, limit: int | None):
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def load_run_splits(
    script_args: RunArguments,
    training_args,
    prepare: Callable[[Any], Any] | None = None,
    required_columns: Iterable[str] = (),
) -> RunSplits:
    """Load `script_args.dataset_name` and pick its splits, the same way in every trainer.

    Args:
        script_args (`RunArguments`): dataset, split names and limits.
        training_args (`transformers.TrainingArguments`): its `eval_strategy` says whether an eval split is needed.
        prepare (`Callable`, *optional*): applied to each split before the limits (e.g. dropping rows with an
            empty text), so `max_*_samples` count usable rows.
        required_columns (`Iterable[str]`, *optional*): columns the train split must have.

    Raises:
        `ValueError`: the train split is missing, a required column is missing, or evaluation during training is on
        and the dataset has neither the eval nor the test split (the message lists the splits it has).
    """
    from radtune.common.credentialed import dataset_marks
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.generation_eval import choose_eval_split

    dataset = load_dataset_any(script_args.dataset_name)
    dataset_marks(script_args.dataset_name, dataset)  # remembered for run_info's `credentialed` mark
    name, have = script_args.dataset_name, ", ".join(dataset)
    if script_args.dataset_train_split not in dataset:
        raise ValueError(f"dataset_train_split {script_args.dataset_train_split!r} is not a split of {name}; "
                         f"it has: {have}")  # fmt: skip
    missing = [column for column in required_columns
               if column not in dataset[script_args.dataset_train_split].column_names]  # fmt: skip
    if missing:
        columns = ", ".join(dataset[script_args.dataset_train_split].column_names)
        raise ValueError(f"{name} has no {', '.join(repr(c) for c in missing)} column; it has: {columns}")
    prepare = prepare or (lambda split: split)
    splits = RunSplits(dataset=dataset, train=_first(prepare(dataset[script_args.dataset_train_split]),
                                                     script_args.max_train_samples))  # fmt: skip
    if len(splits.train) == 0:
        raise ValueError(f"the {script_args.dataset_train_split!r} split of {name} has no usable rows")
    if training_args.eval_strategy != "no":
        eval_split = choose_eval_split(dataset, script_args.dataset_eval_split, script_args.dataset_test_split)
        if eval_split is None:
            raise ValueError(f"evaluation during training needs the {script_args.dataset_eval_split!r} or "
                             f"{script_args.dataset_test_split!r} split; {name} has: {have} (set --dataset_eval_split,"
                             " or --eval_strategy no)")  # fmt: skip
        splits.eval_split = eval_split
        splits.eval = _first(prepare(dataset[eval_split]), script_args.max_eval_samples)
    if script_args.eval_after_training:
        if script_args.dataset_test_split in dataset:
            splits.test_split = script_args.dataset_test_split
            splits.test = _first(prepare(dataset[splits.test_split]), script_args.max_eval_samples)
        else:
            print(f"notice: {name} has no {script_args.dataset_test_split!r} split (it has: {have}); the final "
                  "evaluation is skipped")  # fmt: skip
    return splits


def resume_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from, as `--resume_from_checkpoint` asks.

    `true` or `last`: the newest complete `checkpoint-*` in `output_dir`; an incomplete one (a run killed while
    writing it: no `trainer_state.json`, missing or truncated weights) is skipped with a one-line notice in favour of
    the previous complete one; none: start fresh, with a notice. A path: that checkpoint (it must exist and be
    complete). Unset, `false` or `none`: start fresh.

    Raises:
        `ValueError`: a checkpoint path that does not exist or is incomplete.
    """
    from radtune.common.checkpoints import checkpoint_problem, checkpoints_newest_first

    value = training_args.resume_from_checkpoint
    if value is None or str(value).strip().lower() in ("", "false", "none"):
        return None
    if str(value).strip().lower() in ("true", "last"):
        folder = training_args.output_dir
        for checkpoint in checkpoints_newest_first(folder):
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return str(checkpoint)
            print(f"notice: skipping incomplete {checkpoint} ({problem}: killed while saving?)")
        print(f"notice: no complete checkpoint in {folder} to resume from; training starts from the beginning")
        return None
    if not os.path.isdir(value):
        raise ValueError(f"resume_from_checkpoint: no such checkpoint folder: {value}")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ValueError(f"resume_from_checkpoint: {value} is incomplete ({problem}); pass an earlier checkpoint, or "
                         "`last` for the newest complete one")  # fmt: skip
    return str(value)


@dataclass
class PushRequest:
    """Where a finished run is published: `repo_id` (namespace/name, or a name in the token's namespace)."""

    repo_id: str
    private: bool = True


def take_push_request(training_args) -> PushRequest | None:
    """Take `--push_to_hub/--hub_model_id/--hub_private_repo` out of the Trainer's hands, before it is built.

    The Trainer would create the repo with the Hub's default visibility and push every checkpoint; radtune
    publishes once, at the end, with its model card, private unless `--hub_private_repo false`.

    Returns:
        `PushRequest` or `None` (no push asked); `training_args.push_to_hub` is `False` afterwards.
    """
    if not training_args.push_to_hub:
        return None
    training_args.push_to_hub = False
    repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
    return PushRequest(repo_id=repo_id, private=training_args.hub_private_repo is not False)


def quantization_info(model_args) -> dict | None:
    """The quantisation of TRL's `ModelConfig` as `run_info.json` records it (`None`: none), so inference loads
    the base model as training did."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    return {"load_in_4bit": bool(model_args.load_in_4bit), "load_in_8bit": bool(model_args.load_in_8bit),
            "bnb_4bit_quant_type": model_args.bnb_4bit_quant_type,
            "use_bnb_nested_quant": bool(model_args.use_bnb_nested_quant),
            "bnb_4bit_quant_storage": model_args.bnb_4bit_quant_storage, "dtype": model_args.dtype}  # fmt: skip


def lora_config_of(model_args, target_modules, modules_to_save=(), task_type: str | None = None):
    """The `peft.LoraConfig` of TRL's `ModelConfig` LoRA fields, the same way in every trainer.

    Args:
        model_args (`trl.ModelConfig`): `lora_r`, `lora_alpha`, `lora_dropout`, `use_rslora`, `use_dora`;
            `lora_target_modules` replaces `target_modules`, `lora_modules_to_save` comes before `modules_to_save`.
        target_modules (`str` or `list[str]`): the task's default targets (a regular expression or names).
        modules_to_save (`Sequence[str]`, *optional*): modules the task trains fully beside the adapter.
        task_type (`str`, *optional*): peft's task type (`"CAUSAL_LM"` for LLaVA).
    """
    from peft import LoraConfig

    saved = [*(model_args.lora_modules_to_save or []), *modules_to_save]
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=model_args.lora_target_modules or target_modules,
        modules_to_save=saved or None,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        task_type=task_type,
    )


def run_info(task: str, script_args: RunArguments, training_args, base_model: str | None, **facts) -> dict:
    """What `run_info.json` records: everything evaluation needs to score the run as it was trained.

    Args:
        task (`str`): `vqa`, `captioning`, `blip-vqa`, `contrastive`.
        script_args (`RunArguments`): dataset, splits and columns.
        training_args: seed, output folder.
        base_model (`str`, *optional*): the model the run started from (an adapter's base).
        facts: task-specific facts (`architecture`, `text_column`, `quantization`, `use_peft`, `max_new_tokens`, …).

    `credentialed` is true when the dataset is (MIMIC-CXR, CheXpert Plus, or derived from them: see
    `radtune.common.credentialed`); publishing reads it.
    """
    from radtune.common.cli import radtune_distributions
    from radtune.common.credentialed import dataset_marks

    return {
        "task": task,
        "base_model": base_model,
        "dataset": script_args.dataset_name,
        "train_split": script_args.dataset_train_split,
        "test_split": script_args.dataset_test_split,
        "image_column": script_args.image_column,
        "seed": training_args.seed,
        "credentialed": bool(dataset_marks(script_args.dataset_name)),
        **facts,
        "radtune": radtune_distributions(),
    }


def finish_run(trainer, train_result, *, info: Mapping[str, Any], processors: Iterable = (), title: str) -> dict:
    """Everything a finished training leaves in `output_dir`, the same for every task.

    Saves the model (or adapter) through the Trainer, the processors (tokenizer, image processor, generation
    config: anything with `save_pretrained`), the train metrics (printed, `train_results.json`), the Trainer state,
    the loss curve (`loss_curve.png`, or a one-line notice when fewer than two losses were logged) and
    `run_info.json`.

    Returns:
        `dict`: the train metrics (with `train_samples` and `num_processes`).
    """
    from radtune.common.plots import plot_loss_curve

    output_dir = Path(trainer.args.output_dir)
    trainer.save_model(str(output_dir))
    metrics = dict(train_result.metrics)
    metrics["train_samples"] = len(trainer.train_dataset)
    metrics["num_processes"] = trainer.accelerator.num_processes
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        for processor in processors:
            processor.save_pretrained(str(output_dir))
        plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png", title=title)
        info = {**info, "num_processes": trainer.accelerator.num_processes,
                "world_size_env": os.environ.get("WORLD_SIZE")}  # fmt: skip
        (output_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return metrics


def log_test_metrics(trainer, metrics: Mapping[str, Any]) -> None:
    """Print the final evaluation's numeric metrics (as the Trainer prints train metrics) and save them as
    `test_results.json` beside `all_results.json`."""
    numbers = {name: value for name, value in metrics.items()
               if isinstance(value, int | float) and not isinstance(value, bool)}  # fmt: skip
    trainer.log_metrics("test", numbers)
    trainer.save_metrics("test", numbers)


def publish_run(output_dir: str | Path, request: PushRequest | None, *, base_model: str | None,
                dataset_name: str | None = None, tags: list[str] | None = None) -> None:  # fmt: skip
    """Write the run's model card (`README.md`; its `datasets:` names `dataset_name` when that is a Hub repo) and,
    when a push was asked, publish the folder (private by default), printing where it went.

    A run whose `run_info.json` is marked `credentialed` is never pushed public from here (the error says how to
    push it) and its per-item files (`evaluation_results.csv`, …) are left out, with a notice.

    Raises:
        `CredentialedPublishError` (a `HubError`): a public push of a credentialed run.
    """
    from radtune.common.model_card import build_model_card, is_hub_id

    output_dir = Path(output_dir)
    on_hub = dataset_name is not None and is_hub_id(dataset_name) and not Path(dataset_name).exists()
    datasets = [dataset_name] if on_hub else None
    # Not pushed: the card's snippet loads the run's folder, and there is no repo to pull.
    repo_id = request.repo_id if request else None
    build_model_card(output_dir, repo_id, base_model=base_model, datasets=datasets, tags=tags).save(
        output_dir / "README.md"
    )
    if request is not None:
        from radtune.common.credentialed import CredentialedPublishError, run_is_credentialed
        from radtune.common.hub import push_folder

        if not request.private and run_is_credentialed(output_dir):
            raise CredentialedPublishError(
                f"{output_dir} was trained on credentialed data: it is saved but was not pushed public. Push it with "
                f"`radtune hub push {output_dir} {request.repo_id}` (private), or add `--public "
                "--allow-credentialed-public` if its data use agreement allows a public model."
            )
        result = push_folder(output_dir, request.repo_id, private=request.private, base_model=base_model,
                             datasets=datasets, tags=tags)  # fmt: skip
        if result.left_out:
            print(f"notice: left out {', '.join(result.left_out)}: per-item results of credentialed data stay here")
        print(f"pushed {output_dir} to {result.repo_url} (private: {result.private})")


def evaluation_meta(training_args, script_args: RunArguments, splits: RunSplits, **facts) -> dict:
    """The `meta` a trainer's final evaluation records in `metrics.json`: the run folder as the model, the dataset,
    the test split, and `facts` (e.g. `base_model`)."""
    return {"model": training_args.output_dir, "dataset": script_args.dataset_name, "split": splits.test_split,
            **facts}  # fmt: skip


def read_run_info(folder: str | Path) -> dict:
    """The `run_info.json` a training run wrote into `folder` — for a `checkpoint-N` folder, its run's — or `{}`
    when there is none (a model not trained by radtune, or a Hub repo without it)."""
    folder = Path(folder)
    path = folder / RUN_INFO_FILE
    if not path.is_file() and re.fullmatch(r"checkpoint-\d+", folder.name):
        path = folder.parent / RUN_INFO_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error


def evaluation_out_dir(model: str | Path, command: str, split: str, out: str | Path | None = None) -> Path:
    """Where an evaluation command writes: `out` when given, else a new folder that holds nothing yet.

    A local model gets `<model>/eval-<command>-<split>` (then `-2`, `-3`, … when that already holds results);
    a Hub repo id gets `./eval-<name>-<command>-<split>` likewise. The run's own files are never overwritten.

    Raises:
        `ValueError`: `out` is a training run's own folder (it holds `run_info.json`).
    """
    if out is not None:
        out = Path(out)
        if (out / RUN_INFO_FILE).is_file():
            raise ValueError(f"--out {out} is a training run's folder: evaluation writes into a new folder "
                             f"(leave --out out to get {out}/{EVAL_FOLDER_PREFIX}{command}-{split})")  # fmt: skip
        return out
    local = Path(model)
    if local.is_dir():
        base = local / f"{EVAL_FOLDER_PREFIX}{command}-{split}"
    else:
        base = Path(f"{EVAL_FOLDER_PREFIX}{str(model).rstrip('/').split('/')[-1]}-{command}-{split}")
    candidate, number = base, 1
    while candidate.exists() and any(candidate.iterdir()):
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate
