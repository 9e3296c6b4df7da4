"""Build a `datasets.DatasetDict` from a source dataset as it sits on disk.

The steps, each streaming through Arrow files so memory stays flat however large the source is:

1. the reader's records are written to an Arrow file with `datasets`' `ArrowWriter` (records without their
   required text are marked `empty_text`); the columns no record fills are left out of the dataset;
2. the image pass (`image_pass.py`) decodes every image in `num_proc` processes (this one and `num_proc - 1`
   forked ones, each a contiguous range of records), checks it, normalises it to `L`/`RGB`, resizes it to
   `max_side`, hashes its pixels (a bad image is marked with its reason, never raised), assigns the record's
   split (official, else patient-level hash) and writes each kept row straight into the Arrow shards of its
   split: the image bytes are written once;
3. skipped records are counted by reason; too many (`max_skip_fraction`) fails the build; exact duplicates
   (the same decoded pixels, and the same `dedupe_on` fields, as another record; see
   `image_processing.pixel_hash`) are resolved by `resolve_duplicates`: an official test split is never altered
   (a copy in train or validation of a test row leaves its split and is reported as leakage; repeats inside the
   test split are reported, not removed), elsewhere the first copy is kept and the others dropped and counted;
   the kept records are checked for patient leakage across splits;
4. the shards become a `save_to_disk` folder (`image_pass.finish_splits`) in a temporary folder beside the
   output, with `build_report.json` and the dataset card `README.md`, and the folder is renamed into place only
   at the very end: a failed build leaves nothing behind, and the staging folder of a killed one (its workers die
   with it) is removed, and named, by the next build into the same output (`remove_stale_staging`).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from . import __version__, card
from .image_pass import ImagePass, finish_splits, open_table, run_image_pass
from .image_processing import DEFAULT_MAX_PIXELS
from .readers import READERS
from .readers.hub import fetch, hub_reader, is_hub_address
from .records import LIST_FIELDS, STRING_FIELDS, Reader
from .sources import SOURCES, published_splits, resolve_source
from .splits import DEFAULT_RATIOS, SPLIT_NAMES, check_patient_leakage, normalise_split_name, parse_ratios

REPORT_NAME = "build_report.json"
# Columns every build keeps, even when empty.
_ALWAYS_KEPT = ("image", "id", "source", "license")
# Records buffered per Arrow write while the records are read: few, since a record may hold its image's bytes.
RECORD_WRITER_BATCH_SIZE = 64


class BuildError(RuntimeError):
    """A build that cannot produce a trustworthy dataset."""


class TooManySkipsError(BuildError):
    """More records were skipped than `max_skip_fraction` allows."""


def _record_features():
    from datasets import Features, List, Value

    features = {"image_path": Value("string"), "image_bytes": Value("binary")}
    features.update({name: Value("string") for name in STRING_FIELDS})
    features.update({name: List(Value("string")) for name in LIST_FIELDS})
    features.update({"split": Value("string"), "skip_reason": Value("string"), "skip_detail": Value("string")})
    return Features(features)


def _as_string(value) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def reader_option_names(reader: Reader) -> tuple[str, ...]:
    """The options `reader.read` takes after its source (`languages` for SLAKE, none for VQA-RAD)."""
    parameters = list(inspect.signature(reader.read).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(parameter.name for parameter in parameters if parameter.kind in kinds)


def check_reader_options(source: str, reader: Reader, options: dict) -> None:
    """Refuse options the reader does not take, in one line that lists those it does.

    Raises:
        `ValueError`: an unknown option.
    """
    known = reader_option_names(reader)
    unknown = [name for name in options if name not in known]
    if unknown:
        takes = f"its options are: {', '.join(known)}" if known else "it takes no options"
        raise ValueError(f"unknown --reader-option {', '.join(unknown)} for the {source} reader; {takes}")


def generate_records(
    reader: Reader, src, reader_options: dict, source_name: str, default_license: str
) -> Iterator[dict]:
    """Yield the reader's records in the schema of the records file (`_record_features`).

    `src` is the source folder (a `str`) or, for a Hub copy, the fetched `readers.hub.HubSource`."""
    for record in reader.read(src, **reader_options):
        image = record.get("image")
        row = {name: _as_string(record.get(name)) for name in STRING_FIELDS}
        for name in LIST_FIELDS:
            values = record.get(name)
            row[name] = None if values is None else [str(v) for v in values]
        row["image_path"] = None if isinstance(image, bytes) else _as_string(image)
        row["image_bytes"] = image if isinstance(image, bytes) else None
        row["source"] = source_name
        row["license"] = row["license"] or default_license
        row["split"] = normalise_split_name(record.get("split"))
        reason, detail = record.get("skip_reason"), record.get("skip_detail")
        if reason is None:
            field = next((name for name in (*STRING_FIELDS, *LIST_FIELDS) if _holds_nul(row[name])), None)
            if field is not None:
                # A NUL byte is a damaged file, never text: counted, not kept (nor silently removed).
                reason, detail = "invalid_text", f"field '{field}' holds a NUL byte (U+0000)"
        if reason is None and any(not (row.get(field) or "").strip() for field in reader.required_text):
            reason = "empty_text"
        if reason is None and image is None:
            reason = "missing_image"
        row["skip_reason"] = reason
        row["skip_detail"] = detail
        yield row


def _holds_nul(value) -> bool:
    if isinstance(value, list):
        return any("\x00" in item for item in value)
    return value is not None and "\x00" in value


def _write_records(path: Path, rows: Iterator[dict]) -> int:
    """Write `rows` to the Arrow file `path`, a few at a time; returns how many."""
    from datasets.arrow_writer import ArrowWriter
    from datasets.utils import tqdm as hf_tqdm

    with ArrowWriter(features=_record_features(), path=str(path), writer_batch_size=RECORD_WRITER_BATCH_SIZE) as writer:
        for row in hf_tqdm(rows, desc="Reading records", unit=" records"):
            writer.write(row)
        total, _ = writer.finalize()
    return total


def _column(table, name: str) -> list:
    return table.column(name).to_pylist()


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def failed_report_path(out_dir: str | Path) -> Path:
    """Where a failed build leaves its report: beside the would-be output folder."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f"{out_dir.name}.{REPORT_NAME}")


