"""Phantom chest radiographs: synthetic frontal films with matching reports, in a real dataset's layout.

    from radtune.dataprep.phantoms import generate_phantoms
    generate_phantoms("phantoms/mimic", n=2000, layout="mimic-cxr", image_size=256, seed=0)

or `radtune data phantoms phantoms/mimic --n 2000 --layout mimic-cxr`. The output is ingested by the
same readers as the real download; its `PHANTOM.json` marks it as source `phantom` (CC0-1.0, never
credentialed). Labels come from what was drawn (`findings.py` documents the CheXpert/NIH mapping).
"""

from radtune.dataprep.phantoms.findings import DEFAULT_PREVALENCES, TARGETS, Phantom
from radtune.dataprep.phantoms.generator import LAYOUTS, MARKER_FILE, generate_phantoms, iter_phantoms
from radtune.dataprep.phantoms.preview import make_preview

__all__ = [
    "DEFAULT_PREVALENCES",
    "LAYOUTS",
    "MARKER_FILE",
    "TARGETS",
    "Phantom",
    "generate_phantoms",
    "iter_phantoms",
    "make_preview",
]
