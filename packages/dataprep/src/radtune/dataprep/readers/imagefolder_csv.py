"""Users' own data: a CSV with an image path column and a text column.

Image paths are relative to the CSV's folder (or absolute). Columns are found by name (`image`, `file_name`,
`image_path`, `path`, `filename` for the image; `text`, `caption`, `report`, `description` for the text) or
given explicitly. Optional columns: patient id (enables the patient-level split), an official split, labels
joined by `|` or `;`.
"""

from __future__ import annotations

import csv as csv_module
from collections.abc import Iterator
from pathlib import Path

from ..records import (
    MissingColumnError,
    Reader,
    SourceFileError,
    SourceLayoutError,
    clean_text,
    open_text,
    read_csv,
    reading,
)

IMAGE_COLUMNS = ("image", "file_name", "image_path", "path", "filename", "file", "img")
TEXT_COLUMNS = ("text", "caption", "report", "description", "findings")
PATIENT_COLUMNS = ("patient_id", "patient", "subject_id")
SPLIT_COLUMNS = ("split",)
LABEL_COLUMNS = ("labels", "label")


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], path: Path, what: str) -> str | None:
    if wanted:
        if wanted not in columns:
            raise MissingColumnError(path, wanted, columns)
        return wanted
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if what:
        raise MissingColumnError(path, f"{what} (one of: {', '.join(candidates)})", columns)
    return None


def read(
    root: str | Path,
    csv: str | None = None,
    image_column: str | None = None,
    text_column: str | None = None,
    patient_column: str | None = None,
    split_column: str | None = None,
    labels_column: str | None = None,
    license: str | None = None,
) -> Iterator[dict]:
    """Yield records from a CSV of image paths and texts.

    Args:
        root (`str` or `Path`): the folder holding the CSV (or the CSV itself).
        csv (`str`, *optional*): the CSV, relative to `root`; defaults to `metadata.csv`, else the only CSV in `root`.
        image_column, text_column, patient_column, split_column, labels_column (`str`, *optional*): column names,
            found by their usual names when not given.
        license (`str`, *optional*): a licence to record on every row.
    """
    root = Path(root)
    if root.is_file():
        path, root = root, root.parent
    elif csv:
        path = Path(csv) if Path(csv).is_absolute() else root / csv
    elif (root / "metadata.csv").is_file():
        path = root / "metadata.csv"
    else:
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise SourceLayoutError(f"{root}: expected one CSV (or metadata.csv), found {len(found)}; pass csv=")
        path = found[0]
    if not path.is_file():
        raise SourceLayoutError(f"{path}: no such CSV")
    with reading(path), open_text(path) as handle:
        try:
            columns = [c.strip() for c in next(csv_module.reader(handle), [])]
        except csv_module.Error as error:
            raise SourceFileError(f"{path}, line 1: not valid CSV: {error}") from None
    image_col = _pick(columns, image_column, IMAGE_COLUMNS, path, "image column")
    text_col = _pick(columns, text_column, TEXT_COLUMNS, path, "text column")
    patient_col = _pick(columns, patient_column, PATIENT_COLUMNS, path, "")
    split_col = _pick(columns, split_column, SPLIT_COLUMNS, path, "")
    labels_col = _pick(columns, labels_column, LABEL_COLUMNS, path, "")
    for number, row in enumerate(read_csv(path, required=(image_col, text_col))):
        image = Path(row[image_col])
        labels = None
        if labels_col:
            raw = row[labels_col].replace(";", "|")
            labels = [label.strip() for label in raw.split("|") if label.strip()]
        yield {
            "image": str(image if image.is_absolute() else path.parent / image),
            "id": row[image_col] or str(number),
            "text": clean_text(row[text_col]),
            "labels": labels,
            "patient_id": row[patient_col] or None if patient_col else None,
            "split": row[split_col] or None if split_col else None,
            "license": license,
        }


READER = Reader("imagefolder-csv", read)
