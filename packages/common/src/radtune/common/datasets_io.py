"""Open a dataset the way every radtune command does: a `save_to_disk` folder, a local data folder, or a Hub repo."""

from __future__ import annotations

from pathlib import Path


def is_saved_dataset(path: str | Path) -> bool:
    """True for a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    path = Path(path)
    single = (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    return (path / "dataset_dict.json").is_file() or single


def load_dataset_any(source: str | Path, split: str | None = None):
    """Load `source` as a `DatasetDict` (or one `Dataset` when `split` is given).

    Args:
        source (`str` or `Path`): a folder written by `save_to_disk` (what `radtune data build` and
            `radtune data qa` write), any local folder `datasets.load_dataset` understands, or a Hub repo id.
        split (`str`, *optional*): return only this split.

    Raises:
        `ValueError`: `split` is not in the dataset; the message lists the splits there are.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    if path.exists() and is_saved_dataset(path):
        data = load_from_disk(str(path))
    else:
        data = load_dataset(str(source))
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    if split is None:
        return data
    if split not in data:
        raise ValueError(f"split {split!r} not in {source}; it has: {', '.join(data)}")
    return data[split]
