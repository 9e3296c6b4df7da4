"""PathVQA as downloaded: `pvqa/images/{train,val,test}/<img_id>.jpg` and `pvqa/qas/{split}/{split}_qa.pkl`.

Each pickle holds a list of dicts with `image` (the image id), `question` and `answer`. The pickles are read
with an unpickler that refuses every class, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

from ..records import Reader, SourceLayoutError, clean_text, json_objects, vqa_answer_type

SPLITS = {"train": "train", "val": "validation", "test": "test"}
REQUIRED = ("image", "question", "answer")


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: PathVQA pickles hold only plain data")


def load_pickle(path: Path):
    with open(path, "rb") as handle:
        return _PlainUnpickler(handle).load()


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    base = root / "pvqa" if (root / "pvqa").is_dir() else root
    found = False
    for prefix, split in SPLITS.items():
        path = base / "qas" / prefix / f"{prefix}_qa.pkl"
        if not path.is_file():
            continue
        found = True
        for number, item in json_objects(load_pickle(path), path, REQUIRED):
            answer = clean_text(item["answer"])
            image_id = clean_text(item["image"])
            yield {
                "image": str(base / "images" / prefix / f"{image_id}.jpg"),
                "id": f"{prefix}_{number}",
                "question": clean_text(item["question"]),
                "answer": answer,
                "answer_type": vqa_answer_type(answer)[0],
                "answer_type_source": "derived",
                "study_id": image_id or None,
                "split": split,
            }
    if not found:
        raise SourceLayoutError(f"{root}: no pvqa/qas/<split>/<split>_qa.pkl")


READER = Reader("pathvqa", read, required_text=("question", "answer"), dedupe_on=("question", "answer"))
