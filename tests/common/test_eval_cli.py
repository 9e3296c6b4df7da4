"""`radtune eval …` through click's CliRunner: good inputs, and malformed ones that must fail with a clear message."""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.metrics.captioning import CAPTION_METRICS
from radtune.common.metrics.io import read_metrics, read_results, write_metrics, write_results

CAPTION_ROWS = [
    {"id": "a", "prediction": "No pleural effusion.", "references": ["No pleural effusion or pneumothorax."]},
    {"id": "b", "prediction": "The heart is enlarged.", "references": ["Cardiomegaly.", "The heart is enlarged"]},
    {"id": "c", "prediction": "", "references": ["Clear lungs."]},
]
VQA_ROWS = [
    {"id": 1, "question": "Is there an effusion?", "prediction": "Yes.", "answer": "yes", "answer_type": "CLOSED"},
    {"id": 2, "question": "Is the heart enlarged?", "prediction": "no", "answer": "yes", "answer_type": "closed"},
    {"id": 3, "question": "Where is the mass?", "prediction": "left lung", "answer": "left upper lobe", "answer_type": "OPEN"},
]  # fmt: skip


def run(*args):
    return CliRunner().invoke(cli, ["eval", *map(str, args)])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.usefixtures("java")
def test_captions_json_and_csv_give_the_same_metrics(tmp_path, borrowed_meteor):
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(CAPTION_ROWS), encoding="utf-8")
    result = run("captions", predictions, "--out", tmp_path / "run" / "metrics.json", "--model", "tiny")
    assert result.exit_code == 0, result.output
    assert "bleu_4" in result.output and "spice: unavailable" in result.output
    body = read_metrics(tmp_path / "run")
    assert list(body["metrics"]) == list(CAPTION_METRICS)
    assert body["meta"]["task"] == "captioning" and body["meta"]["n"] == 3 and body["meta"]["model"] == "tiny"
    assert body["meta"]["tokenizer"] == "ptb" and "radtune-common" in body["meta"]["radtune_versions"]

    results_csv = write_results(tmp_path / "csv", CAPTION_ROWS)
    again = run("captions", results_csv, "--out", tmp_path / "again.json")
    assert again.exit_code == 0, again.output
    assert read_metrics(tmp_path / "again.json")["metrics"] == pytest.approx(body["metrics"])


def test_vqa_jsonl(tmp_path):
    predictions = _jsonl(tmp_path / "answers.jsonl", VQA_ROWS)
    result = run("vqa", predictions, "--out", tmp_path / "metrics.json", "--dataset", "vqa-rad", "--split", "test")
    assert result.exit_code == 0, result.output
    body = read_metrics(tmp_path / "metrics.json")
    assert body["metrics"]["strict/closed_accuracy"] == 0.5
    assert body["metrics"]["llava_med/closed_accuracy"] == 1.0  # the wrong "no" is not counted there
    assert body["meta"]["dataset"] == "vqa-rad" and body["meta"]["split"] == "test"


def test_vqa_from_evaluation_results_csv(tmp_path):
    rows = [{**r, "references": [r["answer"]]} for r in VQA_ROWS]
    path = write_results(tmp_path / "evaluation_results.csv", rows)
    result = run("vqa", path)
    assert result.exit_code == 0, result.output
    assert "strict/closed_accuracy" in result.output


