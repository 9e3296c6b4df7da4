"""Caption metrics of generated captions during training: logged at each eval step, bounded, streamed, and usable
as `metric_for_best_model`."""

from __future__ import annotations

import math

import pytest

from radtune.common.config import parse_args_and_config

pytestmark = pytest.mark.slow

FAST = ["--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--per_device_train_batch_size", "4",
        "--logging_steps", "1", "--max_new_tokens", "6", "--learning_rate", "5e-3", "--save_strategy", "no"]  # fmt: skip


def test_caption_metrics_are_logged_each_eval_step_and_pick_the_best(tmp_path, tiny_model, caption_dataset,
                                                                     generation_spies):  # fmt: skip
    from radtune.captioning import train

    args = ["--architecture", "vit-gpt2", "--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name",
            str(caption_dataset), "--output_dir", str(tmp_path), "--use_peft", "--lora_r", "4", "--lora_alpha", "8",
            "--max_steps", "4", "--eval_strategy", "steps", "--eval_steps", "2", "--generation_eval_samples", "3",
            "--per_device_eval_batch_size", "2", "--metric_for_best_model", "cider", "--meteor", "false",
            "--eval_after_training", "false", *FAST]  # fmt: skip
    trainer, _ = train.build_trainer(*parse_args_and_config(train.make_parser(), args))
    generated, returned_predictions = generation_spies(trainer)
    trainer.train()

    evals = [row for row in trainer.state.log_history if "eval_cider" in row]
    assert [row["step"] for row in evals] == [2, 4]
    for row in evals:
        assert math.isfinite(row["eval_cider"]) and row["eval_cider"] >= 0.0
        assert 0.0 <= row["eval_bleu_1"] <= 1.0 and 0.0 <= row["eval_rouge_l"] <= 1.0
        assert math.isfinite(row["eval_loss"])
    # 3 of the 4 validation rows per evaluation, in batches of at most 2; the Trainer's loop returned no predictions.
    assert generated == [2, 1, 2, 1]
    assert returned_predictions and not any(returned_predictions)
    assert trainer.state.best_metric == max(row["eval_cider"] for row in evals)


def test_blip_vqa_logs_vqa_metrics_of_a_bounded_subset(tmp_path, tiny_model, vqa_dataset, generation_spies):
    from radtune.captioning import train_vqa

    # The dataset has no validation split: the test split (4 rows) is evaluated, with a warning.
    args = ["--model_name_or_path", str(tiny_model("blip-vqa")), "--dataset_name", str(vqa_dataset),
            "--output_dir", str(tmp_path), "--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2",
            "--generation_eval_samples", "3", "--per_device_eval_batch_size", "4",
            "--metric_for_best_model", "strict_closed_accuracy", *FAST]  # fmt: skip
    with pytest.warns(UserWarning, match="test split"):
        trainer, _ = train_vqa.build_trainer(*parse_args_and_config(train_vqa.make_parser(), args))
    generated, returned_predictions = generation_spies(trainer)
    trainer.train()
    (row,) = [row for row in trainer.state.log_history if "eval_strict_closed_accuracy" in row]
    assert 0.0 <= row["eval_strict_closed_accuracy"] <= 1.0
    assert row["eval_n_closed"] + row["eval_n_open"] == 3 and generated == [3]
    assert not any(returned_predictions)
    assert trainer.state.best_metric == row["eval_strict_closed_accuracy"]


def test_generation_eval_samples_must_not_be_negative(caption_dataset):
    from radtune.captioning.train import make_parser

    with pytest.raises((SystemExit, ValueError)):
        parse_args_and_config(
            make_parser(), ["--dataset_name", str(caption_dataset), "--generation_eval_samples", "-1"]
        )
