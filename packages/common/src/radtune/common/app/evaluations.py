"""What the app's evaluation browser shows: the rows of an evaluation folder (`evaluation_results.csv` +
`metrics.json`, as `radtune.common.metrics.io` writes them) with a per-item score, their images, filters, and the
headline metrics with intervals and the image-ablation verdict.

An evaluation folder is the run folder itself (a trainer's final evaluation writes there), any `eval-*` folder inside
it (`radtune.common.run.evaluation_out_dir`), or a folder named with `--eval`. The images are not in the results:
they are read from the evaluated split (`meta.dataset`, `meta.split`) and matched by row id, as each evaluator
wrote it. No gradio here, so all of it is tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALL = "all"
CORRECT_CHOICES = (ALL, "correct", "incorrect")
SORT_CHOICES = ("file order", "score: lowest first", "score: highest first")
SUBGROUP_FIELDS = ("category", "modality", "view")
# How each evaluation task scores one item, as the page explains it.
SCORE_NOTES = {
    "vqa": "score: strict closed accuracy (closed questions) or strict open recall (open ones); correct = score 1",
    "captioning": "score: the item's CIDEr-D; correct = the caption equals its reference (case and spaces aside)",
    "zero-shot": "score: share of the classes predicted right at p ≥ 0.5; correct = every class right",
    "retrieval": "score: 1 when the top-ranked text is the image's own; correct = score 1",
}
# The command that evaluates a run of each task (`{run}`: the run), for an app started without an evaluation.
EVALUATE_COMMANDS = {
    "vqa": "radtune vqa evaluate --model {run} --dataset DATA --split test",
    "captioning": "radtune caption evaluate --model {run} --dataset DATA --split test",
    "blip-vqa": "radtune caption evaluate --model {run} --dataset DATA --split test",
    "contrastive": "radtune clip zero-shot --model {run} --dataset DATA --split test --labels nih",
}


def how_to_evaluate(task: str, run: str | Path) -> str:
    """What the page says when the run has no evaluation: the command that makes one, and where the app looks."""
    command = EVALUATE_COMMANDS.get(task, "radtune <task> evaluate --model {run} --dataset DATA --split test")
    return (f"**No evaluation to browse yet.** Make one with `{command.format(run=run)}` and start the app again: "
            f"it finds `{run}/eval-*` folders (or name a folder with `--eval DIR`).")  # fmt: skip


def is_evaluation(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "evaluation_results.csv").is_file() and (folder / "metrics.json").is_file()


def find_evaluations(run: str | Path, extra: Iterable[str | Path] = ()) -> list[Path]:
    """The evaluation folders of `run`: its own final evaluation, its `eval-*` folders, then `extra` (in order).

    Raises:
        `ValueError`: a folder in `extra` without `evaluation_results.csv` and `metrics.json`.
    """
    run = Path(run)
    found = [run] if is_evaluation(run) else []
    found += sorted(folder for folder in run.glob("eval-*") if is_evaluation(folder))
    for folder in map(Path, extra):
        if not is_evaluation(folder):
            raise ValueError(f"--eval {folder}: no evaluation_results.csv and metrics.json there (an evaluation "
                             "command's --out folder)")  # fmt: skip
        if folder.resolve() not in {f.resolve() for f in found}:
            found.append(folder)
    return found


def _normal(text: str) -> str:
    return " ".join(str(text).lower().split())


def item_scores(task: str, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> list[float]:
    """One score per row of `evaluation_results.csv`, as `SCORE_NOTES` describes for the evaluation's task."""
    if task == "vqa":
        from radtune.common.metrics.vqa import vqa_item_scores

        scores = []
        for row in rows:
            item = vqa_item_scores(row["prediction"], row.get("answer") or row["references"][0],
                                   row.get("answer_type") or "open")  # fmt: skip
            scores.append(item.get("strict/closed_accuracy", item.get("strict/open_recall", 0.0)))
        return scores
    if task == "captioning":
        from radtune.common.metrics.captioning import caption_item_scores

        scores, _ = caption_item_scores([row["prediction"] for row in rows], [row["references"] for row in rows])
        return [float(value) for value in scores["cider"]]
    if task == "zero-shot":
        classes = list(meta.get("classes") or [])
        scores = []
        for row in rows:
            predicted = {_normal(name) for name in row["prediction"].split("|") if name}
            true = {_normal(name) for name in row["references"] if name}
            right = sum((_normal(name) in predicted) == (_normal(name) in true) for name in classes)
            scores.append(right / len(classes) if classes else float(predicted == true))
        return scores
    return [float(_normal(row["prediction"]) in {_normal(ref) for ref in row["references"]}) for row in rows]


