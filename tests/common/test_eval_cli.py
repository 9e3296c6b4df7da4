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
    assert body["metrics"]["llava_med/closed_accuracy"] == 0.5  # LLaVA-Med v1.0.0: the wrong "no" is a miss
    assert body["metrics"]["llava_med/closed_accuracy_pre35"] == 1.0  # before their #35 it was not counted
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


def _evaluation_runs(root):
    """Five evaluation folders of four tasks, their metrics computed by radtune's metric functions and written by
    its one writer, as the task packages' evaluators write them (intervals, baselines, an ablation verdict)."""
    import numpy as np

    from radtune.common.metrics.captioning import caption_metrics
    from radtune.common.metrics.classification import multilabel_metrics
    from radtune.common.metrics.retrieval import retrieval_metrics
    from radtune.common.metrics.vqa import vqa_metrics

    answers = [
        ("yes", "yes", "closed"),
        ("no", "yes", "closed"),
        ("yes", "no", "closed"),
        ("left lung", "left lung", "open"),
    ]
    vqa = vqa_metrics(*zip(*answers, strict=True))
    vqa |= {f"majority_baseline/{k}": 0.5 for k in vqa if "/" in k}
    vqa |= {f"ablation/blank/{k}": 0.25 for k in vqa if k.startswith("strict/")} | {"ablation/gap": 0.4}
    write_metrics(root / "llava" / "eval-test", vqa, task="vqa", model=str(root / "llava"), dataset="data-qa",
                  split="test", n=4, ci={"strict/closed_accuracy": (0.0, 1.0), "strict/open_recall": (1.0, 1.0)},
                  extra_meta={"image_ablation": {"metric": "strict/closed_accuracy", "ignores_image": True,
                                                 "overlapping": ["blank"], "gap": 0.4}})  # fmt: skip
    open_only = vqa_metrics(["left lung"], ["left upper lobe"], ["open"])
    write_metrics(root / "blip-vqa", open_only, task="vqa", model="blip", dataset="data-qa", split="test", n=1)
    captions = caption_metrics(["no effusion", "the heart is enlarged"], [["no effusion"], ["cardiomegaly"]],
                               tokenizer="fallback-regex", meteor=False).metrics  # fmt: skip
    write_metrics(root / "caption", {**captions, "constant_baseline/cider": 0.01}, task="captioning",
                  model="tiny-vit-gpt2", dataset="data-mimic", split="test", n=2,
                  ci={"cider": (0.1, 2.5)})  # fmt: skip
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.3, 0.6], [0.7, 0.4], [0.1, 0.5]])
    zero_shot = multilabel_metrics(truth, scores, ["Effusion", "Cardiomegaly"]).metrics
    write_metrics(root / "zero-shot", zero_shot, task="zero-shot", model="clip", dataset="data-nih", split="test",
                  n=4, ci={"auc_macro": (0.5, 1.0)})  # fmt: skip
    retrieval = retrieval_metrics(np.eye(6) + 0.1) | {"chance/recall@5": 5 / 6}
    write_metrics(
        root / "retrieval", retrieval, task="retrieval", model="clip", dataset="data-mimic", split="test", n=6
    )
    return [root / "llava", root / "blip-vqa", root / "caption", root / "zero-shot", root / "retrieval"]


