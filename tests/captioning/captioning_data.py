"""Generated rows for the captioning tests: chest X-ray-like images and short reports."""

from __future__ import annotations

FINDINGS = [
    "The lungs are clear. No pleural effusion or pneumothorax.",
    "Small left pleural effusion with basal atelectasis.",
    "Moderate cardiomegaly. Mild pulmonary edema.",
    "Right lower lobe consolidation concerning for pneumonia.",
]
IMPRESSIONS = [
    "No acute cardiopulmonary process.",
    "Small left effusion.",
    "Cardiomegaly with mild edema.",
    "Right lower lobe pneumonia.",
]


def make_image(index: int, size: int = 40):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(index)
    array = rng.integers(0, 255, (size, size), dtype=np.uint8)
    array[:, : size // (1 + index % 4)] //= 2  # a visible, label-dependent pattern
    return Image.fromarray(array, mode="L")


def caption_rows(n: int, offset: int = 0) -> dict:
    rows = {"id": [], "image": [], "text": [], "findings": [], "impression": []}
    for i in range(offset, offset + n):
        kind = i % len(FINDINGS)
        rows["id"].append(f"study-{i:04d}")
        rows["image"].append(make_image(kind + 10 * i))
        rows["findings"].append(FINDINGS[kind])
        rows["impression"].append(IMPRESSIONS[kind])
        rows["text"].append(f"FINDINGS: {FINDINGS[kind]} IMPRESSION: {IMPRESSIONS[kind]}")
    return rows
