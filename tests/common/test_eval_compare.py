"""`radtune eval compare`: paired bootstrap of B − A on result folders written by radtune's own writer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.metrics.captioning import caption_metrics
from radtune.common.metrics.compare import compare_runs
from radtune.common.metrics.io import write_metrics, write_results

N_CLOSED, N_OPEN = 40, 20
A_CLOSED_HITS, B_CLOSED_HITS = 12, 36  # how many closed items each run answers right


def _vqa_rows(closed_hits: int, open_right: bool) -> list[dict]:
    rows = []
    for i in range(N_CLOSED):
        answer = "Yes." if i % 2 else "No."
        wrong = "No." if answer == "Yes." else "Yes."
        rows.append({"id": f"c{i}", "prediction": answer if i < closed_hits else wrong, "references": [answer],
                     "question": f"Is there finding {i}?", "answer": answer, "answer_type": "closed"})  # fmt: skip
    for i in range(N_OPEN):
        answer = f"left lower lobe {i}"
        rows.append({"id": f"o{i}", "prediction": answer if open_right else "unclear", "references": [answer],
                     "question": "Where is it?", "answer": answer, "answer_type": "open"})  # fmt: skip
    return rows


def _run(folder, rows, task="vqa"):
    write_results(folder, rows)
    write_metrics(folder, {"n": float(len(rows))}, task=task, n=len(rows))
    return folder


@pytest.fixture
def vqa_runs(tmp_path):
    a = _run(tmp_path / "a", _vqa_rows(A_CLOSED_HITS, open_right=False))
    b = _run(tmp_path / "b", _vqa_rows(B_CLOSED_HITS, open_right=True))
    same = _run(tmp_path / "same", _vqa_rows(A_CLOSED_HITS, open_right=False))
    return a, b, same


def test_identical_runs_differ_by_zero(vqa_runs):
    a, _, same = vqa_runs
    result = compare_runs(a, same, n_resamples=200)
    assert result["task"] == "vqa" and result["n"] == N_CLOSED + N_OPEN
    assert set(result["metrics"]) >= {"strict/closed_accuracy", "strict/open_recall", "llava_med/closed_accuracy",
                                      "llava_med/open_recall"}  # fmt: skip
    for name, metric in result["metrics"].items():
        low, high = metric["ci"]
        assert metric["difference"] == 0.0 and metric["a"] == metric["b"], name
        assert low <= 0.0 <= high and not metric["excludes_zero"], name


def test_clearly_better_run_has_an_interval_above_zero(vqa_runs):
    a, b, _ = vqa_runs
    result = compare_runs(a, b, n_resamples=500, seed=1)
    closed = result["metrics"]["strict/closed_accuracy"]
    # Computed independently from how the runs were built: B gets 36/40 closed items right, A 12/40.
    assert closed["a"] == pytest.approx(A_CLOSED_HITS / N_CLOSED)
    assert closed["b"] == pytest.approx(B_CLOSED_HITS / N_CLOSED)
    assert closed["difference"] == pytest.approx((B_CLOSED_HITS - A_CLOSED_HITS) / N_CLOSED)
    assert closed["n"] == N_CLOSED
    low, high = closed["ci"]
    assert closed["excludes_zero"] and 0 < low <= closed["difference"] <= high
    # Open items: B answers every one exactly, A none of their tokens.
    recall = result["metrics"]["strict/open_recall"]
    assert (recall["a"], recall["b"], recall["difference"]) == (0.0, 1.0, 1.0) and recall["ci"] == [1.0, 1.0]
    overall = result["metrics"]["strict/accuracy"]
    assert overall["difference"] == pytest.approx((B_CLOSED_HITS + N_OPEN - A_CLOSED_HITS) / (N_CLOSED + N_OPEN))
    # Reversed, the difference changes sign and the interval lies below zero.
    reverse = compare_runs(b, a, n_resamples=500, seed=1)["metrics"]["strict/closed_accuracy"]
    assert reverse["difference"] == pytest.approx(-closed["difference"]) and reverse["ci"][1] < 0


def test_mismatched_ids_are_named(tmp_path, vqa_runs):
    a, _, _ = vqa_runs
    rows = _vqa_rows(A_CLOSED_HITS, open_right=False)
    rows = [r for r in rows if r["id"] != "c3"] + [{**rows[0], "id": "extra-7"}]
    other = _run(tmp_path / "other", rows)
    with pytest.raises(ValueError, match=r"only in A \(1\): 'c3'; only in B \(1\): 'extra-7'"):
        compare_runs(a, other)


def test_different_tasks_and_references_are_refused(tmp_path, vqa_runs):
    a, _, _ = vqa_runs
    captions = _run(tmp_path / "captions", [{"id": "c0", "prediction": "x", "references": ["y"]}], task="captioning")
    with pytest.raises(ValueError, match="cannot compare a 'vqa' run .* with a 'captioning' run"):
        compare_runs(a, captions)
    rows = _vqa_rows(A_CLOSED_HITS, open_right=False)
    rows[5] = {**rows[5], "answer": "Possibly.", "references": ["Possibly."]}
    changed = _run(tmp_path / "changed", rows)
    with pytest.raises(ValueError, match="different answer or answer type: 'c5'"):
        compare_runs(a, changed)


CAPTION_REFERENCES = [
    ["no pleural effusion or pneumothorax"], ["the heart is enlarged"], ["lungs are clear bilaterally"],
    ["small left pleural effusion"], ["right lower lobe consolidation"], ["endotracheal tube in good position"],
    ["mild pulmonary edema"], ["no acute cardiopulmonary process"], ["left basilar atelectasis"],
    ["stable cardiomegaly without edema"],
]  # fmt: skip


def test_captioning_differences_equal_the_corpus_scores(tmp_path):
    good = [refs[0] for refs in CAPTION_REFERENCES]
    bad = ["the image shows a chest"] * len(good)

    def rows(predictions):
        return [{"id": str(i), "prediction": p, "references": refs}
                for i, (p, refs) in enumerate(zip(predictions, CAPTION_REFERENCES, strict=True))]  # fmt: skip

    a = _run(tmp_path / "a", rows(bad), task="captioning")
    b = _run(tmp_path / "b", rows(good), task="captioning")
    result = compare_runs(a / "evaluation_results.csv", b, n_resamples=300, tokenizer="fallback-regex")
    assert result["task"] == "captioning" and set(result["metrics"]) == {"cider", "rouge_l", "sentence_bleu_4"}
    corpus_a = caption_metrics(bad, CAPTION_REFERENCES, tokenizer="fallback-regex", meteor=False).metrics
    corpus_b = caption_metrics(good, CAPTION_REFERENCES, tokenizer="fallback-regex", meteor=False).metrics
    for name in ("cider", "rouge_l"):  # means of item scores are the corpus scores for these two
        metric = result["metrics"][name]
        assert metric["a"] == pytest.approx(corpus_a[name]) and metric["b"] == pytest.approx(corpus_b[name])
        assert metric["difference"] == pytest.approx(corpus_b[name] - corpus_a[name])
        assert metric["excludes_zero"] and metric["ci"][0] > 0
    same = compare_runs(a, a, n_resamples=100, tokenizer="fallback-regex")
    assert all(m["difference"] == 0 and not m["excludes_zero"] for m in same["metrics"].values())


def test_cli_prints_the_table_and_writes_json(vqa_runs, tmp_path):
    a, b, _ = vqa_runs
    out = tmp_path / "compare.json"
    result = CliRunner().invoke(cli, ["eval", "compare", str(a), str(b), "--metric", "strict/closed_accuracy",
                                      "--n-resamples", "300", "--seed", "2", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    header, line = [row for row in result.output.splitlines() if row.startswith(("metric", "strict/"))]
    assert header.split()[:5] == ["metric", "n", "A", "B", "B−A"]
    assert line.split()[:5] == ["strict/closed_accuracy", "40", "0.3000", "0.9000", "+0.6000"]
    assert line.endswith("yes: B better")
    body = json.loads(out.read_text(encoding="utf-8"))
    assert list(body["metrics"]) == ["strict/closed_accuracy"] and body["n_resamples"] == 300 and body["seed"] == 2
    assert body["metrics"]["strict/closed_accuracy"]["difference"] == pytest.approx(0.6)

    result = CliRunner().invoke(cli, ["eval", "compare", str(a), str(b), "--n-resamples", "0"])
    assert result.exit_code != 0 and "--n-resamples must be positive, got 0" in result.output

    result = CliRunner().invoke(cli, ["eval", "compare", str(a), str(b), "--metric", "bleu"])
    assert result.exit_code != 0 and "unknown metric(s) bleu" in result.output
    assert "strict/open_recall" in result.output  # the message lists the metrics there are
