"""Fine-tune LLaVA-1.5 (or LLaVA-NeXT, Gemma 3 / MedGemma, Idefics3 / SmolVLM: `radtune.llava_vqa.families`) for
medical visual question answering with TRL's SFTTrainer, LoRA or QLoRA.

```bash
python -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/slake.yaml --learning_rate 1e-4
```
One GPU:
```bash
accelerate launch -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/chexpert_plus_qa.yaml
# or, with the shipped accelerate config resolved by name (launcher flags before `--`, training flags after):
radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/slake.yaml
```
Several GPUs (DDP, FSDP, DeepSpeed ZeRO-2/3 with the shipped configs):
```bash
radtune vqa train --accelerate-config multi_gpu --num-processes 4 -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config fsdp -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config zero2 -- --config packages/llava_vqa/recipes/vqa_rad.yaml
radtune vqa train --accelerate-config zero3 -- --config packages/llava_vqa/recipes/vqa_rad.yaml   # not with QLoRA
```
QLoRA (nf4, double quantisation, compute in `dtype`): add `--load_in_4bit true`; `run_info.json` records it and
`radtune vqa evaluate|predict|merge` load the base model the same way. CPU smoke test with a tiny model:
```bash
radtune tiny llava runs/tiny-llava
python -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/phantom_cpu.yaml
radtune vqa train --cpu --num-processes 2 -- --config packages/llava_vqa/recipes/phantom_cpu.yaml   # DDP, gloo
```
The dataset is a folder or Hub repo of question/answer rows: a build of a VQA benchmark
(`radtune data build vqa-rad|slake|pathvqa SRC OUT`: `image`, `question`, `answer`, `answer_type`), whose rows become
conversations as they are loaded (`radtune.common.vqa_data.qa_conversations`: one question a conversation, or with
`--conversation multi` all questions about an image in one multi-turn conversation), or radtune's QA export
(`radtune data qa … --generator rules|openai`: rows of `messages` — user turn: image + question; assistant turn:
answer — and `images`), used as exported. The loss is on the
assistant's answer and its end-of-turn token only (TRL's `assistant_only_loss` with a chat template carrying
`{% generation %}` markers); image tokens are never truncated (`max_length=None`). After training, the test split
is answered and scored by `radtune.llava_vqa.evaluation.evaluate_vqa`, the evaluator of `radtune vqa evaluate`,
with the same defaults (blank/noise image ablation and majority-answer baseline included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from transformers.trainer_utils import SaveStrategy
from trl import ModelConfig, SFTConfig

from radtune.common.run import GenerationRunArguments
from radtune.llava_vqa.evaluation import BATCH_SIZE, MAX_NEW_TOKENS


@dataclass
class ScriptArguments(GenerationRunArguments):
    """The data and evaluation arguments of a LLaVA VQA run (`RunArguments`' dataset, splits and limits, plus
    LLaVA's own)."""

    max_new_tokens: int = field(default=MAX_NEW_TOKENS, metadata={"help": "Longest generated answer, in tokens."})
    eval_batch_size: int = field(default=BATCH_SIZE, metadata={"help": "Questions per generate call at the end."})
    train_vision_tower: bool = field(
        default=False, metadata={"help": "Also adapt the vision tower (LoRA on its attention/MLP layers)."}
    )
    train_projector: bool = field(
        default=False, metadata={"help": "Also train the multi-modal projector (fully, saved with the adapter)."}
    )
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "Processor to use; defaults to the model's own."}
    )
    conversation: str = field(
        default="single",
        metadata={"help": "How question/answer rows (`radtune data build vqa-rad|slake|pathvqa`) become conversations, "
                  "as `radtune data qa --conversation` says it: `single`, one question a conversation; `multi`, all "
                  "questions about an image in one multi-turn conversation. A QA export (`messages`) is used as is."},
    )

    def __post_init__(self):
        super().__post_init__()
        from radtune.common.vqa_data import CONVERSATIONS

        if self.conversation not in CONVERSATIONS:
            raise ValueError(f"conversation must be one of {', '.join(CONVERSATIONS)}, got {self.conversation!r}")


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
    max_length: int | None = field(
        default=None,
        metadata={"help": "Longest training row; None: no cut. Rows are cut after their last image only (a cut "
                  "through image tokens is an error)."},
    )  # fmt: skip
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Batch size per device."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Gradient accumulation steps."})
    activation_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations to save memory."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (LoRA)."})
    logging_steps: float = field(default=5, metadata={"help": "Log every N steps."})
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to save checkpoints."})
    report_to: None | str | list[str] = field(default="tensorboard", metadata={"help": "Trackers."})
    output_dir: str | None = field(default="runs/llava-vqa", metadata={"help": "Where the adapter and logs go."})