def build_dataset(
    source: str,
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    max_side: int | None = None,
    num_proc: int = 1,
    max_skip_fraction: float = 0.05,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    reader_options: dict | None = None,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    command: str | None = None,
) -> dict:
    """Build the dataset of `source` found at `src_dir` and save it to `out_dir`.

    Args:
        source (`str`): a reader name (`rocov2`, `roco`, `mimic-cxr`, `chexpert-plus`, `nih`, `vqa-rad`, `slake`,
            `pathvqa`, `imagefolder-csv`).
        src_dir (`str` or `Path`): the source as downloaded and unzipped, or a Hub copy of it,
            `hf://datasets/OWNER/NAME[@REVISION]` (vqa-rad, pathvqa, slake, rocov2; see `readers.hub`).
        out_dir (`str` or `Path`): where the `save_to_disk` folder goes; it must not exist unless `overwrite`.
        max_side (`int`, *optional*): scale images down so their longer side is at most this.
        num_proc (`int`, *optional*, defaults to `1`): processes decoding images (this one included).
        max_skip_fraction (`float`, *optional*, defaults to `0.05`): fail when a larger fraction of records is skipped.
        ratios (`Sequence[float]`, *optional*, defaults to `(0.8, 0.1, 0.1)`): train/validation/test ratios of the
            patient-level split, used where the source has no official split.
        reader_options (`dict`, *optional*): keyword arguments for the reader (`languages="en,zh"` for SLAKE …).
        overwrite (`bool`, *optional*, defaults to `False`): replace an existing `out_dir` (only once the new build
            has succeeded).
        max_pixels (`int`, *optional*): images with more pixels are skipped as `oversized_image`.
        command (`str`, *optional*): the command line recorded in the report and the card.

    Returns:
        `dict`: the build report (also written to `out_dir/build_report.json`).

    Raises:
        `TooManySkipsError`: more than `max_skip_fraction` of the records were skipped (the report is written to
            `<out_dir>.build_report.json` and no dataset is written).
        `PatientLeakageError`: one patient ended up in two splits.
        `MissingColumnError`, `SourceLayoutError`: the source is not laid out as the reader expects.
        `ValueError`: a reader option the reader does not take (the message lists those it takes).
        `HubError`: a Hub source whose repo or revision does not exist or cannot be reached.
    """
    from datasets import Features, Image

    if source not in READERS:
        raise ValueError(f"unknown source {source!r}; choose one of: {', '.join(READERS)}")
    if not 0 <= max_skip_fraction <= 1:
        raise ValueError(f"max_skip_fraction must be between 0 and 1, got {max_skip_fraction}")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    ratios = parse_ratios(ratios)
    reader_options = dict(reader_options or {})
    from_hub = is_hub_address(str(src_dir))
    reader: Reader = hub_reader(source, READERS[source]) if from_hub else READERS[source]
    check_reader_options(source, reader, reader_options)
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists (pass overwrite=True / --overwrite to replace it)")
    hub = None
    if from_hub:
        hub = fetch(str(src_dir))
        src, src_dir, marker = hub, hub.address, None
        info = SOURCES[source]
        if hub.license:  # the copy's own terms (eltorio/ROCOv2-radiology is CC BY-NC-SA, the release CC BY)
            info = dataclasses.replace(info, license=hub.license)
    else:
        src_dir = Path(src_dir).resolve()
        if not src_dir.is_dir():
            raise FileNotFoundError(f"source folder not found: {src_dir}")
        src = str(src_dir)
        info, marker = resolve_source(source, src_dir)
    if marker is None and reader_options.get("license"):
        # Users' own data (imagefolder-csv) names its licence; the card and every row carry it.
        info = dataclasses.replace(info, license=str(reader_options["license"]))
    # A phantom in a benchmark's layout is not that benchmark: no published sizes to compare with.
    published = None if marker else published_splits(source, hub.repo_id if hub else None, reader_options)
    started = time.time()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stale = remove_stale_staging(out_dir)
    work = out_dir.parent / f"{staging_prefix(out_dir)}{uuid.uuid4().hex[:8]}"
    work.mkdir()
    lock = None
    try:
        lock = _hold_staging_lock(work)
        # Records
        records_path = work / "records.arrow"
        rows = generate_records(reader, src, reader_options, info.name, info.license)
        total = _write_records(records_path, rows)
        if total == 0:
            raise BuildError(f"the {source} reader found no records in {src_dir}")
        records = open_table(records_path)
        columns = tuple(
            name
            for name in (*STRING_FIELDS, *LIST_FIELDS)
            if name in _ALWAYS_KEPT or records.column(name).null_count < total
        )
        record_features = _record_features()
        features = Features({"image": Image(), **{name: record_features[name] for name in columns}})

        # Images
        staged = work / "dataset"
        task = ImagePass(
            records_path=str(records_path),
            out_dir=str(staged),
            columns=columns,
            features=features,
            dedupe_on=tuple(reader.dedupe_on),
            ratios=ratios,
            max_side=max_side,
            max_pixels=max_pixels,
            max_shard_bytes=_max_shard_bytes(),
        )
        results = run_image_pass(task, total, num_proc)
        reasons = [reason for result in results for reason in result.reasons]
        details = [detail for result in results for detail in result.details]

        # Skips, duplicates, splits
        ids, paths = _column(records, "id"), _column(records, "image_path")
        skipped_items = [
            {"index": i, "id": ids[i], "image": paths[i], "reason": reason, "detail": details[i]}
            for i, reason in enumerate(reasons)
            if reason is not None
        ]
        skip_counts = dict(sorted(Counter(item["reason"] for item in skipped_items).items()))
        skip_fraction = len(skipped_items) / total
        report = {
            "source": info.name,
            "reader": source,
            "src_dir": str(src_dir),
            "hub": None if hub is None else {"repo_id": hub.repo_id, "revision": hub.revision, "sha": hub.sha},
            "reader_options": reader_options,
            "out_dir": str(out_dir),
            "command": command,
            "radtune_dataprep_version": __version__,
            "phantom": marker,
            "credentialed": info.credentialed,
            "max_side": max_side,
            "stale_staging_removed": stale,
            "records_read": total,
            "skipped_total": len(skipped_items),
            "skip_fraction": round(skip_fraction, 6),
            "max_skip_fraction": max_skip_fraction,
            "skipped": skip_counts,
        }
        if skip_fraction > max_skip_fraction:
            report.update(status="failed", skipped_items=skipped_items)
            _write_json(failed_report_path(out_dir), report)
            raise TooManySkipsError(
                f"{len(skipped_items)} of {total} records skipped ({skip_fraction:.1%} > {max_skip_fraction:.1%}): "
                f"{', '.join(f'{k}={v}' for k, v in skip_counts.items())}. Nothing was written; the skipped records "
                f"are listed in {failed_report_path(out_dir)}."
            )

        hashes = [digest for result in results for digest in result.hashes]
        splits = [split for result in results for split in result.splits]
        keys = [
            None if reasons[i] is not None else key
            for i, key in enumerate(zip(hashes, *(_column(records, name) for name in reader.dedupe_on), strict=True))
        ]
        resolved = resolve_duplicates(keys, splits, _column(records, "split"))
        keep = resolved.keep
        describe = _describer(ids, paths, splits)
        duplicates = [describe(i, first) for i, first in resolved.dropped]
        leakage = [describe(i, first) for i, first in resolved.leaked]
        test_duplicates = [describe(i, first) for i, first in resolved.test_repeats]
        if not keep:
            raise BuildError(f"no records left after skipping {len(skipped_items)} and dropping duplicates")
        patients = _column(records, "patient_id")
        check_patient_leakage([patients[i] for i in keep], [splits[i] for i in keep])

        # Write
        split_counts = finish_splits(staged, results, set(keep), features)
        report.update(
            status="ok",
            kept=len(keep),
            duplicates_dropped=len(duplicates),
            leakage_dropped=len(leakage),
            test_duplicates_kept=len(test_duplicates),
            splits=split_counts,
            published_splits=_compare_published(published, split_counts),
            features={name: str(feature) for name, feature in features.items()},
            seconds=round(time.time() - started, 2),
            skipped_items=skipped_items,
            duplicates=duplicates,
            leakage=leakage,
            test_duplicates=test_duplicates,
        )
        _write_json(staged / REPORT_NAME, report)
        (staged / "README.md").write_text(card.render_card(info, report), encoding="utf-8")
        _move_into_place(staged, out_dir, work)
        stale = failed_report_path(out_dir)
        if stale.exists():
            stale.unlink()
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if lock is not None:
            lock.close()


