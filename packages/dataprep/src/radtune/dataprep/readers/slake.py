"""SLAKE as downloaded: `train.json`, `validate.json` (or `validation.json`), `test.json` and `imgs/xmlabN/`.

Each JSON file is a list of questions with `img_name` (`xmlab102/source.jpg`, relative to `imgs/`), `question`,
`answer`, `q_lang` (`en` or `zh`) and `answer_type`. English only by default (`languages="en,zh"` for both).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..records import Reader, SourceLayoutError, clean_text, json_objects, read_json, vqa_answer_type

SPLIT_FILES = {"train": ("train.json",), "validation": ("validate.json", "validation.json"), "test": ("test.json",)}
REQUIRED = ("img_name", "question", "answer")


def read(root: str | Path, languages: str = "en") -> Iterator[dict]:
    """Yield SLAKE records.

    Args:
        root (`str` or `Path`): the folder holding `train.json` and `imgs/`.
        languages (`str`, *optional*, defaults to `"en"`): comma-separated `q_lang` values to keep.
    """
    root = Path(root)
    keep = {lang.strip() for lang in languages.split(",") if lang.strip()}
    found = False
    for split, names in SPLIT_FILES.items():
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            continue
        found = True
        for _, item in json_objects(read_json(path), path, REQUIRED):
            if item.get("q_lang", "en") not in keep:
                continue
            answer = clean_text(item["answer"])
            answer_type, answer_type_source = vqa_answer_type(answer, item.get("answer_type"))
            yield {
                "image": str(root / "imgs" / item["img_name"]),
                "id": str(item.get("qid", "")) or None,
                "question": clean_text(item["question"]),
                "answer": answer,
                "answer_type": answer_type,
                "answer_type_source": answer_type_source,
                "study_id": str(item.get("img_id", "")) or None,
                "split": split,
            }
    if not found:
        raise SourceLayoutError(f"{root}: none of train.json, validate.json, validation.json, test.json")


READER = Reader("slake", read, required_text=("question", "answer"), dedupe_on=("question", "answer"))