EXAMPLE = """accelerate launch -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/slake.yaml [--field value …]
radtune vqa train --accelerate-config single_gpu -- --config packages/llava_vqa/recipes/slake.yaml [--field value …]
python -m radtune.llava_vqa.train --config packages/llava_vqa/recipes/phantom_cpu.yaml   (CPU, one process)"""


def make_parser(prog: str | None = "radtune.llava_vqa.train"):
    """The `TrlParser` of `ScriptArguments`, `LlavaSFTConfig` and `LlavaModelConfig` (`--config recipe.yaml`)."""
    from radtune.common.config import make_parser as make_trl_parser

    return make_trl_parser([ScriptArguments, LlavaSFTConfig, LlavaModelConfig], prog=prog, example=EXAMPLE)


def lora_config(script_args: ScriptArguments, model_args: LlavaModelConfig, family: str = "llava"):
    """The `peft.LoraConfig` of a run: the language model's linear layers (plus the vision tower's with
    `train_vision_tower`, the projector trained fully with `train_projector`), or `lora_target_modules`.

    LoRA stays off the vision encoder and the projector by default (LLaMA-Factory users hit `lora_target: all`
    silently adapting vision blocks). The module names are the family's (`radtune.llava_vqa.families`: LLaVA's and
    Gemma 3's `language_model` / `vision_tower` / `multi_modal_projector`, Idefics3's `text_model` /
    `vision_model` / `connector`)."""
    from radtune.common.run import lora_config_of
    from radtune.llava_vqa.families import FAMILIES

    family = FAMILIES[family]
    target = family.language_lora_target
    if script_args.train_vision_tower:
        target = f"({target})|({family.vision_lora_target})"
    modules_to_save = [family.projector] if script_args.train_projector else []
    return lora_config_of(model_args, target, modules_to_save, task_type="CAUSAL_LM")


def device_map(training_args) -> dict:
    """Where a quantised model loads: this process's own GPU, or the CPU (`use_cpu`, or no CUDA)."""
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available() and not training_args.use_cpu:
        return {"": PartialState().local_process_index}
    return {"": "cpu"}


