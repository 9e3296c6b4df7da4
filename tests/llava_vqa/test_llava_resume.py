"""Exact resume of LLaVA VQA training: a run resumed from an intermediate checkpoint logs the losses of the
uninterrupted run and ends with its weights, in every mode (LoRA, QLoRA, full fine-tuning, projector / vision
tower flags)."""

from __future__ import annotations

import pytest

from radtune.llava_vqa.train import main

pytestmark = pytest.mark.slow

MODES = {
    "lora": [],
    "lora-projector-vision-tower": ["--train_projector", "true", "--train_vision_tower", "true"],
    # the phantom recipe's mode: full fine-tuning of the language model with the projector
    "full-projector": ["--use_peft", "false", "--train_projector", "true", "--learning_rate", "1e-3"],
    "full-vision-tower": ["--use_peft", "false", "--train_vision_tower", "true", "--learning_rate", "1e-3"],
    "qlora": ["--load_in_4bit", "true"],
}


@pytest.mark.parametrize("mode", MODES)
def test_resumed_run_matches_the_uninterrupted_run(mode, exact_resume, train_args, tiny_model, qa_dataset_dir):
    def train(out_dir, *flags):
        main(*train_args(tiny_model("llava"), qa_dataset_dir, out_dir, "--eval_after_training", "false",
                         *MODES[mode], *flags))  # fmt: skip

    exact_resume(train, f"llava-{mode}")


def test_an_incomplete_last_checkpoint_is_skipped(exact_resume, train_args, tiny_model, qa_dataset_dir, capsys):
    def killed_while_saving(checkpoint):  # weights written, then killed before trainer_state.json (the last file)
        (checkpoint / "trainer_state.json").unlink()
        (checkpoint / "rng_state.pth").unlink()

    def train(out_dir, *flags):
        main(*train_args(tiny_model("llava"), qa_dataset_dir, out_dir, "--eval_after_training", "false",
                         *MODES["full-projector"], *flags))  # fmt: skip

    _, resumed = exact_resume(train, "llava-incomplete", steps=6, damage=killed_while_saving)
    notices = [line for line in capsys.readouterr().out.splitlines() if "skipping incomplete" in line]
    assert len(notices) == 1 and str(resumed / "checkpoint-4") in notices[0]


def test_the_best_checkpoint_of_a_full_fine_tuning_is_loaded_back(train_args, tiny_model, qa_dataset_dir, tmp_path):
    # What `load_best_model_at_end` does after training, here with the best checkpoint set by hand.
    import torch
    from transformers import LlavaForConditionalGeneration

    from radtune.llava_vqa.train import build_trainer

    trainer, _ = build_trainer(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, *MODES["full-projector"],
                                           "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"))  # fmt: skip
    trainer.train()
    best = LlavaForConditionalGeneration.from_pretrained(tmp_path / "checkpoint-2").state_dict()
    model = trainer.model
    assert any(not torch.equal(model.state_dict()[name], value) for name, value in best.items())
    trainer.state.best_model_checkpoint = str(tmp_path / "checkpoint-2")
    trainer._load_best_model()
    for name, value in best.items():
        assert torch.equal(model.state_dict()[name], value), name
