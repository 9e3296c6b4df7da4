"""Exact resume of captioning and BLIP VQA training: a run resumed from an intermediate checkpoint logs the losses of
the uninterrupted run and ends with its weights (ViT-GPT2 LoRA and full, BLIP captioning LoRA and full, BLIP VQA)."""

from __future__ import annotations

import pytest

from radtune.common.config import parse_args_and_config

pytestmark = pytest.mark.slow

FAST = ["--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--per_device_train_batch_size", "4",
        "--logging_steps", "1", "--max_new_tokens", "6", "--learning_rate", "5e-3", "--eval_strategy", "no",
        "--eval_after_training", "false"]  # fmt: skip
LORA = ["--use_peft", "--lora_r", "4", "--lora_alpha", "8"]
MODES = {
    "vit-gpt2-lora": ("vit-gpt2", LORA),
    "vit-gpt2-full": ("vit-gpt2", []),
    "blip-lora": ("blip-caption", LORA),
    "blip-full": ("blip-caption", []),
    "blip-vqa-full": ("blip-vqa", []),
}


@pytest.mark.parametrize("mode", MODES)
def test_resumed_run_matches_the_uninterrupted_run(mode, exact_resume, tiny_model, caption_dataset, vqa_dataset):
    from radtune.captioning import train, train_vqa

    kind, extra = MODES[mode]
    if kind == "blip-vqa":
        module, dataset, task = train_vqa, vqa_dataset, []
    else:
        module, dataset = train, caption_dataset
        task = ["--architecture", "blip" if kind == "blip-caption" else "vit-gpt2"]

    def run(out_dir, *flags):
        module.main(*parse_args_and_config(module.make_parser(), [
            *task, "--model_name_or_path", str(tiny_model(kind)), "--dataset_name", str(dataset),
            "--output_dir", str(out_dir), *FAST, *extra, *flags]))  # fmt: skip

    exact_resume(run, f"captioning-{mode}")
