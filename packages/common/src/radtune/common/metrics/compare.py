"""Compare two evaluation runs on the same items: is B better than A, or is the difference noise?

Each run is an evaluation output folder (its `evaluation_results.csv`, and `metrics.json` for the task) or the
CSV itself. Items are matched by `id`; both runs must hold the same ids and the same references. For every
metric that is a mean of per-item scores, the difference B − A is the mean of the per-item differences, with a
paired bootstrap interval (both runs resampled together, `paired_difference_ci`): the interval excludes 0 when
the data show a difference at that confidence.

Per-item scores:
- VQA (`radtune.common.metrics.vqa.vqa_item_scores`): `strict/accuracy`, `strict/closed_accuracy`,
  `strict/open_recall`, `llava_med/closed_accuracy`, `llava_med/closed_accuracy_batch`,
  `llava_med/closed_accuracy_pre35`, `llava_med/open_recall`. LLaVA-Med's closed rule before their #35
  (`_pre35`) leaves some items out, and which ones depends on the answer: that metric is compared over the items
  both runs count, so its A and B may differ from each run's own `metrics.json`.
- Captioning (`radtune.common.metrics.captioning.caption_item_scores`): `cider` (CIDEr-D with document
  frequencies from the pooled references, the same for both runs), `rouge_l`, `sentence_bleu_4` (mean of
  sentence-level BLEU-4, not the corpus BLEU-4). METEOR's corpus score is not a mean of item scores, so it is
  not compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from radtune.common.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, paired_difference_ci
from radtune.common.metrics.io import METRICS_FILE, RESULTS_FILE, EvaluationFileError, read_metrics, read_results

COMPARABLE_TASKS = ("vqa", "captioning")
_SHOWN_IDS = 10


def _results_path(run: str | Path) -> Path:
    run = Path(run)
    return run / RESULTS_FILE if run.is_dir() else run


def run_task(run: str | Path, rows: Sequence[dict]) -> str:
    """The task of a run: `meta.task` of the `metrics.json` beside its results, else guessed from the columns
    (`answer_type` → `vqa`, else `captioning`)."""
    metrics_path = _results_path(run).parent / METRICS_FILE
    if metrics_path.is_file():
        task = read_metrics(metrics_path)["meta"].get("task")
        if task:
            return str(task)
    return "vqa" if any(row.get("answer_type") for row in rows) else "captioning"


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in sorted(ids)[:_SHOWN_IDS])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > _SHOWN_IDS else "")


def match_items(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of both runs in the same id order; `ValueError` naming the ids only one run holds."""
    by_id_a, by_id_b = {r["id"]: r for r in rows_a}, {r["id"]: r for r in rows_b}
    only_a, only_b = set(by_id_a) - set(by_id_b), set(by_id_b) - set(by_id_a)
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"only in A ({len(only_a)}): {_ids(list(only_a))}")
        if only_b:
            parts.append(f"only in B ({len(only_b)}): {_ids(list(only_b))}")
        raise ValueError("the runs were evaluated on different items: " + "; ".join(parts))
    ids = [r["id"] for r in rows_a]
    return [by_id_a[i] for i in ids], [by_id_b[i] for i in ids]


def _vqa_answer(row: dict) -> str:
    answer = row.get("answer")
    if answer in (None, "") and row.get("references"):
        answer = row["references"][0]
    return "" if answer is None else str(answer)


def _check_same_references(rows_a: Sequence[dict], rows_b: Sequence[dict], task: str) -> None:
    def key(row: dict) -> tuple:
        if task == "vqa":
            return _vqa_answer(row), str(row.get("answer_type", "")).strip().lower()
        return tuple(row["references"])

    differing = [a["id"] for a, b in zip(rows_a, rows_b, strict=True) if key(a) != key(b)]
    if differing:
        what = "answer or answer type" if task == "vqa" else "references"
        raise ValueError(f"the runs score the same ids against different {what}: {_ids(differing)}")


