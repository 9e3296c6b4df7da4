"""CheXpert Plus as downloaded from Stanford AIMI.

`df_chexpert_plus_240401.csv` lists every image (27 columns, sometimes after an unnamed index column). Its
`path_to_image` says `train/patient42142/study5/view1_frontal.jpg`, but the images ship as PNG under
`PNG/train/patient42142/study5/view1_frontal.png`, sometimes nested `PNG/PNG/`; the reader looks in each place.
Labels come from `chexbert_labels/report_fixed.json` (or `impression_fixed.json`, `findings_fixed.json`),
JSON lines keyed by `path_to_image`. The text is findings then impression, or the whole report when a study
has neither section.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from radtune.common.labeler import OBSERVATIONS

from ..records import Reader, SourceFileError, SourceLayoutError, clean_text, label_names, read_csv, read_text

REQUIRED = ("path_to_image", "deid_patient_id", "report", "section_findings", "section_impression", "split")
LABEL_FILES = ("report_fixed.json", "impression_fixed.json", "findings_fixed.json")


def _labels(root: Path) -> dict[str, list[str]] | None:
    for folder in (root / "chexbert_labels", root):
        for name in LABEL_FILES:
            path = folder / name
            if not path.is_file():
                continue
            labels = {}
            for number, line in enumerate(read_text(path).splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise SourceFileError(f"{path}:{number}: not a JSON line ({error})") from None
                if not isinstance(row, dict) or "path_to_image" not in row:
                    raise SourceFileError(f"{path}:{number}: expected an object with the key 'path_to_image'")
                labels[row["path_to_image"]] = label_names(row, OBSERVATIONS)
            return labels
    return None


def _image_path(bases: list[Path], relative: str) -> Path:
    relative_png = str(Path(relative).with_suffix(".png"))
    candidates = [base / relative_png for base in bases] + [base / relative for base in bases]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return candidates[0]


def _view(row: dict) -> str | None:
    ap_pa = row.get("ap_pa", "")
    if ap_pa:
        return ap_pa
    return row.get("frontal_lateral") or None


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    tables = sorted(root.glob("df_chexpert_plus*.csv")) + sorted(root.glob("df_chexpert_plus*.csv.gz"))
    if not tables:
        raise SourceLayoutError(f"{root}: no df_chexpert_plus_*.csv")
    bases = [p for p in (root / "PNG" / "PNG", root / "PNG", root) if p.is_dir()]
    labels = _labels(root)
    for row in read_csv(tables[-1], required=REQUIRED):
        relative = row["path_to_image"]
        parts = Path(relative).parts
        findings = clean_text(row["section_findings"])
        impression = clean_text(row["section_impression"])
        text = " ".join(part for part in (findings, impression) if part) or clean_text(row["report"])
        yield {
            "image": str(_image_path(bases, relative)),
            "id": relative,
            "text": text,
            "findings": findings,
            "impression": impression,
            "labels": labels.get(relative, []) if labels is not None else None,
            "patient_id": row["deid_patient_id"] or (parts[1] if len(parts) > 2 else None),
            "study_id": "/".join(parts[1:3]) if len(parts) > 3 else None,
            "view": _view(row),
            "split": row["split"],
        }


READER = Reader("chexpert-plus", read)
