"""`radtune vqa`: train, evaluate, predict with and merge LLaVA VQA adapters."""

from __future__ import annotations

from pathlib import Path

import click

from radtune.common.cli_options import evaluation_options, image_column_option, recorded
from radtune.common.launch import train_command
from radtune.llava_vqa.evaluation import BATCH_SIZE, MAX_NEW_TOKENS

TRAIN_MODULE = "radtune.llava_vqa.train"


@click.group("vqa")
def vqa() -> None:
    """Visual question answering with LLaVA-1.5, LLaVA-NeXT, MedGemma / Gemma 3 or SmolVLM / Idefics3: fine-tune
    (LoRA/QLoRA), evaluate, predict, merge.

    \b
    Example:
      radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/slake.yaml
      radtune vqa evaluate --model runs/llava-slake --dataset runs/data/slake --split test
      radtune vqa predict --model me/llava-slake-lora --image chest.png --question "Is there an effusion?"
    """


vqa.add_command(
    train_command(
        TRAIN_MODULE,
        examples=[
            "{command} --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/chexpert_plus_qa.yaml",
            "{command} --accelerate-config zero3 --num-processes 8 -- --config recipe.yaml --learning_rate 1e-4",
            "{command} --cpu --num-processes 2 -- --config packages/llava_vqa/recipes/phantom_cpu.yaml",
            "{command} -- --help",
        ],
    )
)


MODEL_HELP = "A training run's folder, an adapter, a merged model or a Hub repo id."
BASE_MODEL_HELP = "An adapter's base model, when not the one the run recorded."
DEVICE_HELP = "cuda, cpu, … (default: CUDA when available)."


def _loading_options(function):
    """`--load-in-4bit/--no-load-in-4bit` and `--dtype`, both defaulting to what the run recorded."""
    function = click.option(
        "--dtype", help="Weights dtype, e.g. bfloat16 (default: the run's, else the checkpoint's)."
    )(function)
    return click.option("--load-in-4bit/--no-load-in-4bit", default=None,
                        help="Quantise the base model as QLoRA training does (default: as the run trained).")(function)  # fmt: skip


def _run_info(model: str) -> dict:
    """What the model's training run recorded (`{}` for a model radtune did not train); fails early, in a line, on
    a missing model or a run folder with only checkpoints."""
    from radtune.common.hub import HubError, require_model_files
    from radtune.common.run import read_run_info
    from radtune.llava_vqa.inference import resolve

    try:
        folder = resolve(model)
        require_model_files(folder)
        return read_run_info(folder)
    except (HubError, OSError, ValueError) as error:
        raise click.ClickException(f"could not load {model}: {error}") from error


def _load(model: str, base_model: str | None, dtype: str | None, load_in_4bit: bool | None, device: str | None):
    from radtune.common.hub import HubError
    from radtune.llava_vqa.inference import load_vqa_model

    try:
        return load_vqa_model(model, base_model=base_model, dtype=dtype, load_in_4bit=load_in_4bit, device=device)
    except (HubError, OSError, ValueError) as error:
        raise click.ClickException(f"could not load {model}: {error}") from error


@vqa.command(
    "evaluate",
    epilog="""\b
Examples:
  radtune vqa evaluate --model runs/llava-vqa --dataset runs/phantom-qa --split test
  radtune vqa evaluate --model runs/llava-vqa/checkpoint-500 --dataset runs/phantom-qa --split validation
  radtune vqa evaluate --model me/llava-slake-lora --dataset me/slake-qa --out runs/eval-slake""",
)
@evaluation_options(base_model=True, batch_size=BATCH_SIZE)
@_loading_options
@image_column_option()
@click.option("--max-new-tokens", type=click.IntRange(min=1),
              help=f"Longest answer (default: the run's max_new_tokens, else {MAX_NEW_TOKENS}).")  # fmt: skip
@click.option("--ablation/--no-ablation", default=True, show_default=True,
              help="Also answer with blank and noise images, and flag a model that ignores the image.")  # fmt: skip
@click.option("--baseline-split",
              help="Split whose majority answers give the trivial baseline (default: the run's training split, else "
              "train; skipped when absent; '' to skip).")  # fmt: skip