def test_report_shows_one_headline_per_run_and_keeps_every_metric(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    runs = _evaluation_runs(tmp_path / "runs")
    out = tmp_path / "cmp" / "report.md"
    result = run("report", *runs, "--out", out)
    assert result.exit_code == 0, result.output
    lines = [line for line in out.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["run", "task", "model", "dataset", "split", "n", "metric", "value", "95% interval", "baseline",
                      "image ablation"]  # fmt: skip
    rows = {cells[0]: dict(zip(header, cells, strict=True))
            for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}  # fmt: skip
    assert list(rows) == ["llava/eval-test", "blip-vqa", "caption", "zero-shot", "retrieval"]  # a training run's eval
    llava = rows["llava/eval-test"]
    assert (llava["metric"], llava["value"], llava["95% interval"]) == ("strict/closed_accuracy", "0.3333",
                                                                         "[0.0000, 1.0000]")  # fmt: skip
    assert llava["baseline"] == "0.5000 (majority answer)" and llava["n"] == "4" and llava["split"] == "test"
    assert llava["model"] == "runs/llava"  # an absolute path under the working directory, shown relative to it
    assert llava["image ablation"] == "IGNORES THE IMAGE (blank within the interval)"
    assert rows["blip-vqa"]["metric"] == "strict/open_recall" and rows["blip-vqa"]["95% interval"] == ""
    assert rows["caption"]["metric"] == "cider" and rows["caption"]["baseline"] == "0.0100 (constant caption)"
    assert rows["zero-shot"]["metric"] == "auc_macro" and rows["zero-shot"]["baseline"] == "0.5000 (chance)"
    assert (rows["retrieval"]["metric"], rows["retrieval"]["value"]) == ("i2t/recall@5", "1.0000")
    assert rows["retrieval"]["baseline"] == "0.8333 (chance)" and rows["retrieval"]["image ablation"] == ""
    assert max(len(line) for line in lines) < 250  # was ~130 columns of every metric

    # The CSV: every metric of every run, one row each, with its interval.
    table = list(csv.DictReader(out.with_suffix(".csv").open(encoding="utf-8")))
    assert list(table[0]) == ["run", "task", "model", "dataset", "split", "n", "metric", "value", "ci_low", "ci_high",
                              "headline"]  # fmt: skip
    expected = {(name, metric) for name, folder in zip(rows, [runs[0] / "eval-test", *runs[1:]], strict=True)
                for metric in read_metrics(folder)["metrics"]}  # fmt: skip
    assert {(r["run"], r["metric"]) for r in table} == expected and len(table) == len(expected)
    by_key = {(r["run"], r["metric"]): r for r in table}
    assert by_key[("caption", "cider")]["ci_low"] == "0.1" and by_key[("caption", "cider")]["headline"] == "true"
    assert by_key[("caption", "bleu_4")]["ci_low"] == "" and by_key[("caption", "bleu_4")]["headline"] == "false"
    assert by_key[("blip-vqa", "strict/closed_accuracy")]["value"] == ""  # NaN: no closed items
    assert float(by_key[("zero-shot", "auc/Effusion")]["value"]) == pytest.approx(1.0)
    assert by_key[("llava/eval-test", "n_closed")]["model"] == str(tmp_path / "runs" / "llava")  # as recorded
    assert sum(r["headline"] == "true" for r in table) == 5

    # Small multiples: one panel per task and headline metric, never wider than 2,400 px.
    width, height = Image.open(out.with_suffix(".png")).size
    assert width <= 2400 and height < 2400


def test_report_plot_stays_within_2400_px_for_many_runs_and_tasks(tmp_path):
    from PIL import Image

    names = []
    for i in range(40):
        task = ["vqa", "captioning", "zero-shot", "retrieval", "grounding", "report-generation", "segmentation"][i % 7]
        path = tmp_path / f"a-rather-long-run-name-number-{i:02d}"
        write_metrics(path, {"strict/closed_accuracy": 0.5, "cider": 0.2, "auc_macro": 0.7, "i2t/recall@5": 0.3,
                             "dice": i / 40, "n_items": 10.0}, task=task, n=10)  # fmt: skip
        names.append(path)
    out = tmp_path / "report.md"
    result = run("report", *names, "--out", out)
    assert result.exit_code == 0, result.output
    assert Image.open(out.with_suffix(".png")).size[0] <= 2400
    header = out.read_text(encoding="utf-8").splitlines()[4]
    assert header.endswith("| metric | value | 95% interval | baseline |")  # no ablation column, no metric columns
    grounding = next(line for line in out.read_text(encoding="utf-8").splitlines() if "| grounding |" in line)
    assert "| strict/closed_accuracy | 0.5000 |" in grounding  # an unknown task: its first score, not a count


def test_report_on_a_folder_without_metrics_names_it(tmp_path):
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)
    result = run("report", tmp_path / "run")
    assert result.exit_code != 0 and "run: no metrics.json in it or in its subfolders" in result.output
    assert "Traceback" not in result.output


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