@dataclasses.dataclass
class ResolvedDuplicates:
    """What `resolve_duplicates` decided: indices kept (in order), and `(index, index of the copy it repeats)` for
    the rows dropped as duplicates, dropped as train/test (or validation) leakage, and kept as repeats in test."""

    keep: list[int]
    dropped: list[tuple[int, int]]
    leaked: list[tuple[int, int]]
    test_repeats: list[tuple[int, int]]


# An official split outranks the ones after it: a copy of one of its rows elsewhere leaves.
_SPLIT_RANK = {"test": 0, "validation": 1, "train": 2}


def resolve_duplicates(keys: Sequence, splits: Sequence[str], official: Sequence[str | None]) -> ResolvedDuplicates:
    """Decide which copies of each exact duplicate stay.

    Args:
        keys (`Sequence`): each record's duplicate key (pixel hash and `dedupe_on` fields), `None` for a skipped one.
        splits (`Sequence[str]`): each record's split in the built dataset.
        official (`Sequence[str | None]`): each record's official split (`None`/`train_val` where the build chose it).

    A key that no official split claims: the first copy stays, later ones are dropped as duplicates (the old rule,
    whatever their splits). Otherwise the official split of highest rank among its copies (test, then validation,
    then train) owns it: copies in any other split leave as leakage; inside the owning split the first copy stays
    and later ones are dropped, except in an official test split, where they all stay and are reported: a
    published test split is never altered.
    """
    groups: dict = {}
    for index, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(index)
    keep, dropped, leaked, repeats = [], [], [], []
    for members in groups.values():
        ranked = [i for i in members if official[i] in _SPLIT_RANK and splits[i] == official[i]]
        if not ranked:
            keep.append(members[0])
            dropped += [(i, members[0]) for i in members[1:]]
            continue
        owner = min((splits[i] for i in ranked), key=_SPLIT_RANK.__getitem__)
        inside = [i for i in members if splits[i] == owner]
        first = inside[0]
        keep.append(first)
        for i in inside[1:]:
            if owner == "test" and official[i] == "test":
                keep.append(i)
                repeats.append((i, first))
            else:
                dropped.append((i, first))
        leaked += [(i, first) for i in members if splits[i] != owner]
    keep.sort()
    return ResolvedDuplicates(keep, sorted(dropped), sorted(leaked), sorted(repeats))


