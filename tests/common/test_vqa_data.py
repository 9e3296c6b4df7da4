"""Rows of a VQA build become TRL conversations on the fly: one question a conversation, or one image a conversation."""

from __future__ import annotations

import pytest
from datasets import Dataset, Features, Image, Value
from PIL import Image as PILImage

from radtune.common.vqa_data import qa_conversations
from radtune.common.vqa_evaluation import vqa_items


def _built_split(tmp_path):
    """Rows as `radtune data build vqa-rad` writes them: two images, three questions, saved and loaded back."""
    images = [PILImage.new("L", (8, 8), color) for color in (0, 255, 0)]
    rows = {
        "image": images,
        "id": ["1", "2", "3"],
        "question": ["Is there a pneumothorax?", "How many nodules?", "Is this an MRI?"],
        "answer": ["no", "2", "yes"],
        "answer_type": ["closed", "open", "closed"],
        "study_id": ["synpic1", "synpic2", "synpic1"],
    }
    features = Features({"image": Image(), **{name: Value("string") for name in rows if name != "image"}})
    Dataset.from_dict(rows, features=features).save_to_disk(tmp_path / "built")
    return Dataset.load_from_disk(tmp_path / "built")


def _user(question, image):
    return {"role": "user", "content": ([{"type": "image", "text": None}] if image else [])
            + [{"type": "text", "text": question}]}  # fmt: skip


def _assistant(answer):
    return {"role": "assistant", "content": [{"type": "text", "text": answer}]}


def test_single_gives_one_conversation_per_row_and_keeps_every_column(tmp_path):
    split = _built_split(tmp_path)
    converted = qa_conversations(split)
    assert len(converted) == 3
    assert converted.column_names == [*split.column_names, "messages"]
    assert converted[1]["messages"] == [_user("How many nodules?", True), _assistant("2")]
    assert converted[2]["answer_type"] == "closed" and converted[2]["id"] == "3"
    # nothing was written beside the loaded dataset
    assert sorted(path.name for path in (tmp_path / "built").iterdir()) == sorted(
        ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]
    )


def test_multi_groups_an_images_questions_in_row_order(tmp_path):
    converted = qa_conversations(_built_split(tmp_path), conversation="multi")
    assert len(converted) == 2
    first = converted[0]
    assert first["qa_id"] == "synpic1" and first["study_id"] == "synpic1"
    assert first["messages"] == [_user("Is there a pneumothorax?", True), _assistant("no"),
                                 _user("Is this an MRI?", False), _assistant("yes")]  # fmt: skip
    assert first["answer_type"] == ["closed", "closed"] and first["question"][1] == "Is this an MRI?"
    assert "id" not in converted.column_names  # differs between an image's questions
    # the evaluator reads the same three questions from either form
    items = vqa_items(converted)
    assert sorted((item.question, item.answer, item.answer_type) for item in items) == [
        ("How many nodules?", "2", "open"), ("Is there a pneumothorax?", "no", "closed"),
        ("Is this an MRI?", "yes", "closed"),
    ]  # fmt: skip


def test_an_export_passes_unchanged_and_other_rows_fail_in_a_line(tmp_path):
    export = Dataset.from_dict({"messages": [[_user("Q?", True), _assistant("A")]], "question": ["Q?"]})
    assert qa_conversations(export, conversation="multi") is export
    captions = Dataset.from_dict({"image": [None], "text": ["a caption"]})
    with pytest.raises(ValueError, match="neither a 'messages' column .* nor 'question' and 'answer'.*it has: image"):
        qa_conversations(captions)
    with pytest.raises(ValueError, match="conversation must be one of single, multi"):
        qa_conversations(export, conversation="grouped")
