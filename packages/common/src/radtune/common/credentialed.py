"""Credentialed data (MIMIC-CXR, CheXpert Plus): the mark datasets, runs and evaluations carry, and what may leave.

`radtune data build` marks a build of a credentialed source (`credentialed: true` in its card's YAML and in
`build_report.json`); `radtune data qa` carries the mark on (card, `qa_report.json`, the rows' `source` column);
a run trained on a marked dataset records `"credentialed": true` in `run_info.json`, and an evaluation of such a run
or on such a dataset records it in `metrics.json`'s `meta`. Publishing reads the mark:

- a credentialed dataset is never pushed to a public repo;
- a credentialed run goes public only when asked explicitly (`--allow-credentialed-public`), and its per-item
  files (`evaluation_results.csv`, `zero_shot_scores.csv`: report text, answers, image ids) never leave.

    from radtune.common.credentialed import dataset_marks, folder_marks

    dataset_marks("./mimic")      # {"mimic-cxr", "README.md", "build_report.json"}: why it counts as credentialed
    folder_marks("runs/x")        # {"run_info.json"} for a run trained on one
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from radtune.common.errors import HubError

# The `source` values of credentialed data (`radtune.dataprep.sources.SOURCES[...].credentialed`).
CREDENTIALED_SOURCES = frozenset({"mimic-cxr", "chexpert-plus"})
# Files whose `credentialed` key (top level, or in `meta` for metrics.json) marks their folder.
MARK_FILES = ("build_report.json", "qa_report.json", "run_info.json", "metrics.json")
# Files with one row per item (report text, generated answers and captions, image ids): never pushed for a
# credentialed run, wherever they sit in the folder (the run's own, or its eval-* folders).
PER_ITEM_FILES = ("evaluation_results.csv", "zero_shot_scores.csv")
PER_ITEM_PATTERNS = tuple(pattern for name in PER_ITEM_FILES for pattern in (name, f"*/{name}"))

_CARD_MARK = re.compile(r"^credentialed:\s*true\s*$", re.IGNORECASE | re.MULTILINE)
# Marks found while a run loaded its dataset (a Hub dataset has no local card to read later).
_SEEN: dict[str, frozenset[str]] = {}


class CredentialedPublishError(HubError):
    """A push would make credentialed data (or a run trained on it, or its per-item outputs) public."""


def card_is_marked(card_text: str | None) -> bool:
    """True when a card's YAML metadata says `credentialed: true`."""
    if not card_text or not card_text.startswith("---"):
        return False
    end = card_text.find("\n---", 3)
    return bool(_CARD_MARK.search(card_text[: end if end != -1 else len(card_text)]))