def _describer(ids: list, paths: list, splits: list):
    def describe(index: int, first: int) -> dict:
        item = {"index": index, "id": ids[index], "image": paths[index], "split": splits[index]}
        item.update(duplicate_of=ids[first], duplicate_of_split=splits[first])
        return item

    return describe


def _compare_published(published, counts: dict[str, int]) -> dict | None:
    """The published sizes beside the built ones: `{counts, reference, equal, differences}` (`None` if unknown)."""
    if published is None:
        return None
    names = [name for name in SPLIT_NAMES if name in counts or name in published.counts]
    differences = {
        name: {"built": counts.get(name, 0), "published": published.counts.get(name, 0)}
        for name in names
        if counts.get(name, 0) != published.counts.get(name, 0)
    }
    return {
        "counts": dict(published.counts),
        "reference": published.reference,
        "equal": not differences,
        "differences": differences,
    }


# A build holds an exclusive `flock` on this file of its staging folder until it ends; its forked workers inherit the
# lock and die with it (see `image_pass`), so a staging folder whose lock can be taken was left by a killed build.
STAGING_LOCK = ".lock"
# A staging folder without its lock file is only that young while its build is starting.
_UNLOCKED_GRACE_S = 60


def staging_prefix(out_dir: str | Path) -> str:
    """The name prefix of the staging folders of builds into `out_dir` (they lie beside it)."""
    return f".{Path(out_dir).name}.building-"