def item_scores(rows: Sequence[dict], task: str, tokenizer: str = "auto") -> list[dict[str, float]]:
    """Per-item scores of result rows (see the module docstring), one dict per row."""
    if task == "vqa":
        from radtune.common.metrics.vqa import vqa_item_scores

        scores = []
        for number, row in enumerate(rows, start=1):
            try:
                scores.append(vqa_item_scores(row["prediction"], _vqa_answer(row), row.get("answer_type", "")))
            except ValueError as error:
                raise ValueError(f"row {number} (id {row['id']!r}): {error}") from error
        return scores
    from radtune.common.metrics.captioning import caption_item_scores

    per_metric, _ = caption_item_scores([r["prediction"] for r in rows], [r["references"] for r in rows],
                                        tokenizer=tokenizer)  # fmt: skip
    return [{name: values[i] for name, values in per_metric.items()} for i in range(len(rows))]


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    metrics: Sequence[str] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    tokenizer: str = "auto",
) -> dict[str, Any]:
    """Paired bootstrap comparison of two evaluation runs on the same items.

    Args:
        run_a, run_b (`str` or `Path`): evaluation output folders, or their `evaluation_results.csv`.
        metrics (`Sequence[str]`, *optional*): compare only these (default: every per-item metric of the task).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples.
        confidence (`float`, *optional*, defaults to `0.95`): confidence level of the intervals.
        seed (`int`, *optional*, defaults to `0`): seed of the resampling.
        tokenizer (`str`, *optional*, defaults to `"auto"`): captioning only, see `caption_metrics`.

    Returns:
        `dict` with `run_a`, `run_b`, `task`, `n` (matched items), `n_resamples`, `confidence`, `seed` and
        `metrics`: `{name: {"n", "a", "b", "difference" (B − A), "ci": [low, high], "excludes_zero"}}`.

    Raises:
        `ValueError`: different tasks, a task that has no per-item scores, different item ids (named), different
        references for the same id, or an unknown metric name.
    """
    rows_a, rows_b = read_results(_results_path(run_a)), read_results(_results_path(run_b))
    task_a, task_b = run_task(run_a, rows_a), run_task(run_b, rows_b)
    if task_a != task_b:
        raise ValueError(f"cannot compare a {task_a!r} run (A: {run_a}) with a {task_b!r} run (B: {run_b})")
    if task_a not in COMPARABLE_TASKS:
        raise ValueError(f"compare supports {' and '.join(COMPARABLE_TASKS)} runs; these are {task_a!r} runs")
    rows_a, rows_b = match_items(rows_a, rows_b)
    if not rows_a:
        raise EvaluationFileError(f"{run_a}: no rows")
    _check_same_references(rows_a, rows_b, task_a)
    scores_a, scores_b = item_scores(rows_a, task_a, tokenizer), item_scores(rows_b, task_b, tokenizer)
    available = []
    for scores in scores_a:
        available += [name for name in scores if name not in available]
    if metrics:
        unknown = [name for name in metrics if name not in available]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)} for {task_a} runs; choose from "
                             f"{', '.join(available)}")  # fmt: skip
        available = list(metrics)
    compared = {}
    for name in available:
        pairs = [(a[name], b[name]) for a, b in zip(scores_a, scores_b, strict=True) if name in a and name in b]
        if not pairs:
            continue
        values_a, values_b = [p[0] for p in pairs], [p[1] for p in pairs]
        difference, (low, high) = paired_difference_ci(
            values_b, values_a, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
        compared[name] = {
            "n": len(pairs),
            "a": sum(values_a) / len(values_a),
            "b": sum(values_b) / len(values_b),
            "difference": difference,
            "ci": [low, high],
            "excludes_zero": bool(low > 0 or high < 0),  # False for a NaN interval (fewer than two items)
        }
    return {
        "run_a": str(run_a), "run_b": str(run_b), "task": task_a, "n": len(rows_a), "n_resamples": n_resamples,
        "confidence": confidence, "seed": seed, "metrics": compared,
    }  # fmt: skip


def comparison_table(comparison: dict[str, Any]) -> str:
    """The comparison as a text table: `metric  n  A  B  B−A [lo, hi]` and whether the interval excludes 0."""

    def number(value: float, signed: bool = False) -> str:
        if value is None or math.isnan(value):
            return "n/a"
        return f"{value:+.4f}" if signed else f"{value:.4f}"

    level = f"{comparison['confidence']:.0%}"
    rows = [("metric", "n", "A", "B", "B−A", f"{level} CI", "excludes 0")]
    for name, result in comparison["metrics"].items():
        low, high = result["ci"]
        if result["excludes_zero"]:
            verdict = "yes: B better" if low > 0 else "yes: A better"
        else:
            verdict = "no"
        rows.append((name, str(result["n"]), number(result["a"]), number(result["b"]),
                     number(result["difference"], True), f"[{number(low, True)}, {number(high, True)}]", verdict))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)  # fmt: skip