def is_correct(task: str, row: Mapping[str, Any], score: float) -> bool:
    if task == "captioning":
        return _normal(row["prediction"]) in {_normal(ref) for ref in row["references"]}
    return score >= 1.0 - 1e-9


@dataclass
class Evaluation:
    """One evaluation folder, read for the browser.

    Args:
        folder (`Path`): where it is.
        task (`str`): `metrics.json`'s `meta.task` (`vqa`, `captioning`, `zero-shot`, `retrieval`).
        report (`dict`): what `radtune.common.metrics.io.read_metrics` reads (`metrics`, `ci`, `meta`, …).
        rows (`list[dict]`): the results rows, each with `score` and `correct` added.
        images (`dict[str, object]`): row id → image source (what the dataset holds), where the split could be read.
        image_note (`str`, *optional*): why there are no images, when there are none.
    """

    folder: Path
    task: str
    report: dict
    rows: list[dict]
    images: dict[str, Any] = field(default_factory=dict)
    image_note: str | None = None

    @property
    def label(self) -> str:
        meta = self.report["meta"]
        return f"{self.folder.name} ({self.task}, {meta.get('split') or '?'} split, n={len(self.rows)})"


def _row_images(task: str, meta: Mapping[str, Any], image_column: str) -> dict[str, Any]:
    """Row id → the image the evaluator read for it, from the evaluated split (ids as each evaluator writes them)."""
    from radtune.common.datasets_io import load_dataset_any

    split = load_dataset_any(meta["dataset"], meta["split"])
    if task == "vqa":
        from radtune.common.vqa_evaluation import vqa_items

        return {item.id: item.image for item in vqa_items(split, image_column)}
    from datasets import Image

    column = image_column if image_column in split.column_names else "images"
    if isinstance(split.features.get(column), Image):
        split = split.cast_column(column, Image(decode=False))  # decoded only when shown
    names = [name for name in ("id", "image_id", "study_id") if name in split.column_names]
    out = {}
    for index, row in enumerate(split):
        value = row.get(column)
        if column == "images":
            value = value[0] if value else None
        keys = [str(row[name]) for name in names if row[name] not in (None, "")] or [str(index)]
        out.setdefault(keys[0], value)
    return out


def read_evaluation(folder: str | Path, image_column: str = "image") -> Evaluation:
    """Read an evaluation folder: its rows with their scores, and the images of its split when it can be read."""
    from radtune.common.metrics.io import read_metrics, read_results

    folder = Path(folder)
    report = read_metrics(folder)
    meta = report["meta"]
    task = meta.get("task") or "vqa"
    rows = [dict(row) for row in read_results(folder / "evaluation_results.csv")]
    for row, score in zip(rows, item_scores(task, rows, meta), strict=True):
        row["score"], row["correct"] = score, is_correct(task, row, score)
    evaluation = Evaluation(folder=folder, task=task, report=report, rows=rows)
    column = meta.get("image_column") or image_column
    if not meta.get("dataset") or not meta.get("split"):
        evaluation.image_note = "images unavailable: metrics.json names no dataset and split"
    else:
        try:
            evaluation.images = _row_images(task, meta, column)
        except (OSError, ValueError, KeyError) as error:
            evaluation.image_note = f"images unavailable: could not read {meta['dataset']} ({error})"
    return evaluation


