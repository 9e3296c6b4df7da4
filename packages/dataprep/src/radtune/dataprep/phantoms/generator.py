"""Generate a phantom dataset: sample, draw and describe each study, then hand it to a layout writer.

Every random draw comes from a generator seeded by `(seed, stream, number)`: stream 0 is a study's
findings and image, 1 a patient's attributes, 2 a study's report wording and identifiers. A study thus
depends only on its own index and patient, never on the order of generation, so a process pool and a
single process write the same bytes.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from radtune.dataprep.phantoms.drawing import draw_phantom
from radtune.dataprep.phantoms.findings import Phantom, sample_phantom, validate_prevalences
from radtune.dataprep.phantoms.layouts import GROUND_TRUTH_FILE, SPLITS, WRITERS, Study
from radtune.dataprep.phantoms.reports import ReportContent, compose_report

PHANTOM_FORMAT_VERSION = "1"
MARKER_FILE = "PHANTOM.json"
LAYOUTS = tuple(WRITERS)
MAX_STUDIES = 1_000_000  # keeps MIMIC-style study ids within 8 digits
JPEG_QUALITY = 92
PNG_COMPRESS_LEVEL = 6

_STUDY, _PATIENT, _WORDING = 0, 1, 2
_STUDIES_PER_PATIENT = (0.4, 0.25, 0.15, 0.1, 0.1)  # 1..5 studies

_RACES = ("White", "Black or African American", "Asian", "Other", "Unknown")
_RACE_P = (0.5, 0.1, 0.2, 0.15, 0.05)
_ETHNICITIES = ("Non-Hispanic/Non-Latino", "Hispanic/Latino", "Unknown")
_INSURANCE = ("Medicare", "Private Insurance", "Medicaid", "Unknown")


def _rng(seed: int, stream: int, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, number])


def study_plan(n: int, seed: int) -> Iterator[tuple[int, int, int]]:
    """`(index, patient, order)` for studies 0..n-1: consecutive studies of a patient, 1 to 5 each."""
    index = patient = 0
    while index < n:
        count = 1 + int(_rng(seed, _PATIENT, patient).choice(len(_STUDIES_PER_PATIENT), p=_STUDIES_PER_PATIENT))
        for order in range(1, count + 1):
            if index == n:
                return
            yield index, patient, order
            index += 1
        patient += 1


def _patient(seed: int, patient: int, layout: str) -> dict:
    rng = _rng(seed, _PATIENT, patient).spawn(1)[0]  # independent of the study count drawn in `study_plan`
    names, weights = zip(*SPLITS[layout], strict=True)
    return {
        "sex": "M" if rng.random() < 0.5 else "F",
        "age": int(rng.integers(20, 90)),
        "subject_id": 10_000_000 + patient * 13 + int(rng.integers(0, 13)),
        "split": str(rng.choice(names, p=weights)),
        "first_day": int(rng.integers(0, 80 * 365)),
        "race": str(rng.choice(_RACES, p=_RACE_P)),
        "ethnicity": str(rng.choice(_ETHNICITIES, p=(0.8, 0.15, 0.05))),
        "interpreter_needed": "Yes" if rng.random() < 0.08 else "No",
        "insurance_type": str(rng.choice(_INSURANCE, p=(0.4, 0.4, 0.15, 0.05))),
        "deceased": "Yes" if rng.random() < 0.1 else "No",
        "bmi": float(rng.uniform(18.0, 36.0)),
    }


def make_ids(rng: np.random.Generator, index: int, order: int, patient: dict) -> dict:
    """Identifiers and metadata in the real datasets' formats (MIMIC ids: 8 digits; dicom_id: 5×8 hex)."""
    dicom_hex = rng.bytes(20).hex()
    day = date(2110, 1, 1) + timedelta(days=patient["first_day"] + (order - 1) * 73 + int(rng.integers(0, 60)))
    hours, minutes, seconds = int(rng.integers(0, 24)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    study_time = float(f"{hours:02d}{minutes:02d}{seconds:02d}.{int(rng.integers(0, 1000)):03d}")
    return {
        "subject_id": patient["subject_id"],
        "study_id": 50_000_000 + index * 17 + int(rng.integers(0, 17)),
        "dicom_id": "-".join(dicom_hex[i : i + 8] for i in range(0, 40, 8)),
        "study_date": day.strftime("%Y%m%d"),
        "study_time": repr(study_time),
        "accession": str(int(rng.integers(1_000_000, 10_000_000))),
        "age": patient["age"] + (order - 1) // 3,
        "sex": patient["sex"],
        "race": patient["race"],
        "ethnicity": patient["ethnicity"],
        "interpreter_needed": patient["interpreter_needed"],
        "insurance_type": patient["insurance_type"],
        "recent_bmi": f"{patient['bmi'] + rng.uniform(-1.0, 1.0):.1f}",
        "deceased": patient["deceased"],
    }


def sample_study(index: int, seed: int, prevalences: dict[str, float]) -> Phantom:
    """The findings of study `index`, without drawing it (the first draws of the study's stream)."""
    return sample_phantom(_rng(seed, _STUDY, index), prevalences)


def draw_study(index: int, seed: int, image_size: int, prevalences: dict[str, float]) -> tuple[Phantom, np.ndarray]:
    """The findings and the uint8 image of study `index`: the same whatever layout or process draws it."""
    rng = _rng(seed, _STUDY, index)
    phantom = sample_phantom(rng, prevalences)
    return phantom, draw_phantom(phantom, image_size, rng)


def describe_study(phantom: Phantom, seed: int, index: int, age: int, sex: str, first_study: bool) -> ReportContent:
    """The report of study `index` (wording drawn from its own stream)."""
    return compose_report(phantom, _rng(seed, _WORDING, index * 2 + 1), age=age, sex=sex, first_study=first_study)


@dataclass(frozen=True)
class _Job:
    layout: str
    image_size: int
    seed: int
    prevalences: tuple[tuple[str, float], ...]


def _encode(pixels: np.ndarray, layout: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels, mode="L")
    if layout == "mimic-cxr":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=False, progressive=False)
    else:
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buffer.getvalue()


