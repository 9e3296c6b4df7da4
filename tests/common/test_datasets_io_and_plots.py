"""Loading datasets from any source, and the loss-curve plot."""

from __future__ import annotations

import re
import time

import pytest
from datasets import Dataset, DatasetDict
from PIL import Image

from radtune.common.datasets_io import load_dataset_any
from radtune.common.errors import MissingPathError
from radtune.common.plots import plot_loss_curve


def test_saved_dataset_dict_and_single_dataset(tmp_path):
    data = DatasetDict({"train": Dataset.from_dict({"text": ["a", "b"]}), "test": Dataset.from_dict({"text": ["c"]})})
    data.save_to_disk(tmp_path / "dd")
    loaded = load_dataset_any(tmp_path / "dd")
    assert set(loaded) == {"train", "test"} and loaded["test"]["text"] == ["c"]
    assert load_dataset_any(str(tmp_path / "dd"), split="train")["text"] == ["a", "b"]
    with pytest.raises(ValueError, match="split 'validation'.*train, test|split 'validation'.*test, train"):
        load_dataset_any(tmp_path / "dd", split="validation")

    Dataset.from_dict({"text": ["x"]}).save_to_disk(tmp_path / "single")
    assert list(load_dataset_any(tmp_path / "single")) == ["train"]


def test_local_data_folder_goes_through_load_dataset(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "train").mkdir(parents=True)
    Image.new("L", (4, 4), 9).save(folder / "train" / "a.png")
    loaded = load_dataset_any(folder, split="train")
    assert loaded[0]["image"].size == (4, 4)


def test_a_relative_two_part_folder_here_is_loaded_without_the_hub(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Dataset.from_dict({"text": ["a"]}).save_to_disk(tmp_path / "runs" / "ph-qa")
    assert load_dataset_any("runs/ph-qa", split="train")["text"] == ["a"]


@pytest.mark.parametrize("name", ["./ph-qaX", "../ph-qaX", "/no/such/data", "~/no-such-data", "data/a/b"])
def test_a_missing_path_fails_at_once_naming_it(name, monkeypatch):
    import datasets

    def no_load(*args, **kwargs):
        raise AssertionError("datasets.load_dataset was called")

    monkeypatch.setattr(datasets, "load_dataset", no_load)
    started = time.monotonic()
    with pytest.raises(FileNotFoundError, match=f"^no such folder: {re.escape(name)}"):
        load_dataset_any(name)
    assert time.monotonic() - started < 1


def test_a_two_part_name_neither_here_nor_on_the_hub_fails_fast_naming_both(tmp_path, monkeypatch):
    # The suite runs with HF_HUB_OFFLINE=1: before, datasets spent 25 s retrying and printed a long traceback.
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(MissingPathError) as excinfo:
        load_dataset_any("runs/ph-qa", split="test")
    assert time.monotonic() - started < 10
    assert str(excinfo.value) == (
        f"runs/ph-qa is not a folder here (cwd {tmp_path}) and not a dataset repo on the Hub: offline mode "
        "(HF_HUB_OFFLINE=1) and not in the local cache"
    )


def test_loss_curve_png(tmp_path):
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 0.3}]
    path = plot_loss_curve(history, tmp_path / "plots" / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss_curve([{"step": 1, "learning_rate": 0.1}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_loss_curve_from_two_losses_of_any_kind(tmp_path):
    # One training loss and one evaluation loss are enough for a curve.
    history = [{"step": 2, "loss": 0.9}, {"step": 2, "eval_loss": 0.8}, {"step": 2, "train_loss": 0.9}]
    path = plot_loss_curve(history, tmp_path / "loss.png")
    assert path == tmp_path / "loss.png" and Image.open(path).size == (600, 400)
    assert plot_loss_curve([{"step": 5, "eval_loss": 0.5}, {"step": 10, "eval_loss": 0.4}], tmp_path / "e.png")


def test_too_few_losses_give_one_line_saying_how_to_get_a_curve(tmp_path, caplog):
    # max_steps (3) below logging_steps: only the end-of-training summary, whose train_loss is no curve point.
    history = [{"step": 3, "train_loss": 1.2, "train_runtime": 0.5}]
    with caplog.at_level("WARNING", logger="radtune.common.plots"):
        assert plot_loss_curve(history, tmp_path / "loss_curve.png") is None
    assert not (tmp_path / "loss_curve.png").exists()
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert "logged 0 loss values over 3 steps" in record.getMessage()
    assert "--logging_steps 1" in record.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="radtune.common.plots"):
        history = [{"step": 10, "loss": 1.0}, {"step": 20, "train_loss": 1.0}]
        assert plot_loss_curve(history, tmp_path / "x.png") is None
    assert "logged 1 loss value over 20 steps; pass --logging_steps 10" in caplog.records[0].getMessage()