def _hold_staging_lock(work: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, and stale folders are left alone
        return None
    handle = open(work / STAGING_LOCK, "w")  # noqa: SIM115 - held until the build ends
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def _is_abandoned(folder: Path) -> bool:
    import fcntl

    lock_path = folder / STAGING_LOCK
    if not lock_path.is_file():
        return time.time() - folder.stat().st_mtime > _UNLOCKED_GRACE_S
    with open(lock_path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a build (or its workers) still running
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def remove_stale_staging(out_dir: str | Path) -> list[str]:
    """Remove the staging folders that killed builds into `out_dir` left beside it, and name them on stderr.

    A folder another build is still using (its lock held) is left alone.

    Returns:
        `list[str]`: the names of the folders removed.
    """
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return []
    out_dir = Path(out_dir)
    removed = []
    for folder in sorted(out_dir.parent.glob(f"{staging_prefix(out_dir)}*")):
        try:
            if not folder.is_dir() or not _is_abandoned(folder):
                continue
            size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        except OSError:  # removed meanwhile by another build
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
        print(
            f"removed {folder} ({size / 2**20:.1f} MB), left by an interrupted build of {out_dir.name}",
            file=sys.stderr,
        )
    return removed


def _max_shard_bytes() -> int:
    """The shard size `save_to_disk` aims at (`datasets.config.MAX_SHARD_SIZE`, 500 MB)."""
    from datasets import config
    from datasets.utils.py_utils import convert_file_size_to_int

    return convert_file_size_to_int(config.MAX_SHARD_SIZE)


def _move_into_place(staged: Path, out_dir: Path, work: Path) -> None:
    if out_dir.exists():
        old = work / "previous"
        os.replace(out_dir, old)
    os.replace(staged, out_dir)


def default_command() -> str:
    """The command line of this process, for the report and the card (passwords inside URLs redacted)."""
    from radtune.dataprep.qa.privacy import redact_url_credentials

    args = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []
    return redact_url_credentials(" ".join(args))


__all__ = [
    "BuildError",
    "ResolvedDuplicates",
    "TooManySkipsError",
    "build_dataset",
    "check_reader_options",
    "reader_option_names",
    "resolve_duplicates",
    "REPORT_NAME",
    "failed_report_path",
    "remove_stale_staging",
    "staging_prefix",
]
