"""ROCO as downloaded: the original GitHub layout (razorx89/roco-dataset) or the Kaggle CSV layout.

Original: `data/{train,validation,test}/{radiology,non-radiology}/captions.txt`, tab separated with no header and
a space after the tab (`ROCO_00020<TAB> caption`); a caption can run over several lines, so a line that does not
start with a ROCO id continues the previous caption. `cuis.txt` is `ROCO_ID<TAB><TAB>CUI<TAB>CUI…`,
`licences.txt` is `ROCO_ID,PMC_ID,CC`, images are `images/<ROCO_ID>.jpg`.

Kaggle: `all_data/{train,validation,test}/radiology/images/*.jpg` with `radiologytraindata.csv`,
`radiologyvaldata.csv`, `radiologytestdata.csv` (columns `id,name,caption`; `name` is the file in `images/`).
Some named files are missing on disk: the reader yields them anyway and the build counts them as missing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from ..records import Reader, SourceLayoutError, clean_text, open_text, read_csv, reading

SPLITS = ("train", "validation", "test")
_ID_LINE = re.compile(r"^(ROCO_\d+)\t(.*)$")
_KAGGLE_CSV = {"train": "radiologytraindata.csv", "validation": "radiologyvaldata.csv", "test": "radiologytestdata.csv"}


def parse_captions(path: Path) -> dict[str, str]:
    """`ROCO_ID → caption` from a header-less, tab-separated captions.txt with possibly multi-line captions."""
    captions: dict[str, str] = {}
    current = None
    with reading(path), open_text(path) as handle:
        for line in handle:
            line = line.rstrip("\r\n")
            match = _ID_LINE.match(line)
            if match:
                current = match.group(1)
                captions[current] = match.group(2)
            elif current is not None and line.strip():
                captions[current] += " " + line
    return {key: clean_text(value) for key, value in captions.items()}


def _tab_lists(path: Path) -> dict[str, list[str]]:
    items: dict[str, list[str]] = {}
    if not path.is_file():
        return items
    with reading(path), open_text(path) as handle:
        for line in handle:
            fields = [f.strip() for f in line.rstrip("\r\n").split("\t")]
            if fields and fields[0].startswith("ROCO_"):
                items[fields[0]] = [f for f in fields[1:] if f]
    return items


def _licences(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with reading(path), open_text(path) as handle:
        return {row[0].strip(): row[2].strip() for row in csv.reader(handle) if len(row) >= 3}


def _original(data: Path, subsets: tuple[str, ...]) -> Iterator[dict]:
    for split in SPLITS:
        for subset in subsets:
            folder = data / split / subset
            captions_file = folder / "captions.txt"
            if not captions_file.is_file():
                continue
            cuis = _tab_lists(folder / "cuis.txt")
            licences = _licences(folder / "licences.txt")
            for roco_id, caption in parse_captions(captions_file).items():
                yield {
                    "image": str(folder / "images" / f"{roco_id}.jpg"),
                    "id": roco_id,
                    "text": caption,
                    "concepts": cuis.get(roco_id, []),
                    "split": split,
                    "license": licences.get(roco_id),
                }


def _kaggle(all_data: Path) -> Iterator[dict]:
    for split, csv_name in _KAGGLE_CSV.items():
        candidates = [all_data / split / csv_name, all_data / split / "radiology" / csv_name]
        csv_path = next((c for c in candidates if c.is_file()), None)
        if csv_path is None:
            continue
        images = all_data / split / "radiology" / "images"
        for row in read_csv(csv_path, required=("id", "name", "caption")):
            yield {
                "image": str(images / row["name"]),
                "id": row["id"] or Path(row["name"]).stem,
                "text": clean_text(row["caption"]),
                "split": split,
            }


def read(root: str | Path, subsets: str = "radiology") -> Iterator[dict]:
    """Yield ROCO records.

    Args:
        root (`str` or `Path`): the repository root (holding `data/`), `data/` itself, or the Kaggle folder holding
            `all_data/` (or `all_data/` itself).
        subsets (`str`, *optional*, defaults to `"radiology"`): comma-separated subsets of the original layout
            (`radiology`, `non-radiology`).
    """
    root = Path(root)
    wanted = tuple(s.strip() for s in subsets.split(",") if s.strip())
    for data in (root / "data", root):
        if any((data / split / subset / "captions.txt").is_file() for split in SPLITS for subset in wanted):
            yield from _original(data, wanted)
            return
    for all_data in (root / "all_data", root):
        if any((all_data / split).is_dir() for split in SPLITS) and any(
            (all_data / split / name).is_file() or (all_data / split / "radiology" / name).is_file()
            for split, name in _KAGGLE_CSV.items()
        ):
            yield from _kaggle(all_data)
            return
    raise SourceLayoutError(
        f"{root}: neither the original ROCO layout (data/<split>/radiology/captions.txt) nor the Kaggle layout "
        "(all_data/train/radiologytraindata.csv) was found"
    )


READER = Reader("roco", read)