def _render(job: _Job, plan_item: tuple[int, int, int]) -> Study:
    index, patient_number, order = plan_item
    phantom, pixels = draw_study(index, job.seed, job.image_size, dict(job.prevalences))
    patient = _patient(job.seed, patient_number, job.layout)
    ids = make_ids(_rng(job.seed, _WORDING, index * 2), index, order, patient)
    report = describe_study(phantom, job.seed, index, ids["age"], patient["sex"], first_study=order == 1)
    return Study(
        index=index,
        patient=patient_number,
        order=order,
        phantom=phantom,
        report=report,
        image=_encode(pixels, job.layout),
        ids=ids,
        split=patient["split"],
    )


def _validate(n, layout, image_size, seed, workers) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_STUDIES:
        raise ValueError(f"n must be an integer between 1 and {MAX_STUDIES:,}, got {n!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 32 <= image_size <= 2048:
        raise ValueError(f"image_size must be an integer between 32 and 2048 pixels, got {image_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer or None (automatic), got {workers!r}")


def _version() -> str:
    from radtune.dataprep import __version__

    return __version__


def generate_phantoms(
    out_dir: str | os.PathLike,
    n: int = 2000,
    layout: str = "mimic-cxr",
    image_size: int = 256,
    seed: int = 0,
    prevalences: dict[str, float] | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write `n` phantom chest radiographs with reports and labels to `out_dir` in a real dataset's layout.

    Args:
        out_dir (`str` or `os.PathLike`):
            Folder to create (or an empty existing one); it becomes the dataset root.
        n (`int`, *optional*, defaults to `2000`):
            Number of studies (one frontal image each). Patients have 1 to 5 consecutive studies.
        layout (`str`, *optional*, defaults to `"mimic-cxr"`):
            `"mimic-cxr"`, `"chexpert-plus"` or `"nih"`: the on-disk layout of that dataset's download.
        image_size (`int`, *optional*, defaults to `256`):
            Width and height of the square images, 32 to 2048 pixels.
        seed (`int`, *optional*, defaults to `0`):
            Same seed and arguments give byte-identical output.
        prevalences (`dict[str, float]`, *optional*):
            Overrides of `DEFAULT_PREVALENCES` (keys `cardiomegaly`, `pleural_effusion`, `pneumothorax`,
            `nodule`, `mass`, `consolidation`, `support_devices`).
        workers (`int`, *optional*):
            Processes drawing images; default: all CPU cores (at most 8) for `n >= 64`, else 1.
        progress (`bool`, *optional*, defaults to `False`):
            Show a tqdm progress bar.

    Returns:
        `Path`: the dataset root, holding `PHANTOM.json` (source `phantom`, licence CC0-1.0, never
        credentialed) and `phantom_findings.jsonl` (the drawn ground truth, one line per image).
    """
    _validate(n, layout, image_size, seed, workers)
    prevalences = validate_prevalences(prevalences)
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty folder; choose a new OUT_DIR")
    root.mkdir(parents=True, exist_ok=True)
    marker = {
        "generator": "radtune.dataprep.phantoms",
        "generator_version": PHANTOM_FORMAT_VERSION,
        "radtune_dataprep_version": _version(),
        "source": "phantom",
        "license": "CC0-1.0",
        "credentialed": False,
        "layout": layout,
        "seed": seed,
        "arguments": {"n": n, "layout": layout, "image_size": image_size, "seed": seed, "prevalences": prevalences},
        "ground_truth": GROUND_TRUTH_FILE,
    }
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    from tqdm.auto import tqdm

    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if n >= 64 else 1
    render = partial(_render, _Job(layout, image_size, seed, tuple(sorted(prevalences.items()))))
    writer = WRITERS[layout](root, image_size)
    pool = None
    try:
        if workers > 1:
            import multiprocessing

            pool = multiprocessing.get_context("spawn").Pool(workers)
            studies = pool.imap(render, study_plan(n, seed), chunksize=8)
        else:
            studies = map(render, study_plan(n, seed))
        for study in tqdm(studies, total=n, unit="image", desc=f"phantoms ({layout})", disable=not progress):
            writer.write(study)
    finally:
        writer.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return root


def iter_phantoms(
    n: int, seed: int = 0, image_size: int = 256, prevalences: dict[str, float] | None = None, start: int = 0
) -> Iterator[tuple[Phantom, np.ndarray]]:
    """`(phantom, uint8 image)` for studies `start .. start+n-1`, exactly as `generate_phantoms` draws them."""
    prevalences = validate_prevalences(prevalences)
    for index in range(start, start + n):
        yield draw_study(index, seed, image_size, prevalences)
