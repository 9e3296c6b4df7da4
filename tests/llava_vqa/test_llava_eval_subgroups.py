"""evaluate_vqa carries the subgroup fields into evaluation_results.csv and writes `subgroups` into metrics.json.

The model's answers are fixed (generate_answers is replaced), so the expected numbers are known by hand; the
generation itself is covered by test_llava_train.py.
"""

from __future__ import annotations

import pytest
from PIL import Image

# (image id, category, view, answer, answer_type, the fixed prediction)
ITEMS = [
    ("img0", "presence", "PA", "Yes.", "closed", "Yes."),
    ("img0", "presence", "PA", "No.", "closed", "Yes."),
    ("img0", "location", "PA", "Left.", "open", "Left."),
    ("img1", "presence", "AP", "No.", "closed", "No."),
    ("img1", "device", "AP", "Yes.", "closed", "No."),
    ("img1", "severity", "AP", "Mild.", "open", "Severe."),
]


@pytest.fixture
def qa_split():
    from datasets import Dataset

    rows = []
    for number, (image_id, category, view, answer, kind, _) in enumerate(ITEMS):
        rows.append({"id": image_id, "qa_id": f"{image_id}-{number}", "images": [Image.new("RGB", (8, 8))],
                     "question": f"question {number}?", "answer": answer, "answer_type": kind,
                     "category": category, "view": view})  # fmt: skip
    return Dataset.from_list(rows)


def test_evaluate_vqa_writes_subgroups_and_the_fields(qa_split, tmp_path, monkeypatch):
    from radtune.common.metrics.io import read_metrics, read_results
    from radtune.llava_vqa import inference
    from radtune.llava_vqa.evaluation import evaluate_vqa

    def fixed_answers(model, processor, images, questions, **kwargs):
        return [ITEMS[int(q.split()[1].rstrip("?"))][5] for q in questions]

    monkeypatch.setattr(inference, "generate_answers", fixed_answers)
    report = evaluate_vqa(None, None, qa_split, tmp_path, ablation=False, n_resamples=100, progress=False)

    rows = read_results(tmp_path)  # ids are the questions' (qa_id), so no duplicate id per image
    assert [r["id"] for r in rows] == [f"{item[0]}-{n}" for n, item in enumerate(ITEMS)]
    assert [(r["image_id"], r["category"], r["view"]) for r in rows] == [item[:3] for item in ITEMS]

    subgroups = read_metrics(tmp_path)["subgroups"]
    assert subgroups == report["subgroups"]
    closed = subgroups["strict/closed_accuracy"]
    assert {v: (g["n"], g["metric"]) for v, g in closed["category"].items()} == {"presence": (3, 2 / 3),
                                                                                  "device": (1, 0.0)}  # fmt: skip
    assert {v: (g["n"], g["metric"]) for v, g in closed["view"].items()} == {"PA": (2, 0.5), "AP": (2, 0.5)}
    accuracy = subgroups["strict/accuracy"]["answer_type"]
    assert {v: (g["n"], g["metric"]) for v, g in accuracy.items()} == {"closed": (4, 0.5), "open": (2, 0.5)}
    assert "modality" not in closed and "answer_type" not in closed


def test_multi_turn_rows_keep_each_turns_category():
    from datasets import Dataset

    from radtune.common.vqa_evaluation import vqa_items

    def turn(role, text):
        return {"role": role, "content": [{"type": "text", "text": text}]}

    row = {"id": "img7", "qa_id": "img7", "images": [Image.new("RGB", (8, 8))], "view": "AP",
           "messages": [turn("user", "Is there an effusion?"), turn("assistant", "Yes."),
                        turn("user", "Which side?"), turn("assistant", "Left.")],
           "answer_type": ["closed", "open"], "category": ["presence", "location"]}  # fmt: skip
    items = vqa_items(Dataset.from_list([row]))
    assert [(i.id, i.image_id, i.answer_type, i.category, i.view) for i in items] == [
        ("img7-0", "img7", "closed", "presence", "AP"), ("img7-1", "img7", "open", "location", "AP")
    ]  # fmt: skip
