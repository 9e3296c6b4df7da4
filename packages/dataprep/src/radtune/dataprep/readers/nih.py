"""NIH ChestX-ray14 as downloaded (Box tarballs or Kaggle).

`Data_Entry_2017.csv`: the header splits `OriginalImage[Width,Height]` on its comma and data rows end with a
trailing comma; the reader only needs `Image Index`, `Finding Labels`, `Patient ID` and `View Position`.
Images are in `images/` or `images_001/images/ … images_012/images/`. `test_list.txt` is the official test
split (by patient); the images of `train_val_list.txt` are divided between train and validation by patient.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..records import Reader, SourceLayoutError, find_file, read_csv, read_text

REQUIRED = ("Image Index", "Finding Labels", "Patient ID")


def _index_images(root: Path) -> dict[str, str]:
    folders = [root / "images"] + sorted(p / "images" for p in root.glob("images_*") if p.is_dir())
    folders += sorted(p for p in root.glob("images_*") if p.is_dir() and not (p / "images").is_dir())
    index = {}
    for folder in folders:
        if folder.is_dir():
            for entry in os.scandir(folder):
                index.setdefault(entry.name, entry.path)
    return index


def _list(path: Path | None) -> set[str]:
    if path is None:
        return set()
    return {line.strip() for line in read_text(path).splitlines() if line.strip()}


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    table = find_file(root, "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
    if table is None:
        raise SourceLayoutError(f"{root}: no Data_Entry_2017.csv")
    images = _index_images(root)
    test = _list(find_file(root, "test_list.txt"))
    train_val = _list(find_file(root, "train_val_list.txt"))
    for row in read_csv(table, required=REQUIRED):
        name = row["Image Index"]
        labels = [label.strip() for label in row["Finding Labels"].split("|") if label.strip()]
        split = "test" if name in test else "train_val" if name in train_val else None
        yield {
            "image": images.get(name, str(root / "images" / name)),
            "id": name,
            "labels": labels,
            "patient_id": row["Patient ID"],
            "study_id": Path(name).stem,
            "view": row.get("View Position") or None,
            "split": split,
        }


READER = Reader("nih", read, required_text=())
