"""Open a dataset the way every radtune command does: a `save_to_disk` folder, a local data folder, or a Hub repo."""

from __future__ import annotations

from pathlib import Path


def is_saved_dataset(path: str | Path) -> bool:
    """True for a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    path = Path(path)
    single = (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    return (path / "dataset_dict.json").is_file() or single


def _dataset_in_cache(name: str) -> bool:
    """Whether a Hub dataset `name` was downloaded before (huggingface_hub's or datasets' own cache)."""
    from datasets import config
    from datasets.naming import camelcase_to_snakecase
    from huggingface_hub import constants

    hub_copy = Path(constants.HF_HUB_CACHE) / f"datasets--{name.replace('/', '--')}"
    *namespace, dataset = name.split("/")
    datasets_copy = Path(config.HF_DATASETS_CACHE).expanduser() / "___".join(
        [*namespace, camelcase_to_snakecase(dataset)]
    )
    return hub_copy.is_dir() or datasets_copy.is_dir()


def load_dataset_any(source: str | Path, split: str | None = None):
    """Load `source` as a `DatasetDict` (or one `Dataset` when `split` is given).

    A source that is no local path fails within seconds, before `datasets` retries the Hub for half a minute: a
    name that can only be a path (`./x`, `/x`, `~/x`, `a/b/c`) says "no such folder"; a one- or two-part name
    (`runs/x`) is asked of the Hub with a short timeout and, when it is no dataset repo there either (or the Hub
    cannot be asked and nothing is cached), the error names both readings.

    Args:
        source (`str` or `Path`): a folder written by `save_to_disk` (what `radtune data build` and
            `radtune data qa` write), any local folder `datasets.load_dataset` understands, or a Hub repo id.
        split (`str`, *optional*): return only this split.

    Raises:
        `ValueError`: `split` is not in the dataset; the message lists the splits there are.
        `MissingPathError` (a `FileNotFoundError`): `source` is neither a local path nor a dataset on the Hub.
    """
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    from radtune.common.hub import check_path_or_repo

    path = Path(source).expanduser()
    if check_path_or_repo(source, "dataset", in_cache=lambda: _dataset_in_cache(str(source))):
        data = load_from_disk(str(path)) if is_saved_dataset(path) else load_dataset(str(path))
    else:
        data = load_dataset(str(source))
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    if split is None:
        return data
    if split not in data:
        raise ValueError(f"split {split!r} not in {source}; it has: {', '.join(data)}")
    return data[split]