def test_label_writes_chexpert_style_csv(tmp_path):
    reports = tmp_path / "reports.csv"
    with reports.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "report"])
        writer.writerow(["s1", "No pleural effusion or pneumothorax."])
        writer.writerow(["s2", "Cannot exclude pneumonia. Left chest wall pacemaker."])
    out = tmp_path / "labels.csv"
    result = run("label", reports, "--text-column", "report", "--out", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows[0]["id"] == "s1" and rows[0]["Pleural Effusion"] == "0.0" and rows[0]["Cardiomegaly"] == ""
    assert rows[1]["Pneumonia"] == "-1.0" and rows[1]["Support Devices"] == "1.0"
    to_stdout = run("label", reports, "--text-column", "report")
    assert to_stdout.output.splitlines()[0].startswith("id,No Finding,")


def test_report_gathers_runs(tmp_path):
    write_metrics(tmp_path / "blip", {"bleu_4": 0.1, "cider": 0.5}, task="captioning", model="blip", n=10)
    write_metrics(tmp_path / "vit", {"bleu_4": 0.2, "rouge_l": math.nan}, task="captioning", model="vit", n=10)
    out = tmp_path / "cmp" / "report.md"
    result = run("report", tmp_path / "blip", tmp_path / "vit", "--out", out)
    assert result.exit_code == 0, result.output
    table = out.read_text(encoding="utf-8")
    assert "| blip | captioning | blip |" in table and "0.2000" in table
    assert out.with_suffix(".png").stat().st_size > 1000
    rows = list(csv.reader(out.with_suffix(".csv").open(encoding="utf-8")))
    assert rows[0][:2] == ["run", "task"] and len(rows) == 3


def test_report_shows_intervals_and_the_ablation_verdict(tmp_path):
    write_metrics(tmp_path / "a", {"strict/closed_accuracy": 0.9}, task="vqa", n=50,
                  ci={"strict/closed_accuracy": (0.82, 0.96)},
                  extra_meta={"image_ablation": {"metric": "strict/closed_accuracy", "ignores_image": False,
                                                 "overlapping": [], "gap": 0.4}})  # fmt: skip
    write_metrics(tmp_path / "b", {"strict/closed_accuracy": 0.55}, task="vqa", n=50,
                  ci={"strict/closed_accuracy": (0.41, 0.69)},
                  extra_meta={"image_ablation": {"metric": "strict/closed_accuracy", "ignores_image": True,
                                                 "overlapping": ["blank"], "gap": 0.05}})  # fmt: skip
    write_metrics(tmp_path / "c", {"strict/closed_accuracy": 0.5}, task="vqa", n=50)
    out = tmp_path / "report.md"
    result = run("report", tmp_path / "a", tmp_path / "b", tmp_path / "c", "--out", out)
    assert result.exit_code == 0, result.output
    table = out.read_text(encoding="utf-8").splitlines()
    assert "image_ablation" in table[0]
    assert "uses the image (+0.4000)" in table[2] and "0.9000 [0.8200, 0.9600]" in table[2]
    assert "IGNORES THE IMAGE (blank within the interval)" in table[3]
    assert table[4].endswith("| 0.5000 |")  # no interval stored, none shown
    rows = list(csv.DictReader(out.with_suffix(".csv").open(encoding="utf-8")))
    assert rows[0]["strict/closed_accuracy"] == "0.9000"
    assert (rows[0]["strict/closed_accuracy ci_low"], rows[0]["strict/closed_accuracy ci_high"]) == ("0.8200", "0.9600")
    assert rows[2]["strict/closed_accuracy ci_low"] == ""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"id": "a", "prediction": "x"}], "row 1 (id 'a'): missing 'references'"),
        ([{"id": "a", "prediction": 3, "references": ["x"]}], "row 1 (id 'a'): 'prediction' must be str"),
        ([{"id": "a", "prediction": "x", "references": "x"}], "row 1 (id 'a'): 'references' must be list"),
        ([{"id": "a", "prediction": "x", "references": []}], "row 1 (id 'a'): 'references' must be a non-empty"),
        ([{"id": "a", "prediction": "x", "references": ["x"]}, {"id": "a", "prediction": "y", "references": ["y"]}],
         "row 2 (id 'a'): duplicate id"),
        ([CAPTION_ROWS[0], "oops"], "row 2: expected an object"),
        ({"predictions": []}, "expected a JSON list"),
    ],
)  # fmt: skip
def test_captions_malformed_input_names_the_row(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    result = run("captions", path)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, TypeError))


def test_captions_csv_with_bad_references_names_the_row(tmp_path):
    path = tmp_path / "evaluation_results.csv"
    path.write_text('id,prediction,references\na,x,"[""ok""]"\nb,y,not json\n', encoding="utf-8")
    result = run("captions", path)
    assert result.exit_code != 0 and "row 2 (id 'b'): references is not JSON" in result.output


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": 1, "prediction": "yes", "answer_type": "closed"}], "row 1 (id 1): missing 'answer'"),
        ([{"id": 1, "prediction": "yes", "answer": "yes", "answer_type": "multi"}], "row 1 (id 1): answer_type"),
        ([{"id": 1, "prediction": ["yes"], "answer": "yes", "answer_type": "closed"}], "'prediction' must be str"),
    ],
)
def test_vqa_malformed_input_names_the_row(tmp_path, rows, message):
    result = run("vqa", _jsonl(tmp_path / "bad.jsonl", rows))
    assert result.exit_code != 0 and message in result.output


def test_vqa_broken_json_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(VQA_ROWS[0]) + "\n{not json\n", encoding="utf-8")
    result = run("vqa", path)
    assert result.exit_code != 0 and "line 2 is not valid JSON" in result.output


def test_label_and_report_errors(tmp_path):
    reports = tmp_path / "reports.csv"
    reports.write_text("id,text\n1,Cardiomegaly.\n", encoding="utf-8")
    result = run("label", reports, "--text-column", "report")
    assert result.exit_code != 0 and "no column 'report'" in result.output
    (tmp_path / "run").mkdir()
    result = run("report", tmp_path / "run")
    assert result.exit_code != 0 and "metrics.json: no such file" in result.output
    (tmp_path / "run" / "metrics.json").write_text('{"metrics": {"bleu": "high"}}', encoding="utf-8")
    result = run("report", tmp_path / "run")
    assert result.exit_code != 0 and "metric 'bleu' must be a number" in result.output


def test_writer_and_readers_round_trip(tmp_path):
    rows = [{"id": "1", "prediction": "p", "references": ["r1", "r2"], "image_id": "img", "labels": {"Edema": 1}}]
    path = write_results(tmp_path, rows)
    assert path.name == "evaluation_results.csv"
    back = read_results(path)
    assert back[0]["references"] == ["r1", "r2"] and back[0]["labels"] == {"Edema": 1}
    assert list(back[0]) == ["id", "prediction", "references", "image_id", "labels"]
    with pytest.raises(ValueError, match="unknown columns"):
        write_results(tmp_path / "x.csv", [{**rows[0], "score": 1}])
    metrics_path = write_metrics(tmp_path, {"auc": math.nan, "f1": 0.5}, task="clip", ci={"f1": [0.4, 0.6]}, seed=3)
    raw = json.loads(metrics_path.read_text(encoding="utf-8"))
    assert raw["metrics"]["auc"] is None and raw["ci"] == {"f1": [0.4, 0.6]} and raw["meta"]["seed"] == 3
    assert set(raw["meta"]) >= {"task", "model", "dataset", "split", "n", "seed", "radtune_versions"}
    assert math.isnan(read_metrics(tmp_path)["metrics"]["auc"])


def test_eval_group_is_listed():
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert result.exit_code == 0 and "radtune eval captions" in result.output