def folder_marks(folder: str | Path) -> set[str]:
    """The files of a local folder that mark it credentialed: `README.md` (YAML `credentialed: true`) and any of
    `MARK_FILES` with `"credentialed": true`. Empty for anything else (a Hub id, a missing folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    found = set()
    card = folder / "README.md"
    if card.is_file() and card_is_marked(card.read_text(encoding="utf-8", errors="replace")):
        found.add("README.md")
    for name in MARK_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(body, dict) and (body.get("credentialed") is True
                                       or (body.get("meta") or {}).get("credentialed") is True):  # fmt: skip
            found.add(name)
    return found


def source_marks(dataset) -> set[str]:
    """The credentialed `source` values of a `Dataset` or `DatasetDict` (empty without a `source` column)."""
    splits = dataset.values() if hasattr(dataset, "values") else [dataset]
    found = set()
    for split in splits:
        if "source" in (split.column_names or ()):
            found.update(value for value in split.unique("source") if value in CREDENTIALED_SOURCES)
    return found


def dataset_marks(name: str | Path | None, dataset=None) -> set[str]:
    """Why the dataset `name` counts as credentialed (empty: it does not).

    Reads the folder's metadata (`folder_marks`) and the `source` column of `dataset` (or of the local
    `save_to_disk` folder when `dataset` is not given); for a Hub id without `dataset`, what an earlier call (the
    run's `load_run_splits`) found for the same name.
    """
    if name is None:
        return set()
    key = str(name)
    local = Path(key).is_dir()
    found = folder_marks(key) if local else set(_SEEN.get(key, ()))
    if dataset is None and local:
        from radtune.common.datasets_io import is_saved_dataset

        if is_saved_dataset(key):
            from datasets import load_from_disk

            try:
                dataset = load_from_disk(key)
            except (OSError, ValueError):
                dataset = None
    if dataset is not None:
        found |= source_marks(dataset)
    if found:
        _SEEN[key] = frozenset(found)
    return found


def run_is_credentialed(folder: str | Path) -> bool:
    """True when a run or evaluation folder is marked (its `run_info.json` or `metrics.json`)."""
    return bool(folder_marks(folder) & {"run_info.json", "metrics.json"})


@dataclass
class PublishRule:
    """What `check_publish` decided: whether the folder is marked, whether it may only live in a private repo
    (`private_only`), and the glob patterns of files to leave out."""

    marked: bool = False
    private_only: bool = False
    leave_out: list[str] = field(default_factory=list)


def check_publish(folder: str | Path, *, repo_type: str, private: bool, allow_public: bool = False) -> PublishRule:
    """What a push of `folder` must leave out, or a refusal, by the credentialed mark (called before any request).

    A credentialed dataset (a build, a QA export, any `repo_type="dataset"` folder with the mark or credentialed
    `source` values) is pushed only to a private repo. A run or evaluation marked credentialed is pushed public
    only with `allow_public`, and never with its per-item files; an evaluation folder inside an unmarked run that
    is marked (a test on credentialed data) loses its per-item files too.

    Args:
        folder (`str` or `Path`): the folder to push.
        repo_type (`str`): `"model"` (a run, an adapter, an evaluation) or `"dataset"`.
        private (`bool`): whether the repo will be private.
        allow_public (`bool`, *optional*, defaults to `False`): a credentialed run may go public
            (`--allow-credentialed-public`); a credentialed dataset never does.

    Returns:
        `PublishRule`: the leave-out patterns (relative to `folder`) and whether the repo must be private.

    Raises:
        `CredentialedPublishError`: a public push of a credentialed dataset, or of a credentialed run without
            `allow_public`.
    """
    folder = Path(folder)
    marks = folder_marks(folder)
    is_dataset = repo_type == "dataset" or bool(marks & {"build_report.json", "qa_report.json"})
    if is_dataset:
        marks |= dataset_marks(folder)
        if marks and not private:
            raise CredentialedPublishError(
                f"{folder} is credentialed data ({', '.join(sorted(marks))}): its data use agreement forbids a "
                "public copy, so nothing was pushed. Push it privately (leave out --public)."
            )
        return PublishRule(marked=bool(marks), private_only=bool(marks))
    if marks:
        if not private and not allow_public:
            raise CredentialedPublishError(
                f"{folder} was trained or evaluated on credentialed data ({', '.join(sorted(marks))}), so nothing "
                "was pushed. Push it privately (leave out --public), or add --allow-credentialed-public if its data "
                "use agreement allows a public model."
            )
        return PublishRule(marked=True, private_only=not allow_public, leave_out=list(PER_ITEM_PATTERNS))
    patterns = []
    for metrics in sorted(folder.rglob("metrics.json")):
        if metrics.parent != folder and run_is_credentialed(metrics.parent):
            where = metrics.parent.relative_to(folder).as_posix()
            patterns += [f"{where}/{name}" for name in PER_ITEM_FILES]
    return PublishRule(leave_out=patterns)


def left_out(folder: str | Path, patterns: Iterable[str]) -> list[str]:
    """The files of `folder` (relative, posix) that `patterns` leave out, for the notice."""
    from fnmatch import fnmatch

    folder = Path(folder)
    patterns = list(patterns)
    files = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return [name for name in files if any(fnmatch(name, pattern) for pattern in patterns)]
