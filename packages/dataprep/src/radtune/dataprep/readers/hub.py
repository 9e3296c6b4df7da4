"""Hub copies of the source datasets as build sources: `hf://datasets/OWNER/NAME[@REVISION]`.

Most users fetch VQA-RAD, PathVQA, SLAKE and ROCOv2 from the Hub rather than from the original sites. The copies
radtune reads (their cards and files checked on the Hub):

- `flaviagiammarino/vqa-rad`: parquet `data/{train,test}-*.parquet`, columns `image`, `question`, `answer` (no
  answer type, no ids); train 1,793 / test 451.
- `flaviagiammarino/path-vqa`: parquet `data/{train,validation,test}-*.parquet`, the same three columns;
  train 19,654 / validation 6,259 / test 6,719.
- `BoKelvin/SLAKE`: the original download as files: `train.json`, `validation.json`, `test.json` and `imgs.zip`
  (`imgs/xmlabN/source.jpg`); read with the SLAKE reader once `imgs.zip` is unpacked (once per revision, beside
  the Hub cache). A parquet copy with `image`, `question`, `answer` (and `answer_type`, `q_lang` if present) works
  too.
- `eltorio/ROCOv2-radiology`: parquet `data/{train,validation,test}-*.parquet`, columns `image`, `image_id`,
  `caption`, `cui` (a list of CUIs: the `concepts` column; the copy has no `cui_mapping.csv`, so no `labels`).

Any repo laid out like one of these works: the reader follows the layout, not the name. The revision (a branch, tag
or commit) is resolved to its commit once, and only that commit's files are read (`snapshot_download`), so the
card and report can name exactly what was built. The split of a parquet file comes from its path
(`data/<split>-*.parquet`, `<split>/*.parquet`), so the official splits of the copy are kept.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath

from ..records import MissingColumnError, Reader, SourceLayoutError, clean_text, vqa_answer_type
from ..splits import normalise_split_name
from . import slake

HUB_PREFIX = "hf://datasets/"


@dataclasses.dataclass(frozen=True)
class HubSource:
    """A dataset repo on the Hub, resolved to one commit and fetched.

    Args:
        repo_id (`str`): `OWNER/NAME`.
        revision (`str`, *optional*): the revision asked for (`None`: the default branch).
        sha (`str`): the commit it resolved to.
        local_dir (`Path`): the fetched files of that commit.
        files (`tuple[str, ...]`): the repo's files at that commit.
        license (`str`, *optional*): the licence its card declares.
    """

    repo_id: str
    revision: str | None
    sha: str
    local_dir: Path
    files: tuple[str, ...]
    license: str | None = None

    @property
    def address(self) -> str:
        """`hf://datasets/OWNER/NAME@SHA`: the exact commit built."""
        return f"{HUB_PREFIX}{self.repo_id}@{self.sha}"


def is_hub_address(value) -> bool:
    return isinstance(value, str) and value.startswith("hf://")


def parse_hub_address(address: str) -> tuple[str, str | None]:
    """`hf://datasets/OWNER/NAME[@REVISION]` → `(OWNER/NAME, REVISION or None)`.

    Raises:
        `ValueError`: not that form (a model repo, a missing owner, a path inside the repo).
    """
    if not address.startswith(HUB_PREFIX):
        raise ValueError(f"{address}: a Hub source is hf://datasets/OWNER/NAME[@REVISION]")
    rest = address[len(HUB_PREFIX) :].strip("/")
    repo_id, _, revision = rest.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{address}: a Hub source is hf://datasets/OWNER/NAME[@REVISION]")
    return repo_id, revision or None


def fetch(address: str) -> HubSource:
    """Resolve `address` to a commit and download the files a reader needs (parquet, JSON, `imgs.zip`, the card).

    Raises:
        `HubError`: the repo or revision does not exist, or the Hub cannot be reached (the message names them).
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    from radtune.common.errors import HubError
    from radtune.common.hub import hub_errors

    repo_id, revision = parse_hub_address(address)
    with hub_errors(repo_id, "dataset", revision):
        try:
            info = HfApi().dataset_info(repo_id, revision=revision, files_metadata=False)
        except RevisionNotFoundError as error:
            raise HubError(f"{address}: the dataset repo {repo_id} has no revision '{revision}'") from error
        except GatedRepoError:
            raise
        except RepositoryNotFoundError as error:
            raise HubError(
                f"{address}: no dataset repo {repo_id} on the Hub (or it is private and HF_TOKEN / `hf auth login` "
                "cannot read it); check OWNER/NAME"
            ) from error
        files = tuple(sibling.rfilename for sibling in info.siblings or ())
        wanted = [name for name in files if _wanted(name)]
        local_dir = Path(
            snapshot_download(repo_id, repo_type="dataset", revision=info.sha, allow_patterns=wanted or ["README.md"])
        )
    card = info.card_data.to_dict() if info.card_data is not None else {}
    licence = card.get("license")
    if isinstance(licence, list):
        licence = licence[0] if len(licence) == 1 else None
    return HubSource(repo_id, revision, info.sha, local_dir, files, str(licence) if licence else None)


