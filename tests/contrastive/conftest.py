"""A small generated image–report dataset in the layout `radtune data build` writes (save_to_disk)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

FINDINGS = ("Cardiomegaly", "Effusion", "Pneumothorax")
SENTENCES = {
    "Cardiomegaly": ("The heart is enlarged.", "Heart size is normal."),
    "Effusion": ("There is a right pleural effusion.", "No pleural effusion."),
    "Pneumothorax": ("There is a left pneumothorax.", "No pneumothorax."),
}


def _image(rng: np.random.Generator, labels: list[str]) -> Image.Image:
    pixels = rng.integers(0, 40, (48, 48), dtype=np.uint8)
    if "Cardiomegaly" in labels:
        pixels[20:40, 12:36] = 200
    if "Effusion" in labels:
        pixels[36:, :16] = 230
    if "Pneumothorax" in labels:
        pixels[:16, 32:] = 255
    return Image.fromarray(pixels, mode="L")


def make_rows(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    rows = {"id": [], "image": [], "text": [], "findings": [], "impression": [], "labels": [], "patient_id": []}
    for i in range(n):
        labels = [name for name in FINDINGS if rng.random() < 0.4]
        findings = " ".join(SENTENCES[name][0 if name in labels else 1] for name in FINDINGS)
        impression = ", ".join(labels) if labels else "No acute cardiopulmonary process."
        rows["id"].append(f"s{seed}-{i:03d}")
        rows["image"].append(_image(rng, labels))
        rows["findings"].append(findings)
        rows["impression"].append(impression if i % 5 else "")  # some empty impressions
        rows["text"].append(f"FINDINGS: {findings} IMPRESSION: {impression}")
        # A label of the dataset that the test split never has: zero-shot scores it as undefined, not as a typo.
        rows["labels"].append((labels or ["No Finding"]) + (["Hernia"] if (seed, i) == (0, 0) else []))
        rows["patient_id"].append(f"p{i:03d}")
    return rows


@pytest.fixture(scope="session")
def pair_dataset(tmp_path_factory):
    """Folder of a `DatasetDict` (train 24 rows, test 12 rows) with an Image column and report texts."""
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    from datasets import Image as ImageFeature

    features = Features({"id": Value("string"), "image": ImageFeature(), "text": Value("string"),
                         "findings": Value("string"), "impression": Value("string"),
                         "labels": Sequence(Value("string")), "patient_id": Value("string")})  # fmt: skip
    folder = tmp_path_factory.mktemp("pairs") / "dataset"
    DatasetDict({
        "train": Dataset.from_dict(make_rows(24, 0), features=features),
        "test": Dataset.from_dict(make_rows(12, 1), features=features),
    }).save_to_disk(str(folder))  # fmt: skip
    return folder
