"""MIMIC-CXR-JPG (or MIMIC-CXR DICOM) as downloaded from PhysioNet.

Images: `files/p10/p10000032/s50414267/<dicom_id>.jpg` (or `.dcm`); reports: `files/p10/p10000032/s50414267.txt`,
beside the images or under a separate `mimic-cxr-reports/files/` tree. Metadata (all optionally gzipped):
`mimic-cxr-2.0.0-split.csv` (`dicom_id,study_id,subject_id,split`, `validate` → `validation`),
`mimic-cxr-2.0.0-metadata.csv` (`ViewPosition`), `mimic-cxr-2.0.0-chexpert.csv` (labels: the observations
marked `1.0`; uncertain `-1.0` and blank are not positive). Without the split file every image under `files/`
is read and the build splits by patient. A report that is missing is skipped as `missing_report`, one that is not
UTF-8 as `invalid_text` (never decoded with replacement characters).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from radtune.common.labeler import OBSERVATIONS

from ..records import Reader, SourceLayoutError, find_file, label_names, not_utf8_message, read_csv
from ..section_parser import parse_report

PREFIX = "mimic-cxr-2.0.0"
IMAGE_SUFFIXES = (".jpg", ".dcm")


def _study_folder(files: Path, subject_id: str, study_id: str) -> Path:
    return files / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}"


def _walk_images(files: Path) -> Iterator[tuple[str, str, str, Path]]:
    """(dicom_id, study_id, subject_id, path) for every image under `files/`, in sorted order."""
    for group in sorted(p for p in files.iterdir() if p.is_dir() and p.name.startswith("p")):
        for patient in sorted(p for p in group.iterdir() if p.is_dir() and p.name.startswith("p")):
            for study in sorted(p for p in patient.iterdir() if p.is_dir() and p.name.startswith("s")):
                seen = set()
                for entry in sorted(os.scandir(study), key=lambda e: e.name):
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() in IMAGE_SUFFIXES and stem not in seen:
                        seen.add(stem)
                        yield stem, study.name[1:], patient.name[1:], Path(entry.path)


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    files = root / "files"
    if not files.is_dir():
        raise SourceLayoutError(f"{root}: no 'files/' folder (expected files/p10/p10000032/s50414267/<dicom_id>.jpg)")
    report_roots = [files, root / "mimic-cxr-reports" / "files", root.parent / "mimic-cxr-reports" / "files"]

    labels: dict[str, list[str]] = {}
    chexpert = find_file(root, f"{PREFIX}-chexpert.csv")
    if chexpert is not None:
        for row in read_csv(chexpert, required=("subject_id", "study_id", *OBSERVATIONS)):
            labels[row["study_id"]] = label_names(row)
    views: dict[str, str] = {}
    metadata = find_file(root, f"{PREFIX}-metadata.csv")
    if metadata is not None:
        for row in read_csv(metadata, required=("dicom_id", "ViewPosition")):
            views[row["dicom_id"]] = row["ViewPosition"]

    @lru_cache(maxsize=1024)
    def report(subject_id: str, study_id: str):
        """The parsed report, or `None` when there is none, or the reason it cannot be read."""
        for base in report_roots:
            path = base / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}.txt"
            if path.is_file():
                data = path.read_bytes()
                try:
                    return parse_report(data.decode("utf-8"))
                except UnicodeDecodeError as error:
                    # Counted as a skip, never decoded with replacement characters.
                    line = data.count(b"\n", 0, error.start) + 1
                    return not_utf8_message(path, f"line {line}, byte 0x{data[error.start]:02x}")
        return None

    split_file = find_file(root, f"{PREFIX}-split.csv")
    if split_file is not None:
        rows = (
            (row["dicom_id"], row["study_id"], row["subject_id"], row["split"])
            for row in read_csv(split_file, required=("dicom_id", "study_id", "subject_id", "split"))
        )
    else:
        rows = ((dicom_id, study, subject, None) for dicom_id, study, subject, _ in _walk_images(files))

    for dicom_id, study_id, subject_id, split in rows:
        folder = _study_folder(files, subject_id, study_id)
        image = folder / f"{dicom_id}.jpg"
        if not image.is_file() and (folder / f"{dicom_id}.dcm").is_file():
            image = folder / f"{dicom_id}.dcm"
        parsed = report(subject_id, study_id)
        record = {
            "image": str(image),
            "id": dicom_id,
            "patient_id": subject_id,
            "study_id": study_id,
            "view": views.get(dicom_id) or None,
            "labels": labels.get(study_id, []) if labels else None,
            "split": split,
        }
        if parsed is None:
            record.update(text="", skip_reason="missing_report")
        elif isinstance(parsed, str):
            record.update(text="", skip_reason="invalid_text", skip_detail=parsed)
        else:
            record.update(text=parsed.text, findings=parsed.findings, impression=parsed.impression)
        yield record


READER = Reader("mimic-cxr", read)