def evaluate(model, base_model, load_in_4bit, dtype, dataset, split, out, max_samples, batch_size, n_resamples,
             device, image_column, max_new_tokens, ablation, baseline_split):  # fmt: skip
    """Answer every question of a QA split and score it (strict and LLaVA-Med metrics), as the trainer's final
    evaluation does.

    Writes `evaluation_results.csv` (one row per question) and `metrics.json` with bootstrap intervals, the
    majority-answer baseline (`majority_baseline/…`, from the training split) and, unless `--no-ablation`, the
    same questions answered with blank and noise images: a model whose score does not drop without the image
    is flagged as ignoring it. A training run's recorded base model, quantisation, dtype, image column,
    max_new_tokens and seed are the defaults. The output goes to a new `<model>/eval-vqa-<split>` folder; the
    run's own files are never overwritten.
    """
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.hub import HubError
    from radtune.common.run import evaluation_out_dir
    from radtune.llava_vqa.evaluation import evaluate_vqa

    try:
        out_dir = evaluation_out_dir(model, "vqa", split, out)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    info = _run_info(model)
    try:
        splits = load_dataset_any(dataset)
    except (HubError, OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    if split not in splits:
        raise click.ClickException(f"split {split!r} not in {dataset}; it has: {', '.join(splits)}")
    baseline_split = recorded(baseline_split, info, "train_split", "train")
    train_dataset = splits[baseline_split] if baseline_split and baseline_split in splits else None
    loaded, processor = _load(model, base_model, dtype, load_in_4bit, device)
    try:
        report = evaluate_vqa(
            loaded, processor, splits[split], out_dir, train_dataset=train_dataset, ablation=ablation,
            batch_size=batch_size, max_new_tokens=recorded(max_new_tokens, info, "max_new_tokens", MAX_NEW_TOKENS),
            max_samples=max_samples, n_resamples=n_resamples, seed=info.get("seed", 0),
            image_column=recorded(image_column, info, "image_column", "image"),
            meta={"model": str(model), "dataset": str(dataset), "split": split,
                  "base_model": base_model or info.get("base_model")},
        )  # fmt: skip
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    _print_report(report)
    click.echo(f"wrote {out_dir / 'evaluation_results.csv'} and {out_dir / 'metrics.json'}")


def _print_report(report: dict) -> None:
    ci = report.get("ci", {})
    for name, value in report["metrics"].items():
        shown = "undefined" if value is None else f"{value:.4f}"
        if name in ci:
            shown += f" [{ci[name][0]:.4f}, {ci[name][1]:.4f}]"
        click.echo(f"{name:48s} {shown}")
    if report.get("subgroups"):
        from radtune.common.metrics.subgroups import subgroup_table

        click.echo(subgroup_table(report["subgroups"]))
    verdict = report["meta"].get("image_ablation")
    if verdict:
        from radtune.common.metrics.bootstrap import ablation_message

        ignored = verdict["ignores_image"]
        click.secho(ablation_message(verdict), fg="red" if ignored else "green", bold=ignored)


@vqa.command(
    "predict",
    epilog="""\b
Examples:
  radtune vqa predict --model runs/llava-vqa --image chest.png --question "Is there a pleural effusion?"
  radtune vqa predict --model me/llava-slake-lora --image study.dcm --question "Which side is the pneumothorax on?\"""",
)
@click.option("--model", required=True, help=MODEL_HELP)
@click.option("--base-model", help=BASE_MODEL_HELP)
@_loading_options
@click.option("--image", required=True, help="Image: a path (PNG, JPEG, DICOM) or an http(s) URL.")
@click.option("--question", required=True, help="The question.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=64, show_default=True, help="Longest answer.")
@click.option("--device", help=DEVICE_HELP)
def predict(model, base_model, load_in_4bit, dtype, image, question, max_new_tokens, device):
    """Answer one question about one image; the answer goes to stdout."""
    from radtune.common.images import ImageLoadError, load_image
    from radtune.llava_vqa.inference import generate_answers

    _run_info(model)  # a missing model, or only checkpoints: a one-line error before anything loads
    try:
        picture = load_image(image)
    except (FileNotFoundError, ImageLoadError) as error:
        raise click.ClickException(str(error)) from error
    loaded, processor = _load(model, base_model, dtype, load_in_4bit, device)
    [answer] = generate_answers(loaded, processor, [picture], [question], max_new_tokens=max_new_tokens,
                                progress=False)  # fmt: skip
    click.echo(answer)


@vqa.command(
    "merge",
    epilog="""\b
Example:
  radtune vqa merge --model runs/llava-vqa --out runs/llava-vqa-merged""",
)
@click.option("--model", required=True, help="A training run's folder, a LoRA adapter or its Hub repo id.")
@click.option("--base-model", help=BASE_MODEL_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the merged model (not the adapter's own).")  # fmt: skip
@click.option("--dtype", help="Weights dtype of the merged model (default: the run's, else the checkpoint's).")
@click.option("--device", help=DEVICE_HELP)
def merge(model, base_model, out, dtype, device):
    """Merge a LoRA adapter into its (unquantised) base model; the result loads with plain transformers.

    The merged folder holds the full model and its processor (with radtune's training chat template), so
    `AutoModelForImageTextToText.from_pretrained(OUT)` needs neither peft nor radtune (LLaVA-1.5, LLaVA-NeXT,
    Gemma 3 / MedGemma, Idefics3 / SmolVLM alike).
    """
    from radtune.llava_vqa.inference import resolve

    _run_info(model)  # a missing model, or only checkpoints: a one-line error
    folder = resolve(model)
    if not (folder / "adapter_config.json").is_file():
        raise click.ClickException(f"{model} is not a LoRA adapter (no adapter_config.json): nothing to merge")
    if out.resolve() == folder.resolve():
        raise click.ClickException(f"--out {out} is the adapter's own folder: merge into a new folder")
    loaded, processor = _load(model, base_model, dtype, False, device)
    merged = loaded.merge_and_unload()
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    click.echo(f"wrote merged model to {out}")
