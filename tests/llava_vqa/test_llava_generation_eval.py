"""VQA metrics of generated answers during LLaVA training: logged at each eval step, bounded, streamed, and usable
as `metric_for_best_model`."""

from __future__ import annotations

import math

import pytest

from radtune.common.config import parse_args_and_config
from radtune.llava_vqa.train import build_trainer, make_parser


@pytest.mark.slow
def test_generation_metrics_are_logged_each_eval_and_select_the_best_checkpoint(
    train_args, tiny_model, qa_dataset_dir, tmp_path, generation_spies
):
    # The phantom QA set has no validation split: the test split (8 rows) is evaluated, with a warning.
    with pytest.warns(UserWarning, match="test split"):
        trainer, _ = build_trainer(*train_args(
            tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "4", "--eval_strategy", "steps",
            "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2", "--load_best_model_at_end", "true",
            "--metric_for_best_model", "strict_closed_accuracy", "--generation_eval_samples", "6",
            "--per_device_eval_batch_size", "4", "--report_to", "tensorboard",
        ))  # fmt: skip
    generated, returned_logits = generation_spies(trainer)
    trainer.train()

    evals = [row for row in trainer.state.log_history if "eval_strict_closed_accuracy" in row]
    assert [row["step"] for row in evals] == [2, 4]
    for row in evals:
        assert 0.0 <= row["eval_strict_closed_accuracy"] <= 1.0
        assert 0.0 <= row["eval_llava_med_closed_accuracy"] <= 1.0 or math.isnan(row["eval_llava_med_closed_accuracy"])
        assert row["eval_n_closed"] == 6  # the first 6 of the 8 test rows, one closed question each
        assert math.isfinite(row["eval_loss"])  # the Trainer's eval loss is kept beside the generation metrics
    # Streamed: batches of at most per_device_eval_batch_size rows, 6 rows per evaluation.
    assert generated and max(generated) <= 4 and sum(generated) == 12
    # The Trainer's loop ran for the loss only: no batch returned logits to accumulate.
    assert returned_logits and not any(returned_logits)
    # metric_for_best_model reads the generation metric; the best checkpoint is the first best step.
    values = [row["eval_strict_closed_accuracy"] for row in evals]
    best_step = evals[values.index(max(values))]["step"]
    assert trainer.state.best_metric == max(values)
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best_step}")
    # TensorBoard has the same values, under eval/.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = tmp_path.glob("runs/*/events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    logged = [(event.step, event.value) for event in accumulator.Scalars("eval/strict_closed_accuracy")]
    assert logged == [(row["step"], pytest.approx(row["eval_strict_closed_accuracy"])) for row in evals]


def test_generation_eval_off_keeps_the_loss_and_a_passed_dataset_gets_no_generation(
    train_args, tiny_model, qa_dataset_dir, tmp_path, generation_spies
):
    from datasets import load_from_disk

    base = (tiny_model("llava"), qa_dataset_dir, tmp_path, "--eval_strategy", "steps", "--eval_steps", "2",
            "--dataset_eval_split", "test", "--max_steps", "1")  # fmt: skip
    trainer, _ = build_trainer(*train_args(*base, "--generation_eval_samples", "0"))
    assert trainer.generation_eval is None
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"]) and not any("closed_accuracy" in name for name in metrics)

    trainer, _ = build_trainer(*train_args(*base, "--generation_eval_samples", "2"))
    generated, _ = generation_spies(trainer)
    other = load_from_disk(str(qa_dataset_dir))["train"].select(range(4))
    metrics = trainer.evaluate(other, metric_key_prefix="train_subset")
    assert "train_subset_loss" in metrics and not generated  # only the trainer's own eval split is generated for
    metrics = trainer.evaluate()
    assert metrics["eval_n_closed"] == 2 and sum(generated) == 2


def test_generation_eval_samples_must_not_be_negative(qa_dataset_dir, capsys):
    with pytest.raises(SystemExit):
        parse_args_and_config(
            make_parser(), ["--dataset_name", str(qa_dataset_dir), "--generation_eval_samples", "-1"]
        )
    assert "generation_eval_samples must be >= 0" in capsys.readouterr().err