def build_trainer(script_args: ScriptArguments, training_args: LlavaSFTConfig, model_args: LlavaModelConfig):
    """The model, processor, data and `SFTTrainer` of a run, ready to `train()`.

    Returns:
        `(trainer, splits)`: the `VQASFTTrainer` and the run's `radtune.common.run.RunSplits` (`splits.test` is
        what the final evaluation answers).

    Raises:
        `ValueError`: a missing split, or rows with neither `messages` nor `question`/`answer` (see
        `radtune.common.run.load_run_splits`, `radtune.common.vqa_data.qa_conversations`).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import get_quantization_config

    from radtune.common.run import load_run_splits
    from radtune.common.vqa_data import qa_conversations
    from radtune.llava_vqa.families import family_of_processor
    from radtune.llava_vqa.inference import ensure_training_chat_template, resolve
    from radtune.llava_vqa.trainer import VQASFTTrainer, vqa_generation_eval

    # Model
    model_path = resolve(model_args.model_name_or_path)
    processor = AutoProcessor.from_pretrained(resolve(script_args.processor_name_or_path or model_path))
    family = family_of_processor(processor)  # LLaVA-1.5, LLaVA-NeXT, Gemma 3 / MedGemma, Idefics3 / SmolVLM
    ensure_training_chat_template(processor)
    quantization_config = get_quantization_config(model_args)
    dtype = model_args.dtype if model_args.dtype in (None, "auto") else getattr(torch, model_args.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        model_path,
        dtype=dtype,
        attn_implementation=model_args.attn_implementation,
        quantization_config=quantization_config,
        # Quantised weights load straight onto each process's own device.
        device_map=device_map(training_args) if quantization_config is not None else None,
    )
    peft_config = lora_config(script_args, model_args, family.name) if model_args.use_peft else None
    if peft_config is None:
        # Full fine-tuning of the language model; the vision tower and projector follow the flags.
        getattr(model.model, family.vision_tower).requires_grad_(script_args.train_vision_tower)
        getattr(model.model, family.projector).requires_grad_(script_args.train_projector)

    # Data
    # Rows of a VQA build become conversations here, on the fly; a QA export is used as exported.
    conversations = partial(qa_conversations, conversation=script_args.conversation,
                            image_column=script_args.image_column)
    splits = load_run_splits(script_args, training_args, prepare=conversations)
    generation_eval = None
    if splits.eval is not None and script_args.generation_eval_samples:
        generation_eval = vqa_generation_eval(processor, splits.eval, script_args.generation_eval_samples,
                                              training_args.per_device_eval_batch_size, script_args.max_new_tokens,
                                              script_args.image_column)  # fmt: skip
    trainer = VQASFTTrainer(
        model=model,
        args=training_args,
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=processor,
        peft_config=peft_config,
        generation_eval=generation_eval,
    )
    return trainer, splits


def main(script_args: ScriptArguments, training_args: LlavaSFTConfig, model_args: LlavaModelConfig) -> dict:
    """Train, save, evaluate the test split and (optionally) publish; returns `{"train": metrics, "test": report}`
    (`"test"`: what `metrics.json` holds, absent when the final evaluation is off or there is no test split)."""
    from radtune.common.run import (
        evaluation_meta,
        finish_run,
        log_test_metrics,
        publish_run,
        quantization_info,
        resume_checkpoint,
        run_info,
        take_push_request,
    )
    from radtune.llava_vqa.evaluation import evaluate_vqa
    from radtune.llava_vqa.families import family_of_processor

    base_model = model_args.model_name_or_path
    push = take_push_request(training_args)
    trainer, splits = build_trainer(script_args, training_args, model_args)
    processor = trainer.processing_class
    family = family_of_processor(processor)

    # Train
    train_result = trainer.train(resume_from_checkpoint=resume_checkpoint(training_args))
    info = run_info(
        "vqa", script_args, training_args, base_model,
        eval_split=splits.eval_split, max_train_samples=script_args.max_train_samples,
        max_eval_samples=script_args.max_eval_samples, quantization=quantization_info(model_args),
        use_peft=model_args.use_peft, dtype=model_args.dtype, max_new_tokens=script_args.max_new_tokens,
        processor=script_args.processor_name_or_path or base_model,
        family=family.name, chat_template="radtune" if processor.chat_template == family.chat_template else "model",
    )  # fmt: skip
    title = f"{family.title} VQA — {script_args.dataset_name}"
    results = {"train": finish_run(trainer, train_result, info=info, processors=[processor], title=title)}

    # Evaluate
    if splits.test is not None and trainer.is_world_process_zero():
        trainer.model.eval()
        results["test"] = evaluate_vqa(
            trainer.model, processor, splits.test, training_args.output_dir,
            train_dataset=splits.dataset[script_args.dataset_train_split], ablation=script_args.eval_ablation,
            batch_size=script_args.eval_batch_size, max_new_tokens=script_args.max_new_tokens,
            seed=training_args.seed, image_column=script_args.image_column,
            meta=evaluation_meta(training_args, script_args, splits, base_model=base_model),
        )  # fmt: skip
        log_test_metrics(trainer, results["test"]["metrics"])

    # Publish
    if trainer.is_world_process_zero():
        publish_run(training_args.output_dir, push, base_model=base_model, dataset_name=script_args.dataset_name,
                    tags=[family.name, "vqa"])  # fmt: skip
    trainer.accelerator.wait_for_everyone()
    return results


if __name__ == "__main__":
    from radtune.common.config import run_main

    run_main(main, make_parser)
