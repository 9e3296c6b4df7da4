"""Per-subgroup scores: values against a hand count, fields the rows lack left out, the VQA wiring and files."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.metrics.io import read_metrics, write_metrics
from radtune.common.metrics.subgroups import (
    caption_subgroups,
    group_value,
    modality_of,
    subgroup_metrics,
    subgroup_table,
    vqa_subgroups,
)
from radtune.common.metrics.vqa import vqa_metrics

# (category, view, prediction, answer, answer_type); "" = the row does not say.
ROWS = [
    ("presence", "PA", "Yes.", "Yes.", "closed"),
    ("presence", "PA", "No.", "Yes.", "closed"),
    ("presence", "AP", "No.", "No.", "closed"),
    ("presence", "", "Yes.", "No.", "closed"),
    ("device", "AP", "Yes.", "Yes.", "closed"),
    ("device", "LATERAL", "No.", "Yes.", "closed"),
    ("location", "PA", "Left.", "Left.", "open"),
    ("location", "LL", "Right.", "Left.", "open"),
    ("severity", "", "Mild.", "Mild.", "open"),
    ("", "PA", "Small.", "Small.", "open"),
]


def _rows():
    return [
        {"id": str(i), "category": c, "view": v, "prediction": p, "answer": a, "answer_type": t, "references": [a]}
        for i, (c, v, p, a, t) in enumerate(ROWS)
    ]


def _hit(row):
    return float(row["prediction"] == row["answer"])


def _expected(rows, key):
    """Hand computation: the mean hit of the rows of each value of `key`, rows without a value left out."""
    groups = {}
    for row in rows:
        if row[key]:
            groups.setdefault(row[key], []).append(_hit(row))
    return {value: (len(hits), sum(hits) / len(hits)) for value, hits in groups.items()}


def test_group_values_match_a_hand_count():
    rows = _rows()
    result = subgroup_metrics(rows, _hit, n_resamples=200)
    assert set(result) == {"answer_type", "category", "view"}  # no row has a modality: no such field
    got = {value: (g["n"], g["metric"]) for value, g in result["category"].items()}
    assert got == _expected(rows, "category")
    assert got["presence"] == (4, 0.5)  # and the hand count itself: 2 of the 4 presence questions
    views = {value: (g["n"], g["metric"]) for value, g in result["view"].items()}
    # LATERAL and LL are both lateral views.
    assert views == {"PA": (4, 0.75), "AP": (2, 1.0), "lateral": (2, 0.0)}
    kinds = {value: (g["n"], g["metric"]) for value, g in result["answer_type"].items()}
    assert kinds == _expected(rows, "answer_type")
    for field in result.values():
        for group in field.values():
            low, high = group["ci"]
            if group["n"] == 1:
                assert math.isnan(low) and math.isnan(high)
            else:
                assert low <= group["metric"] <= high


def test_rows_the_scorer_skips_and_fields_without_values_are_left_out():
    rows = [{**row, "view": ""} for row in _rows()]
    result = subgroup_metrics(rows, lambda row: _hit(row) if row["answer_type"] == "closed" else None,
                              fields=("category", "view"), n_resamples=100)  # fmt: skip
    assert set(result) == {"category"}
    assert set(result["category"]) == {"presence", "device"}  # only closed rows are scored
    assert subgroup_metrics(rows, lambda row: None) == {}


def test_modality_from_a_column_or_rocov2_concepts():
    assert modality_of({"modality": "X-Ray"}) == "X-ray"
    assert modality_of({"modality": "Fundus photography"}) == "Fundus photography"
    assert modality_of({"concepts": ["C0817096", "C0040405"]}) == "CT"
    assert modality_of({"labels": ["Chest", "Magnetic Resonance Imaging"]}) == "MRI"
    assert modality_of({"concepts": ["C0040405", "C0024485"]}) == "multiple"
    assert modality_of({"labels": {"Edema": 1.0}}) is None and modality_of({"concepts": ["C0817096"]}) is None
    assert group_value({"answer_type": "CLOSED"}, "answer_type") == "closed"
    with pytest.raises(ValueError, match="unknown subgroup field"):
        group_value({"organ": "lung"}, "organ")
    rows = [{"id": str(i), "labels": labels} for i, labels in
            enumerate([["X-Ray Computed Tomography"], ["X-Ray Computed Tomography"], ["Plain x-ray"], ["Chest"]])]  # fmt: skip
    scores = {"0": 1.0, "1": 0.0, "2": 1.0, "3": 1.0}
    result = subgroup_metrics(rows, lambda row: scores[row["id"]], n_resamples=100)
    assert list(result) == ["modality"]  # the "Chest" row has no modality concept: left out
    groups = {value: (g["n"], g["metric"]) for value, g in result["modality"].items()}
    assert groups == {"CT": (2, 0.5), "X-ray": (1, 1.0)}


def test_vqa_subgroups_agree_with_vqa_metrics_on_each_group():
    rows = _rows()
    result = vqa_subgroups(rows, n_resamples=100)
    assert set(result) == {"strict/accuracy", "strict/closed_accuracy", "strict/open_recall"}
    assert "answer_type" in result["strict/accuracy"] and "answer_type" not in result["strict/closed_accuracy"]
    for category in ("presence", "device", "location"):
        members = [r for r in rows if r["category"] == category]
        expected = vqa_metrics([r["prediction"] for r in members], [r["answer"] for r in members],
                               [r["answer_type"] for r in members])  # fmt: skip
        assert result["strict/accuracy"]["category"][category]["metric"] == pytest.approx(expected["strict/accuracy"])
        name = "strict/closed_accuracy" if members[0]["answer_type"] == "closed" else "strict/open_recall"
        assert result[name]["category"][category]["metric"] == pytest.approx(expected[name])
    table = subgroup_table(result)
    assert "strict/closed_accuracy by subgroup" in table and "view=lateral" in table


def test_subgroups_round_trip_through_metrics_json(tmp_path):
    subgroups = vqa_subgroups(_rows(), n_resamples=100)
    write_metrics(tmp_path, {"strict/accuracy": 0.5}, task="vqa", subgroups=subgroups)
    raw = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert raw["subgroups"]["strict/accuracy"]["category"]["severity"]["ci"] == [None, None]  # one item: no interval
    back = read_metrics(tmp_path)["subgroups"]
    assert back["strict/accuracy"]["view"]["PA"] == subgroups["strict/accuracy"]["view"]["PA"]
    assert back["strict/accuracy"]["view"]["PA"]["n"] == 4 and back["strict/accuracy"]["view"]["PA"]["metric"] == 0.75
    assert math.isnan(back["strict/accuracy"]["category"]["severity"]["ci"][0])
    assert "subgroups" not in read_metrics(write_metrics(tmp_path / "plain", {"x": 1.0}, task="vqa"))


def test_eval_vqa_reports_subgroups_when_rows_carry_the_fields(tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(row) + "\n" for row in _rows()), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "vqa", str(answers), "--out", str(tmp_path / "metrics.json")])
    assert result.exit_code == 0, result.output
    assert "strict/accuracy by subgroup" in result.output and "category=presence" in result.output
    subgroups = read_metrics(tmp_path / "metrics.json")["subgroups"]
    assert subgroups["strict/closed_accuracy"]["category"]["presence"]["metric"] == 0.5
    assert set(subgroups["strict/closed_accuracy"]) == {"category", "view"}

    bare = [{k: v for k, v in row.items() if k not in ("category", "view")} for row in _rows()]
    answers.write_text("".join(json.dumps(row) + "\n" for row in bare), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "vqa", str(answers), "--out", str(tmp_path / "bare.json")])
    assert result.exit_code == 0, result.output
    # Only the answer type is known: the closed-only and open-only metrics have no subgroup at all.
    subgroups = read_metrics(tmp_path / "bare.json")["subgroups"]
    assert list(subgroups) == ["strict/accuracy"] and list(subgroups["strict/accuracy"]) == ["answer_type"]
    kinds = subgroups["strict/accuracy"]["answer_type"]
    assert {value: (g["n"], g["metric"]) for value, g in kinds.items()} == {"closed": (6, 0.5), "open": (4, 0.75)}


def test_caption_subgroups_split_the_corpus_item_scores_by_modality():
    from radtune.common.metrics.captioning import caption_item_scores

    rows = [
        {"id": "0", "prediction": "axial ct of the chest", "references": ["axial ct of the chest"], "modality": "CT"},
        {"id": "1", "prediction": "a mass", "references": ["contrast ct of the abdomen"], "modality": "CT"},
        {"id": "2", "prediction": "brain mri", "references": ["t2 weighted brain mri"], "labels": ["Magnetic Resonance Imaging"]},
        {"id": "3", "prediction": "ultrasound", "references": ["renal ultrasound"]},
    ]  # fmt: skip
    result = caption_subgroups(rows, tokenizer="fallback-regex", n_resamples=100)
    scores, _ = caption_item_scores([r["prediction"] for r in rows], [r["references"] for r in rows],
                                    tokenizer="fallback-regex")  # fmt: skip
    assert set(result) == {"cider", "rouge_l"} and set(result["cider"]) == {"modality"}
    for metric in ("cider", "rouge_l"):
        groups = result[metric]["modality"]
        assert groups["CT"]["n"] == 2 and groups["CT"]["metric"] == pytest.approx(sum(scores[metric][:2]) / 2)
        assert groups["MRI"]["n"] == 1 and groups["MRI"]["metric"] == pytest.approx(scores[metric][2])
    assert caption_subgroups([{k: v for k, v in r.items() if k not in ("modality", "labels")} for r in rows]) == {}


def test_subgroup_fields_of_a_dataset_row():
    from radtune.common.metrics.subgroups import subgroup_fields

    row = {"id": "x", "view": " PA ", "category": ["presence"], "concepts": ["C1306645"], "labels": ["Plain x-ray"]}
    assert subgroup_fields(row) == {"view": "PA", "modality": "X-ray"}  # a multi-turn category list is not one value
    assert subgroup_fields({"id": "y", "text": "caption"}) == {}
