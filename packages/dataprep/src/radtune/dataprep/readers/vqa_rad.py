"""VQA-RAD as downloaded from OSF: `VQA_RAD Dataset Public.json` and `VQA_RAD Image Folder/`.

Missing fields are the string `"NULL"` and some answers are ints; both are normalised. The test split is the
questions whose `phrase_type` is `test_freeform` or `test_para`; the rest is train. An item that is not an object
and a `qid` used twice are errors naming the items: which of two questions is meant by an id cannot be guessed,
and no test question may be dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import (
    Reader,
    SourceFileError,
    SourceLayoutError,
    clean_text,
    json_objects,
    read_json,
    vqa_answer_type,
)

TEST_PHRASE_TYPES = ("test_freeform", "test_para")
REQUIRED = ("image_name", "question", "answer")


def read(root: str | Path) -> Iterator[dict]:
    root = Path(root)
    candidates = [root / "VQA_RAD Dataset Public.json"] + sorted(root.glob("*.json"))
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise SourceLayoutError(f"{root}: no 'VQA_RAD Dataset Public.json'")
    images = root / "VQA_RAD Image Folder"
    if not images.is_dir():
        images = next((p for p in root.iterdir() if p.is_dir() and "image" in p.name.lower()), images)
    first_item: dict[str, int] = {}
    for number, item in json_objects(read_json(path), path, REQUIRED):
        qid = clean_text(item.get("qid"))
        if qid and first_item.setdefault(qid, number) != number:
            raise SourceFileError(
                f"{path}: qid {qid} is used by items {first_item[qid]} and {number}; give each question its own qid"
            )
        phrase_type = clean_text(item.get("phrase_type")).lower()
        answer = clean_text(item["answer"])
        answer_type, answer_type_source = vqa_answer_type(answer, item.get("answer_type"))
        yield {
            "image": str(images / clean_text(item["image_name"])),
            "id": qid or str(number),
            "question": clean_text(item["question"]),
            "answer": answer,
            "answer_type": answer_type,
            "answer_type_source": answer_type_source,
            "study_id": Path(clean_text(item["image_name"])).stem or None,
            "split": "test" if phrase_type in TEST_PHRASE_TYPES else "train",
        }


READER = Reader("vqa-rad", read, required_text=("question", "answer"), dedupe_on=("question", "answer"))
