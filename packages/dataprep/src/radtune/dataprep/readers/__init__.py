"""Readers for each source dataset as it sits on disk; `READERS` maps the command-line name to its reader."""

from __future__ import annotations

from ..records import Reader
from . import chexpert_plus, imagefolder_csv, mimic_cxr, nih, pathvqa, roco, rocov2, slake, vqa_rad

READERS: dict[str, Reader] = {
    module.READER.name: module.READER
    for module in (rocov2, roco, mimic_cxr, chexpert_plus, nih, vqa_rad, slake, pathvqa, imagefolder_csv)
}

__all__ = ["READERS", "Reader"]
