"""A QA dataset in radtune's export format whose answers depend on the image, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw


def _image(has_finding: bool, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = (rng.normal(60, 10, (32, 32))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").convert("RGB")
    if has_finding:
        ImageDraw.Draw(image).ellipse((8, 8, 24, 24), fill=(240, 240, 240))
    return image


def _row(index: int, has_finding: bool) -> dict:
    question = "Is there a nodule?"
    answer = "Yes." if has_finding else "No."
    return {
        "id": f"q{index}",
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": [_image(has_finding, index)],
        "question": question,
        "answer": answer,
        "answer_type": "closed",
    }


@pytest.fixture(scope="session")
def qa_dataset_dir(tmp_path_factory):
    from datasets import Dataset, DatasetDict

    rows = [_row(i, i % 2 == 0) for i in range(24)]
    data = DatasetDict({"train": Dataset.from_list(rows[:16]), "test": Dataset.from_list(rows[16:])})
    folder = tmp_path_factory.mktemp("qa") / "phantom-qa"
    data.save_to_disk(folder)
    return folder
