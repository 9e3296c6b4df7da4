"""Fine-tune LLaVA-1.5 for medical visual question answering with TRL's SFTTrainer, LoRA or QLoRA.

The dataset is a folder or Hub repo in radtune's QA export format (`radtune data qa … --generator rules|openai`):
rows of `messages` (user turn: image + question; assistant turn: answer) and `images`. The loss is on the
assistant's answer and its end-of-turn token only (TRL's `assistant_only_loss` with a chat template carrying
`{% generation %}` markers); image tokens are never truncated (`max_length=None`).

One GPU:
```bash
accelerate launch -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/chexpert_plus_qa.yaml
# or, with the shipped accelerate config resolved by name:
radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/slake.yaml
```
Several GPUs (DDP, FSDP, DeepSpeed ZeRO-2/3 with the shipped configs):
```bash
radtune vqa train --accelerate-config multi_gpu --num-processes 4 -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config fsdp -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config zero2 -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config zero3 -- --config packages/llava_vqa/recipes/vqa_rad.yaml   # not with QLoRA
```
QLoRA (nf4, double quantisation, bf16 compute): add `--load_in_4bit`. CPU smoke test with a tiny model:
```bash
radtune tiny llava runs/tiny-llava
python -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/phantom_cpu.yaml
radtune vqa train --cpu --num-processes 2 -- --config packages/llava_vqa/recipes/phantom_cpu.yaml   # DDP, gloo
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from transformers.trainer_utils import SaveStrategy
from trl import ModelConfig, SFTConfig

from radtune.common.generation_eval import VQA_LOGGED, generation_eval_samples_field

# LoRA on the language model's linear layers only: the vision tower and the projector stay frozen (LLaMA-Factory
# users hit `lora_target: all` silently adapting vision blocks).
LANGUAGE_MODEL_LORA_TARGET = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_TOWER_LORA_TARGET = r".*vision_tower.*\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)"


@dataclass
class ScriptArguments:
    dataset_name: str = field(
        default=None, metadata={"help": "QA dataset: a folder written by `radtune data qa` or a Hub repo id."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(
        default="test", metadata={"help": "Split evaluated after training (skipped when absent)."}
    )
    dataset_eval_split: str = field(
        default="validation",
        metadata={"help": "Split evaluated during training (eval_strategy steps/epoch): eval loss and VQA metrics of "
                  "generated answers. When absent, dataset_test_split is used (with a warning)."},
    )  # fmt: skip
    generation_eval_samples: int = generation_eval_samples_field("answer", *VQA_LOGGED)
    max_train_samples: int | None = field(default=None, metadata={"help": "Train on the first N rows only."})
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on the first N QA items of the test split only."}
    )
    eval_after_training: bool = field(
        default=True, metadata={"help": "Generate answers for the test split and write metrics at the end."}
    )
    eval_ablation: bool = field(
        default=False, metadata={"help": "Also evaluate with blank and noise images (does the model use the image?)."}
    )
    eval_batch_size: int = field(default=8, metadata={"help": "Batch size of the final evaluation's generation."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest generated answer in the final evaluation."})
    train_vision_tower: bool = field(
        default=False, metadata={"help": "Also adapt the vision tower (LoRA on its attention/MLP layers)."}
    )
    train_projector: bool = field(
        default=False, metadata={"help": "Also train the multi-modal projector (fully, saved with the adapter)."}
    )
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "Processor to use; defaults to the model's own."}
    )

    def __post_init__(self):
        if not self.dataset_name:
            raise ValueError("dataset_name is required: a folder written by `radtune data qa` or a Hub repo id")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.generation_eval_samples < 0:
            raise ValueError(f"generation_eval_samples must be >= 0 (0 disables), got {self.generation_eval_samples}")


@dataclass
class LlavaModelConfig(ModelConfig):
    # --- Defaults that differ from TRL's ModelConfig: the LLaVA seed's LoRA (r=64, alpha=16) on LLaVA-1.5-7B,
    # --- with double quantisation when QLoRA is switched on.
    model_name_or_path: str | None = field(
        default="llava-hf/llava-1.5-7b-hf", metadata={"help": "Base LLaVA model: Hub repo id or local folder."}
    )
    use_peft: bool = field(default=True, metadata={"help": "Train a LoRA adapter (False: full fine-tuning)."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    use_bnb_nested_quant: bool = field(default=True, metadata={"help": "Double quantisation for QLoRA."})
    dtype: str | None = field(
        default="bfloat16", metadata={"help": "Weights dtype (QLoRA compute dtype too): bfloat16, float16, float32."}
    )


@dataclass
class LlavaSFTConfig(SFTConfig):
    # --- Defaults that differ from TRL's SFTConfig: the LLaVA seed's schedule (batch 1 with accumulation,
    # --- checkpointing, one epoch, a log every 5 steps), loss on answers only, and no truncation of image tokens.
    assistant_only_loss: bool = field(default=True, metadata={"help": "Loss on assistant tokens only."})
    max_length: int | None = field(default=None, metadata={"help": "None: never cut sequences (image tokens)."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Batch size per device."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Gradient accumulation steps."})
    activation_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations to save memory."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (LoRA)."})
    logging_steps: float = field(default=5, metadata={"help": "Log every N steps."})
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Trackers."})
    output_dir: str | None = field(default="runs/llava-vqa", metadata={"help": "Where the adapter and logs go."})


def make_parser(prog: str | None = "radtune.llava_vqa.train"):
    from radtune.common.config import make_parser as make_trl_parser

    return make_trl_parser([ScriptArguments, LlavaSFTConfig, LlavaModelConfig], prog=prog)


def _peft_config(script_args: ScriptArguments, model_args: LlavaModelConfig):
    from peft import LoraConfig

    if model_args.lora_target_modules:
        target = model_args.lora_target_modules
    elif script_args.train_vision_tower:
        target = f"({LANGUAGE_MODEL_LORA_TARGET})|({VISION_TOWER_LORA_TARGET})"
    else:
        target = LANGUAGE_MODEL_LORA_TARGET
    modules_to_save = list(model_args.lora_modules_to_save or [])
    if script_args.train_projector:
        modules_to_save.append("multi_modal_projector")
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=target,
        modules_to_save=modules_to_save or None,
        use_rslora=model_args.use_rslora,
        use_dora=model_args.use_dora,
        task_type="CAUSAL_LM",
    )


def _device_map(training_args) -> dict:
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available() and not training_args.use_cpu:
        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def _resume_value(value: str | None):
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    return True if str(value).lower() in ("true", "last") else value


def build_trainer(script_args: ScriptArguments, training_args: LlavaSFTConfig, model_args: LlavaModelConfig):
    """The model, processor, data and `SFTTrainer` of a run, ready to `train()`.

    Returns:
        `(trainer, dataset)`: the trainer and the whole `DatasetDict` (for the final evaluation).
    """
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    from trl import get_quantization_config

    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.generation_eval import choose_eval_split
    from radtune.llava_vqa.inference import ensure_training_chat_template, resolve
    from radtune.llava_vqa.trainer import VQASFTTrainer, vqa_generation_eval

    # Model
    model_path = resolve(model_args.model_name_or_path)
    processor = AutoProcessor.from_pretrained(resolve(script_args.processor_name_or_path or model_path))
    ensure_training_chat_template(processor)
    quantization_config = get_quantization_config(model_args)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = LlavaForConditionalGeneration.from_pretrained(
        model_path,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        quantization_config=quantization_config,
        # Quantised weights load straight onto each process's own device.
        device_map=_device_map(training_args) if quantization_config is not None else None,
    )
    peft_config = _peft_config(script_args, model_args) if model_args.use_peft else None
    if peft_config is None:
        # Full fine-tuning of the language model; the vision tower and projector follow the flags.
        model.model.vision_tower.requires_grad_(script_args.train_vision_tower)
        model.model.multi_modal_projector.requires_grad_(script_args.train_projector)

    # Data
    dataset = load_dataset_any(script_args.dataset_name)
    if script_args.dataset_train_split not in dataset:
        raise ValueError(f"split {script_args.dataset_train_split!r} not in {script_args.dataset_name}: {list(dataset)}")
    train_dataset = dataset[script_args.dataset_train_split]
    if script_args.max_train_samples:
        train_dataset = train_dataset.select(range(min(script_args.max_train_samples, len(train_dataset))))
    if "messages" not in train_dataset.column_names:
        raise ValueError(
            f"{script_args.dataset_name} has no `messages` column (columns: {train_dataset.column_names}); "
            "export it with `radtune data qa`"
        )
    eval_dataset = generation_eval = None
    if training_args.eval_strategy != "no":
        eval_split = choose_eval_split(dataset, script_args.dataset_eval_split, script_args.dataset_test_split)
        if eval_split is None:
            raise ValueError(f"eval_strategy needs the dataset_eval_split or dataset_test_split split; "
                             f"{script_args.dataset_name} has {list(dataset)}")  # fmt: skip
        eval_dataset = dataset[eval_split]
        if script_args.generation_eval_samples:
            generation_eval = vqa_generation_eval(processor, eval_dataset, script_args.generation_eval_samples,
                                                  training_args.per_device_eval_batch_size, script_args.max_new_tokens)  # fmt: skip
    trainer = VQASFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        generation_eval=generation_eval,
    )
    return trainer, dataset


def main(script_args: ScriptArguments, training_args: LlavaSFTConfig, model_args: LlavaModelConfig) -> dict:
    """Train, save, evaluate and (optionally) publish; returns `{"train": metrics, "test": metrics}`."""
    # radtune publishes once, at the end, privately by default and with its model card: not the Trainer's
    # push of every checkpoint.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer, dataset = build_trainer(script_args, training_args, model_args)
    processor = trainer.processing_class
    train_dataset = trainer.train_dataset

    # Train
    train_result = trainer.train(resume_from_checkpoint=_resume_value(training_args.resume_from_checkpoint))
    trainer.save_model(training_args.output_dir)
    metrics = dict(train_result.metrics)
    metrics["train_samples"] = len(train_dataset)
    metrics["num_processes"] = trainer.accelerator.num_processes
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.accelerator.is_main_process:
        from radtune.common.plots import plot_loss_curve

        processor.save_pretrained(training_args.output_dir)
        plot_loss_curve(trainer.state.log_history, os.path.join(training_args.output_dir, "loss_curve.png"),
                        title=f"LLaVA VQA — {script_args.dataset_name}")  # fmt: skip
        with open(os.path.join(training_args.output_dir, "run_info.json"), "w") as file:
            json.dump({"num_processes": trainer.accelerator.num_processes,
                       "world_size_env": os.environ.get("WORLD_SIZE"),
                       "dataset": script_args.dataset_name, "base_model": model_args.model_name_or_path}, file)  # fmt: skip

    # Evaluate
    results = {"train": metrics}
    test_split = script_args.dataset_test_split
    if script_args.eval_after_training and test_split in dataset and trainer.accelerator.is_main_process:
        from radtune.llava_vqa.evaluation import evaluate_vqa

        eval_model = trainer.model
        eval_model.eval()
        results["test"] = evaluate_vqa(
            eval_model, processor, dataset[test_split], training_args.output_dir,
            batch_size=script_args.eval_batch_size, max_new_tokens=script_args.max_new_tokens,
            max_samples=script_args.max_eval_samples, baseline_dataset=trainer.train_dataset,
            ablation=script_args.eval_ablation, seed=training_args.seed,
            meta={"model": training_args.output_dir, "dataset": script_args.dataset_name, "split": test_split,
                  "seed": training_args.seed, "base_model": model_args.model_name_or_path},
        )  # fmt: skip

    # Publish
    if trainer.accelerator.is_main_process:
        from radtune.common.hub import push_folder
        from radtune.common.model_card import build_model_card, is_hub_id

        repo_id = training_args.hub_model_id or os.path.basename(os.path.normpath(training_args.output_dir))
        datasets = [script_args.dataset_name] if is_hub_id(script_args.dataset_name) else None
        build_model_card(training_args.output_dir, repo_id, base_model=model_args.model_name_or_path,
                         datasets=datasets, tags=["llava", "vqa"]).save(os.path.join(training_args.output_dir, "README.md"))  # fmt: skip
        if push_to_hub:
            private = True if training_args.hub_private_repo is None else training_args.hub_private_repo
            result = push_folder(training_args.output_dir, repo_id, private=private, datasets=datasets,
                                 base_model=model_args.model_name_or_path, tags=["llava", "vqa"])  # fmt: skip
            trainer.accelerator.print(f"pushed the adapter to {result.repo_url} (private: {result.private})")
    trainer.accelerator.wait_for_everyone()
    return results


if __name__ == "__main__":
    from radtune.common.config import parse_args_and_config

    main(*parse_args_and_config(make_parser()))
