"""The shared run lifecycle (`radtune.common.run`): arguments, splits and limits, resume, publishing, output
folders of evaluations."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from transformers import TrainingArguments

from radtune.common.run import (
    RunArguments,
    evaluation_out_dir,
    load_run_splits,
    read_run_info,
    take_push_request,
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "built"
    rows = lambda n, prefix: [{"text": f"{prefix} {i}" if i % 3 else "", "id": f"{prefix}{i}"} for i in range(n)]  # noqa: E731
    DatasetDict({"train": Dataset.from_list(rows(12, "tr")), "test": Dataset.from_list(rows(9, "te"))}).save_to_disk(
        folder
    )
    return folder


def _training_args(tmp_path, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", **kwargs)


def test_run_arguments_validate_with_the_field_named():
    with pytest.raises(ValueError, match="dataset_name is required"):
        RunArguments()
    with pytest.raises(ValueError, match="max_eval_samples must be positive"):
        RunArguments(dataset_name="x", max_eval_samples=0)


def test_splits_limits_count_prepared_rows_and_eval_falls_back_to_test(dataset_dir, tmp_path):
    args = RunArguments(dataset_name=str(dataset_dir), max_train_samples=5, max_eval_samples=4)
    drop_empty = lambda split: split.filter(bool, input_columns=["text"])  # noqa: E731
    with pytest.warns(UserWarning, match="no 'validation' split"):
        splits = load_run_splits(args, _training_args(tmp_path, eval_strategy="epoch"), prepare=drop_empty)
    # train rows with text: i % 3 != 0 → 1, 2, 4, 5, 7 … ; the first 5 usable ones
    assert splits.train["id"] == ["tr1", "tr2", "tr4", "tr5", "tr7"]
    assert splits.eval_split == "test" and splits.eval["id"] == ["te1", "te2", "te4", "te5"]
    assert splits.test_split == "test" and splits.test["id"] == ["te1", "te2", "te4", "te5"]


def test_no_final_evaluation_when_asked_or_absent(dataset_dir, tmp_path, capsys):
    splits = load_run_splits(RunArguments(dataset_name=str(dataset_dir), eval_after_training=False),
                             _training_args(tmp_path))  # fmt: skip
    assert splits.test is None and splits.eval is None
    splits = load_run_splits(RunArguments(dataset_name=str(dataset_dir), dataset_test_split="holdout"),
                             _training_args(tmp_path))  # fmt: skip
    assert splits.test is None
    assert "no 'holdout' split" in capsys.readouterr().out


def test_split_errors_name_the_splits_there_are(dataset_dir, tmp_path):
    with pytest.raises(ValueError, match=r"'trian' is not a split of .*it has: train, test"):
        load_run_splits(RunArguments(dataset_name=str(dataset_dir), dataset_train_split="trian"),
                        _training_args(tmp_path))  # fmt: skip
    args = RunArguments(dataset_name=str(dataset_dir), dataset_eval_split="dev", dataset_test_split="holdout")
    with pytest.raises(ValueError, match="evaluation during training needs the 'dev' or 'holdout' split"):
        load_run_splits(args, _training_args(tmp_path, eval_strategy="steps", eval_steps=1))
    with pytest.raises(ValueError, match="has no 'messages' column; it has: text, id"):
        load_run_splits(RunArguments(dataset_name=str(dataset_dir)), _training_args(tmp_path),
                        required_columns=["messages"])  # fmt: skip


def test_push_request_is_taken_from_the_trainer_and_private_by_default(tmp_path):
    args = _training_args(tmp_path, push_to_hub=True, hub_model_id="me/model")
    request = take_push_request(args)
    assert (request.repo_id, request.private, args.push_to_hub) == ("me/model", True, False)
    args = _training_args(tmp_path, push_to_hub=True, hub_private_repo=False)
    assert take_push_request(args).private is False and take_push_request(args) is None  # taken once
    assert take_push_request(_training_args(tmp_path)) is None


def test_evaluation_out_dir_never_reuses_a_folder_with_results(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_info.json").write_text("{}")
    first = evaluation_out_dir(run, "caption", "test")
    assert first == run / "eval-caption-test"
    first.mkdir()
    assert evaluation_out_dir(run, "caption", "test") == first  # empty: still free
    (first / "metrics.json").write_text("{}")
    assert evaluation_out_dir(run, "caption", "test") == run / "eval-caption-test-2"
    assert evaluation_out_dir("me/blip-roco", "caption", "test").name == "eval-blip-roco-caption-test"
    assert evaluation_out_dir(run, "caption", "test", out=tmp_path / "x") == tmp_path / "x"
    with pytest.raises(ValueError, match="is a training run's folder"):
        evaluation_out_dir(run, "caption", "test", out=run)


def test_read_run_info(tmp_path):
    assert read_run_info(tmp_path) == {}
    (tmp_path / "run_info.json").write_text('{"text_column": "impression"}')
    assert read_run_info(tmp_path) == {"text_column": "impression"}
    (tmp_path / "run_info.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_run_info(tmp_path)


def test_a_checkpoint_reads_its_runs_info(tmp_path):
    (tmp_path / "run_info.json").write_text('{"base_model": "base"}')
    (tmp_path / "checkpoint-10").mkdir()
    assert read_run_info(tmp_path / "checkpoint-10") == {"base_model": "base"}
    (tmp_path / "other").mkdir()
    assert read_run_info(tmp_path / "other") == {}  # only checkpoint-N folders look at their parent
