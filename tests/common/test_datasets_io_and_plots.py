"""Loading datasets from any source, and the loss-curve plot."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict
from PIL import Image

from radtune.common.datasets_io import load_dataset_any
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


def test_loss_curve_png(tmp_path):
    history = [{"step": s, "loss": 1.0 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 0.3}]
    path = plot_loss_curve(history, tmp_path / "plots" / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_loss_curve([{"step": 1, "learning_rate": 0.1}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
