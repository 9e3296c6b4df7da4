"""ROCOv2 (Zenodo record 10821435) as unzipped: `{split}_captions.csv`, concepts CSVs and image folders.

Images sit at `train/<ID>.jpg` or, for some unzip tools, `train_images/train/<ID>.jpg`; both are accepted.
Concepts are the union of `{split}_concepts.csv` and `{split}_concepts_manual.csv` (`ID,CUIs`, CUIs joined by
`;`); their canonical names from `cui_mapping.csv` become the labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import Reader, SourceLayoutError, clean_text, find_file, read_csv

# File prefix on disk → split name in the built dataset.
SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _image_dir(root: Path, prefix: str) -> Path:
    for candidate in (root / prefix, root / f"{prefix}_images" / prefix, root / f"{prefix}_images"):
        if candidate.is_dir():
            return candidate
    return root / prefix


def _concepts(root: Path, prefix: str) -> dict[str, list[str]]:
    concepts: dict[str, list[str]] = {}
    for name in (f"{prefix}_concepts.csv", f"{prefix}_concepts_manual.csv"):
        path = find_file(root, name)
        if path is None:
            continue
        for row in read_csv(path, required=("ID", "CUIs")):
            merged = concepts.setdefault(row["ID"], [])
            for cui in row["CUIs"].split(";"):
                cui = cui.strip()
                if cui and cui not in merged:
                    merged.append(cui)
    return concepts


def _licences(root: Path) -> dict[str, str]:
    path = find_file(root, "license_information.csv")
    if path is None:
        return {}
    licences = {}
    for row in read_csv(path, required=("ID",)):
        # The column layout is not documented for certain: prefer a licence column, else the licence link.
        value = next((v for k, v in row.items() if "licen" in k.lower() and v), "") or row.get("Link", "")
        if value:
            licences[row["ID"]] = value
    return licences


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    caption_files = {prefix: find_file(root, f"{prefix}_captions.csv") for prefix in SPLITS}
    if not any(caption_files.values()):
        raise SourceLayoutError(f"{root}: no ROCOv2 caption file ({', '.join(f'{p}_captions.csv' for p in SPLITS)})")
    names = {}
    mapping = find_file(root, "cui_mapping.csv")
    if mapping is not None:
        names = {row["CUI"]: row["Canonical name"] for row in read_csv(mapping, required=("CUI", "Canonical name"))}
    licences = _licences(root)
    for prefix, captions in caption_files.items():
        if captions is None:
            continue
        image_dir = _image_dir(root, prefix)
        concepts = _concepts(root, prefix)
        for row in read_csv(captions, required=("ID", "Caption")):
            image_id = row["ID"]
            cuis = concepts.get(image_id, [])
            yield {
                "image": str(image_dir / f"{image_id}.jpg"),
                "id": image_id,
                "text": clean_text(row["Caption"]),
                "concepts": cuis,
                "labels": [names[c] for c in cuis if c in names],
                "split": SPLITS[prefix],
                "license": licences.get(image_id),
            }


READER = Reader("rocov2", read)