def subgroup_choices(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """`field = value` choices of the subgroup filter, for the fields the rows carry."""
    from radtune.common.metrics.subgroups import group_value

    values = sorted({f"{name} = {value}" for row in rows for name in SUBGROUP_FIELDS
                     if (value := group_value(row, name)) is not None})  # fmt: skip
    return [ALL, *values]


def answer_type_choices(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [ALL, *sorted({str(row["answer_type"]).lower() for row in rows if row.get("answer_type")})]


def filter_rows(
    rows: Sequence[Mapping[str, Any]], correct: str = ALL, answer_type: str = ALL, subgroup: str = ALL,
    sort: str = SORT_CHOICES[0],
) -> list[Mapping[str, Any]]:  # fmt: skip
    """The rows a filter keeps, in the order `sort` asks (`SORT_CHOICES`; ties keep file order)."""
    from radtune.common.metrics.subgroups import group_value

    kept = list(rows)
    if correct != ALL:
        kept = [row for row in kept if row["correct"] == (correct == "correct")]
    if answer_type != ALL:
        kept = [row for row in kept if str(row.get("answer_type") or "").lower() == answer_type]
    if subgroup != ALL:
        name, _, value = subgroup.partition(" = ")
        kept = [row for row in kept if group_value(row, name) == value]
    if sort == SORT_CHOICES[1]:
        kept.sort(key=lambda row: row["score"])
    elif sort == SORT_CHOICES[2]:
        kept.sort(key=lambda row: -row["score"])
    return kept


def table(task: str, rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list]]:
    """The browser's table: headers and one list of cells per row."""
    columns = (["question"] if task == "vqa" else []) + ["prediction", "reference", "score", "correct"]
    columns += [name for name in ("answer_type", *SUBGROUP_FIELDS) if any(row.get(name) for row in rows)] + ["id"]
    cells = []
    for row in rows:
        values = {**row, "reference": " | ".join(row["references"]), "score": round(float(row["score"]), 4),
                  "correct": "yes" if row["correct"] else "no"}  # fmt: skip
        cells.append([values.get(name) or "" if name != "score" else values["score"] for name in columns])
    return columns, cells


def _number(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


BASELINE_PREFIXES = ("majority_baseline/", "constant_baseline/", "chance/")
# The evaluations that can check whether the model reads the image (generating tasks, blank and noise images).
ABLATION_TASKS = ("vqa", "captioning")


def headline_markdown(evaluation: Evaluation, max_metrics: int = 8) -> str:
    """The image-ablation verdict, then the metrics that have a 95% interval (at most `max_metrics`) beside their
    baseline (majority answer, constant caption or chance, where the evaluation scored one), and how items are
    scored."""
    from radtune.common.metrics.bootstrap import ablation_message

    report, meta = evaluation.report, evaluation.report["meta"]
    metrics, ci = report["metrics"], report.get("ci") or {}
    names = [name for name in metrics if name in ci] or [
        name for name in metrics if not name.startswith(("ablation/", *BASELINE_PREFIXES))]  # fmt: skip
    verdict = meta.get("image_ablation")
    lines = [f"### {evaluation.folder.name}: {evaluation.task} on `{meta.get('dataset') or '?'}` "
             f"({meta.get('split') or '?'} split, n = {meta.get('n') or len(evaluation.rows)})", ""]  # fmt: skip
    if verdict:
        lines += [f"**Image ablation:** {ablation_message(verdict)}", ""]
    elif evaluation.task in ABLATION_TASKS:
        lines += ["**Image ablation:** not run for this evaluation (evaluate again without `--no-ablation` to see "
                  "whether the model reads the image).", ""]  # fmt: skip
    lines += ["| metric | value | 95% interval | baseline |", "|---|---|---|---|"]
    for name in names[:max_metrics]:
        interval = f"[{_number(ci[name][0])}, {_number(ci[name][1])}]" if name in ci else ""
        # `majority_baseline/strict/closed_accuracy` beside `strict/closed_accuracy`, `chance/recall@1` beside
        # `i2t/recall@1`
        baseline = next((f"{_number(metrics[key])} ({prefix.rstrip('/').replace('_', ' ')})"
                         for prefix in BASELINE_PREFIXES for key in (prefix + name, prefix + name.split("/")[-1])
                         if key in metrics), "")  # fmt: skip
        lines.append(f"| {name} | {_number(metrics[name])} | {interval} | {baseline} |")
    lines += ["", f"*{SCORE_NOTES.get(evaluation.task, '')}*"]
    if evaluation.image_note:
        lines += ["", f"*{evaluation.image_note}*"]
    return "\n".join(lines)


def gallery(evaluation: Evaluation, rows: Sequence[Mapping[str, Any]], limit: int = 48) -> list[tuple[Any, str]]:
    """(PIL image, caption) of the first `limit` shown rows that have an image."""
    from radtune.common.images import ImageLoadError, load_image

    out = []
    for row in rows:
        source = evaluation.images.get(row["id"]) or evaluation.images.get(row.get("image_id") or "")
        if source is None:
            continue
        if isinstance(source, dict):  # datasets' undecoded Image value
            source = source.get("bytes") or source.get("path")
        try:
            image = load_image(source)
        except (ImageLoadError, OSError):
            continue
        asked = f"{row['question']} → " if row.get("question") else ""
        mark = "✓" if row["correct"] else "✗"
        out.append((image, f"{mark} {asked}{row['prediction']} (ref: {' | '.join(row['references'])}) [{row['id']}]"))
        if len(out) >= limit:
            break
    return out
