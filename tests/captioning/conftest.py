"""Small generated captioning and VQA datasets, saved with `save_to_disk` like `radtune data build` output."""

from __future__ import annotations

import pytest
from captioning_data import caption_rows, make_image


@pytest.fixture(scope="session")
def caption_dataset(tmp_path_factory):
    """A `DatasetDict` folder with train (16), validation (4) and test (4) rows of chest X-ray-like reports."""
    from datasets import Dataset, DatasetDict, Features, Image, Value

    features = Features({"id": Value("string"), "image": Image(), "text": Value("string"),
                         "findings": Value("string"), "impression": Value("string")})  # fmt: skip
    splits = {"train": (16, 0), "validation": (4, 100), "test": (4, 200)}
    data = DatasetDict(
        {name: Dataset.from_dict(caption_rows(n, offset), features=features) for name, (n, offset) in splits.items()}
    )
    path = tmp_path_factory.mktemp("caption-data") / "dataset"
    data.save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def vqa_dataset(tmp_path_factory):
    """A QA-export-like `DatasetDict` (image, question, answer, answer_type) with train and test splits."""
    from datasets import Dataset, DatasetDict, Features, Image, Value

    questions = [("Is there a pleural effusion?", "yes", "CLOSED"), ("Is the heart enlarged?", "no", "CLOSED"),
                 ("What organ is shown?", "chest", "OPEN"), ("Where is the consolidation?", "right lower lobe", "OPEN")]  # fmt: skip

    def rows(n: int, offset: int) -> dict:
        out = {"id": [], "image": [], "question": [], "answer": [], "answer_type": []}
        for i in range(offset, offset + n):
            question, answer, answer_type = questions[i % len(questions)]
            out["id"].append(f"q{i}")
            out["image"].append(make_image(i))
            out["question"].append(question)
            out["answer"].append(answer)
            out["answer_type"].append(answer_type)
        return out

    features = Features({"id": Value("string"), "image": Image(), "question": Value("string"),
                         "answer": Value("string"), "answer_type": Value("string")})  # fmt: skip
    data = DatasetDict({"train": Dataset.from_dict(rows(12, 0), features=features),
                        "test": Dataset.from_dict(rows(4, 100), features=features)})  # fmt: skip
    path = tmp_path_factory.mktemp("vqa-data") / "dataset"
    data.save_to_disk(str(path))
    return path
