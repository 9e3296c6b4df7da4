"""The one VQA scorer (`radtune.common.vqa_evaluation`): items from both row formats, the majority baseline, the
ablation verdict and the files, checked against values worked out by hand."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset
from PIL import Image

from radtune.common.metrics.io import read_results
from radtune.common.vqa_evaluation import VQAItem, majority_answers, score_vqa, vqa_items

IMAGE = Image.new("L", (8, 8))


def _item(number: int, question: str, answer: str, answer_type: str = "closed", **fields) -> VQAItem:
    return VQAItem(str(number), IMAGE, question, answer, answer_type, **fields)


def test_vqa_items_reads_question_answer_rows_and_message_turns():
    qa = Dataset.from_list([{"qa_id": "q1", "id": "img1", "image": IMAGE, "question": "Is there an effusion?",
                             "answer": "No.", "answer_type": "CLOSED", "category": "effusion"}])  # fmt: skip
    [item] = vqa_items(qa)
    assert (item.id, item.image_id, item.answer_type, item.category) == ("q1", "img1", "closed", "effusion")
    user = lambda text: {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": text}]}  # noqa: E731
    bot = lambda text: {"role": "assistant", "content": [{"type": "text", "text": text}]}  # noqa: E731
    chat = Dataset.from_list([{"id": "img2", "images": [IMAGE], "answer_type": ["closed", "open"],
                               "messages": [user("Is the heart enlarged?"), bot("Yes."),
                                            user("Which side?"), bot("Left.")]}])  # fmt: skip
    items = vqa_items(chat)
    assert [(i.id, i.question, i.answer, i.answer_type) for i in items] == [
        ("img2-0", "Is the heart enlarged?", "Yes.", "closed"), ("img2-1", "Which side?", "Left.", "open")]


def test_vqa_items_without_an_image_names_the_row():
    with pytest.raises(ValueError, match="row q9 has no image"):
        vqa_items(Dataset.from_list([{"qa_id": "q9", "question": "Q?", "answer": "A", "image": None}]))


def test_score_vqa_metrics_baseline_ablation_and_files(tmp_path):
    items = [_item(i, "Is there an effusion?", answer) for i, answer in enumerate(["Yes", "No", "Yes", "No"])]
    predictions = ["Yes", "No", "Yes", "Yes"]  # 3 of 4 right
    train = [_item(10, "Is there an effusion?", "No"), _item(11, "Is there an effusion?", "No")]
    ablated = {"blank": ["No"] * 4, "noise": ["Yes"] * 4}  # 2 of 4 each
    report = score_vqa(items, predictions, train_items=train, ablated=ablated, n_resamples=200)
    assert report.metrics["strict/closed_accuracy"] == pytest.approx(0.75)
    assert report.metrics["majority_baseline/strict/closed_accuracy"] == pytest.approx(0.5)  # always "No"
    assert report.metrics["ablation/blank/strict/closed_accuracy"] == pytest.approx(0.5)
    assert report.metrics["ablation/gap"] == pytest.approx(0.25)
    low, high = report.ci["strict/closed_accuracy"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    assert report.meta["image_ablation"]["metric"] == "strict/closed_accuracy"

    written = report.write(tmp_path / "eval", model="m", dataset="d", split="test", seed=0)
    assert written["metrics"]["strict/closed_accuracy"] == pytest.approx(0.75)
    assert written["meta"]["split"] == "test" and written["meta"]["n"] == 4
    rows = read_results(tmp_path / "eval" / "evaluation_results.csv")
    assert [row["prediction"] for row in rows] == predictions
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["ci"]["strict/closed_accuracy"] == [low, high]


def test_score_vqa_rejects_a_prediction_count_mismatch_and_no_items():
    with pytest.raises(ValueError, match="2 predictions for 1 questions"):
        score_vqa([_item(1, "Q?", "Yes")], ["Yes", "No"])
    with pytest.raises(ValueError, match="no question/answer items"):
        score_vqa([], [])


def test_eval_vqa_scores_prediction_files_through_the_same_scorer_with_intervals(tmp_path):
    from click.testing import CliRunner

    from radtune.common.eval_cli import eval_group

    rows = [{"id": f"q{i}", "question": "Is there an effusion?", "prediction": prediction, "answer": answer,
             "answer_type": "closed", "category": "effusion"}
            for i, (prediction, answer) in enumerate([("Yes", "Yes"), ("No", "Yes"), ("No", "No"), ("No", "No")])]  # fmt: skip
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    result = CliRunner().invoke(eval_group, ["vqa", str(path), "--out", str(tmp_path / "metrics.json"),
                                             "--n-resamples", "200"])  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "metrics.json").read_text())
    expected = score_vqa([_item(i, r["question"], r["answer"]) for i, r in enumerate(rows)],
                         [r["prediction"] for r in rows], n_resamples=200)  # fmt: skip
    assert body["metrics"]["strict/closed_accuracy"] == pytest.approx(0.75)
    assert body["ci"]["strict/closed_accuracy"] == pytest.approx(expected.ci["strict/closed_accuracy"])
    assert "strict/closed_accuracy" in result.output and "[" in result.output


def test_item_scores_average_to_the_metrics():
    # The bootstrap intervals rest on these per-item scores.
    from radtune.common.metrics.vqa import vqa_metrics
    from radtune.common.vqa_evaluation import item_scores

    items = [VQAItem(str(i), None, "q", answer, kind) for i, (answer, kind) in enumerate(
        [("Yes.", "closed"), ("No.", "closed"), ("yes", "closed"), ("left lower lobe", "open"),
         ("small effusion", "open"), ("two", "open")])]  # fmt: skip
    predictions = ["yes", "Yes, there is.", "no", "the left lobe", "none", "2"]
    metrics = vqa_metrics(predictions, [i.answer for i in items], [i.answer_type for i in items])
    for name, values in item_scores(predictions, items).items():
        assert sum(values) / len(values) == pytest.approx(metrics[name]), name


def test_majority_baseline_answers_by_question_then_type():
    def item(question, answer, kind="closed"):
        return VQAItem("i", None, question, answer, kind)

    train = [item("Is there a nodule?", "No.")] * 3 + [item("Is there a nodule?", "Yes.")] * 2
    train += [item("Is the heart enlarged?", "Yes.")] * 4 + [item("What are the main findings?", "Normal.", "open")]
    test = [item("is there a nodule? ", "Yes."), item("Is there a mass?", "No."), item("Describe it.", "x", "open")]
    # Same question → its own majority; unseen closed question → closed majority ("Yes.": 6 vs 3); open → open's.
    assert majority_answers(train, test) == ["No.", "Yes.", "Normal."]
    tie = [item("q", "b"), item("q", "a")]
    assert majority_answers(tie, [item("q", "?")]) == majority_answers(tie[::-1], [item("q", "?")]) == ["a"]