def _wanted(name: str) -> bool:
    return (
        name.endswith(".parquet") or name in ("README.md", "imgs.zip") or ("/" not in name and name.endswith(".json"))
    )


# Parquet copies -------------------------------------------------------------------------------------------------


def parquet_split(path: str) -> str | None:
    """The split a Hub parquet file holds, from its path: `data/train-00000-of-00001.parquet`,
    `default/validation/0000.parquet`, `test.parquet` … (`None` when no part of the path names one)."""
    parts = PurePosixPath(path).parts
    candidates = [PurePosixPath(path).stem.split("-")[0], *reversed(parts[:-1])]
    for candidate in candidates:
        try:
            split = normalise_split_name(candidate)
        except ValueError:
            continue
        if split is not None:
            return split
    return None


def _parquet_files(hub: HubSource) -> list[tuple[str, str]]:
    """`(path in repo, split)` of the repo's parquet files, in split order then path order."""
    order = {"train": 0, "validation": 1, "test": 2}
    files = []
    for name in sorted(n for n in hub.files if n.endswith(".parquet")):
        split = parquet_split(name)
        if split is None:
            raise SourceLayoutError(
                f"{hub.address}: cannot tell the split of {name} (expected data/<split>-*.parquet with split train, "
                "validation or test)"
            )
        files.append((name, split))
    return sorted(files, key=lambda item: (order.get(item[1], 3), item[0]))


def _parquet_rows(hub: HubSource, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Iterator[tuple]:
    """`(split, number within the split, row)` of every parquet row, reading only the columns needed.

    Raises:
        `MissingColumnError`: a file lacks a column in `required` (the message names the repo, file and column).
    """
    import pyarrow.parquet as pq

    numbers: dict[str, int] = {}
    for name, split in _parquet_files(hub):
        parquet = pq.ParquetFile(hub.local_dir / name)
        found = parquet.schema_arrow.names
        for column in required:
            if column not in found:
                raise MissingColumnError(f"{HUB_PREFIX}{hub.repo_id}@{hub.sha[:12]} ({name})", column, found)
        columns = [*required, *(column for column in optional if column in found)]
        for batch in parquet.iter_batches(batch_size=64, columns=columns):
            for row in batch.to_pylist():
                number = numbers.get(split, 0)
                numbers[split] = number + 1
                yield split, number, row


def _image(value):
    """The image of a parquet row: its bytes (a `datasets` Image struct or raw bytes), else `None` (counted missing)."""
    if isinstance(value, dict):
        value = value.get("bytes")
    return value if isinstance(value, bytes) and value else None


def _vqa_parquet(hub: HubSource, languages: str = "en") -> Iterator[dict]:
    keep = {lang.strip() for lang in languages.split(",") if lang.strip()}
    rows = _parquet_rows(hub, ("image", "question", "answer"), ("answer_type", "q_lang", "qid", "img_id"))
    for split, number, row in rows:
        if "q_lang" in row and row["q_lang"] not in keep:
            continue
        answer = clean_text(row["answer"])
        answer_type, answer_type_source = vqa_answer_type(answer, row.get("answer_type"))
        qid = clean_text(row.get("qid"))
        yield {
            "image": _image(row["image"]),
            "id": qid or f"{split}_{number}",
            "question": clean_text(row["question"]),
            "answer": answer,
            "answer_type": answer_type,
            "answer_type_source": answer_type_source,
            "study_id": clean_text(row.get("img_id")) or None,
            "split": split,
        }


def _rocov2_parquet(hub: HubSource) -> Iterator[dict]:
    for split, number, row in _parquet_rows(hub, ("image", "image_id", "caption"), ("cui",)):
        cuis = row.get("cui") or []
        yield {
            "image": _image(row["image"]),
            "id": clean_text(row["image_id"]) or f"{split}_{number}",
            "text": clean_text(row["caption"]),
            "concepts": [clean_text(cui) for cui in cuis if clean_text(cui)],
            "split": split,
        }


# SLAKE as files -------------------------------------------------------------------------------------------------


def _slake_files(hub: HubSource, languages: str) -> Iterator[dict]:
    """BoKelvin/SLAKE's layout: the JSON files at the top and `imgs.zip`, unpacked once per commit."""
    if "imgs.zip" not in hub.files:
        raise SourceLayoutError(f"{hub.address}: has train.json but no imgs.zip (the SLAKE images)")
    root = unpack_slake(hub)
    yield from slake.read(root, languages=languages)


def unpack_slake(hub: HubSource) -> Path:
    """A folder in SLAKE's download layout for `hub`: its JSON files and `imgs/` from `imgs.zip`.

    It lies beside the Hub cache of the repo (`radtune-unpacked/<sha>`), is made once per commit (in a temporary
    folder renamed into place, so an interrupted unpack is never used) and refuses archive members that would land
    outside it.
    """
    cache_repo = hub.local_dir.parent.parent  # <HF_HOME>/hub/datasets--OWNER--NAME
    target = cache_repo / "radtune-unpacked" / hub.sha
    if (target / "imgs").is_dir():
        return target
    staging = target.with_name(f".{hub.sha}.{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(hub.local_dir / "imgs.zip") as archive:
            names = [name for name in archive.namelist() if not name.endswith("/")]
            prefix = "" if any(name.startswith("imgs/") for name in names) else "imgs/"
            for name in names:
                relative = PurePosixPath(prefix + name)
                if relative.is_absolute() or ".." in relative.parts or relative.parts[0] != "imgs":
                    if relative.parts and relative.parts[0] == "__MACOSX":
                        continue
                    raise SourceLayoutError(f"{hub.address}: imgs.zip member {name!r} lies outside imgs/")
                destination = staging.joinpath(*relative.parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
        for name in hub.files:
            if "/" not in name and name.endswith(".json"):
                shutil.copyfile(hub.local_dir / name, staging / name)
        try:
            os.replace(staging, target)
        except OSError:  # another build unpacked it meanwhile
            if not (target / "imgs").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# Readers ----------------------------------------------------------------------------------------------------------


def _layout_error(hub: HubSource, source: str, expected: str) -> SourceLayoutError:
    shown = ", ".join(list(hub.files)[:8]) or "no files"
    return SourceLayoutError(f"{hub.address}: not a Hub copy of {source} (expected {expected}; found {shown})")


def read_vqa_rad(hub: HubSource) -> Iterator[dict]:
    """`flaviagiammarino/vqa-rad` and copies laid out like it (parquet `image`, `question`, `answer`)."""
    if not any(name.endswith(".parquet") for name in hub.files):
        raise _layout_error(hub, "VQA-RAD", "parquet files with image, question, answer")
    yield from _vqa_parquet(hub)


def read_pathvqa(hub: HubSource) -> Iterator[dict]:
    """`flaviagiammarino/path-vqa` and copies laid out like it (parquet `image`, `question`, `answer`)."""
    if not any(name.endswith(".parquet") for name in hub.files):
        raise _layout_error(hub, "PathVQA", "parquet files with image, question, answer")
    yield from _vqa_parquet(hub)


def read_slake(hub: HubSource, languages: str = "en") -> Iterator[dict]:
    """`BoKelvin/SLAKE` (the download's JSON files and `imgs.zip`) or a parquet copy; `languages` as in `slake.read`."""
    if "train.json" in hub.files or "test.json" in hub.files:
        yield from _slake_files(hub, languages)
    elif any(name.endswith(".parquet") for name in hub.files):
        yield from _vqa_parquet(hub, languages)
    else:
        raise _layout_error(hub, "SLAKE", "train.json/validation.json/test.json with imgs.zip, or parquet files")


def read_rocov2(hub: HubSource) -> Iterator[dict]:
    """`eltorio/ROCOv2-radiology` and copies laid out like it (parquet `image`, `image_id`, `caption`, `cui`)."""
    if not any(name.endswith(".parquet") for name in hub.files):
        raise _layout_error(hub, "ROCOv2", "parquet files with image, image_id, caption, cui")
    yield from _rocov2_parquet(hub)


_HUB_READS: dict[str, Callable[..., Iterator[dict]]] = {
    "vqa-rad": read_vqa_rad,
    "pathvqa": read_pathvqa,
    "slake": read_slake,
    "rocov2": read_rocov2,
}


def hub_reader(source: str, file_reader: Reader) -> Reader:
    """The reader of `source`'s Hub copies: the file reader's checks (required text, duplicate key) on Hub rows.

    Raises:
        `ValueError`: radtune reads no Hub copy of `source`.
    """
    if source not in _HUB_READS:
        raise ValueError(
            f"{source} cannot be built from the Hub; Hub copies are read for: {', '.join(_HUB_READS)} "
            "(build the others from their download)"
        )
    return dataclasses.replace(file_reader, read=_HUB_READS[source])


HUB_SOURCES = tuple(_HUB_READS)
