"""`radtune eval`: score prediction files, label reports, and gather runs into one report.

Every command reads its documented format or an `evaluation_results.csv` written by radtune, checks each row
and stops with an error naming the row (no traceback) when something is missing or of the wrong type.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

OUT_OPTION_HELP = "Write metrics.json here (the metrics plus task/model/dataset/split/n and radtune versions)."


def _fail(message: str) -> click.ClickException:
    return click.ClickException(message)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .json list, a .jsonl file or an evaluation_results .csv; row numbers in errors start at 1."""
    from radtune.common.metrics.io import EvaluationFileError, read_results

    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            return read_results(path)
        except EvaluationFileError as error:
            raise _fail(str(error)) from error
    text = path.read_text(encoding="utf-8")
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise _fail(f"{path}: line {number} is not valid JSON ({error.msg})") from error
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            raise _fail(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
        if not isinstance(rows, list):
            raise _fail(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise _fail(f"{path}: row {number}: expected an object, got {type(row).__name__}")
    if not rows:
        raise _fail(f"{path}: no rows")
    return rows


def _where(path: Path, number: int, row: dict) -> str:
    shown = f" (id {row['id']!r})" if "id" in row else ""
    return f"{path}: row {number}{shown}"


def _require(path: Path, rows: list[dict], spec: dict[str, tuple[type, ...]]) -> None:
    seen = set()
    for number, row in enumerate(rows, start=1):
        missing = [key for key in spec if key not in row]
        if missing:
            raise _fail(f"{_where(path, number, row)}: missing {', '.join(repr(k) for k in missing)}")
        for key, types in spec.items():
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, types):
                wanted = " or ".join(t.__name__ for t in types)
                raise _fail(f"{_where(path, number, row)}: {key!r} must be {wanted}, got {type(value).__name__}")
        if row["id"] in seen:
            raise _fail(f"{_where(path, number, row)}: duplicate id")
        seen.add(row["id"])


def _print_table(metrics: dict[str, float], ci: dict[str, list[float]] | None = None) -> None:
    width = max(len(name) for name in metrics)
    click.echo(f"{'metric'.ljust(width)}  value [95% CI]" if ci else f"{'metric'.ljust(width)}  value")
    for name, value in metrics.items():
        shown = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
        if ci and name in ci:
            shown += f" [{ci[name][0]:.4f}, {ci[name][1]:.4f}]"
        click.echo(f"{name.ljust(width)}  {shown}")


def _meta_options(command):
    for option in reversed(
        [
            click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help=OUT_OPTION_HELP),
            click.option("--model", help="Model name recorded in metrics.json."),
            click.option("--dataset", help="Dataset name recorded in metrics.json."),
            click.option("--split", help="Split recorded in metrics.json."),
        ]
    ):
        command = option(command)
    return command


@click.group("eval")
def eval_group() -> None:
    """Score predictions, label reports and compare runs.

    \b
    Examples:
      radtune eval captions predictions.json --out metrics.json
      radtune eval vqa answers.jsonl --out metrics.json
      radtune eval label reports.csv --text-column report --out labels.csv
      radtune eval report runs/blip runs/vit-gpt2 --out report.md
      radtune eval compare runs/llava-base/eval-test runs/llava-lora/eval-test --out compare.json
    """


@eval_group.command("captions")
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_meta_options
def captions(predictions: Path, out: Path | None, model: str | None, dataset: str | None, split: str | None) -> None:
    """Caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D) of PREDICTIONS.

    PREDICTIONS is a JSON list of {"id", "prediction", "references": [...]} or an evaluation_results.csv.
    The numbers equal pycocoevalcap's (PTB tokenizer; Java needed for METEOR and the tokenizer).

    \b
    Example:
      radtune eval captions predictions.json --out runs/blip/metrics.json
    """
    from radtune.common.metrics.captioning import caption_metrics
    from radtune.common.metrics.io import write_metrics

    rows = _read_rows(predictions)
    _require(predictions, rows, {"id": (str, int), "prediction": (str,), "references": (list,)})
    for number, row in enumerate(rows, start=1):
        refs = row["references"]
        if not refs or not all(isinstance(r, str) for r in refs):
            raise _fail(f"{_where(predictions, number, row)}: 'references' must be a non-empty list of strings")
    try:
        result = caption_metrics([r["prediction"] for r in rows], [r["references"] for r in rows])
    except (ValueError, TypeError, RuntimeError) as error:
        raise _fail(str(error)) from error
    _print_table(result.metrics)
    click.echo(f"tokenizer: {result.tokenizer}")
    for name, reason in result.unavailable.items():
        click.echo(f"{name}: unavailable ({reason})")
    if out:
        extra = {"tokenizer": result.tokenizer, "unavailable": result.unavailable}
        path = write_metrics(out, result.metrics, task="captioning", model=model, dataset=dataset, split=split,
                             n=result.n, extra_meta=extra)  # fmt: skip
        click.echo(f"wrote {path}")


@eval_group.command("vqa")
@click.argument("predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="LLaVA-Med candidate answer list (JSON list) for llava_med/open_accuracy.")  # fmt: skip
@click.option("--n-resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (0: none).")  # fmt: skip
@_meta_options
def vqa(
    predictions: Path,
    candidates: Path | None,
    n_resamples: int,
    out: Path | None,
    model: str | None,
    dataset: str | None,
    split: str | None,
) -> None:
    """VQA metrics (strict and llava_med families, closed/open/overall) of PREDICTIONS, with 95% intervals.

    PREDICTIONS is JSON lines (or a JSON list) of {"id", "question", "prediction", "answer", "answer_type"}
    with answer_type "closed" or "open", or an evaluation_results.csv with answer and answer_type columns.
    Rows that also carry `category`, `view` or `modality` get per-subgroup scores with bootstrap intervals
    (printed, and under `subgroups` in metrics.json). Scored by the same code as `radtune vqa evaluate`.

    \b
    Example:
      radtune eval vqa answers.jsonl --out runs/llava/metrics.json
    """
    from radtune.common.metrics.io import write_metrics
    from radtune.common.metrics.subgroups import subgroup_table
    from radtune.common.metrics.vqa import normalize_answer_type
    from radtune.common.vqa_evaluation import VQAItem, score_vqa

    rows = _read_rows(predictions)
    if predictions.suffix.lower() == ".csv":
        for row in rows:
            if not row.get("answer") and row["references"]:
                row["answer"] = row["references"][0]
    _require(predictions, rows, {"id": (str, int), "prediction": (str,), "answer": (str, int, float),
                                 "answer_type": (str,)})  # fmt: skip
    items = []
    for number, row in enumerate(rows, start=1):
        try:
            answer_type = normalize_answer_type(row["answer_type"])
        except ValueError as error:
            raise _fail(f"{_where(predictions, number, row)}: {error}") from error
        fields = {name: str(row[name]) if row.get(name) not in (None, "") else None
                  for name in ("category", "view", "modality", "image_id")}  # fmt: skip
        items.append(VQAItem(str(row["id"]), None, str(row.get("question") or ""), str(row["answer"]), answer_type,
                             **fields))  # fmt: skip
    candidate_list = None
    if candidates:
        candidate_list = json.loads(candidates.read_text(encoding="utf-8"))
        if isinstance(candidate_list, dict) and "0" in candidate_list:  # LLaVA-Med's candidate.json layout
            candidate_list = candidate_list["0"]
        if not isinstance(candidate_list, list) or not candidate_list:
            raise _fail(f"{candidates}: expected a non-empty JSON list of candidate answers")
    report = score_vqa(items, [row["prediction"] for row in rows], candidates=candidate_list,
                       n_resamples=max(n_resamples, 1))  # fmt: skip
    ci = report.ci if n_resamples else {}
    _print_table(report.metrics, ci)
    if report.subgroups:
        click.echo(subgroup_table(report.subgroups))
    if out:
        path = write_metrics(out, report.metrics, task="vqa", model=model, dataset=dataset, split=split,
                             n=len(rows), ci=ci, subgroups=report.subgroups)  # fmt: skip
        click.echo(f"wrote {path}")


@eval_group.command("compare")
@click.argument("run_a", type=click.Path(exists=True, path_type=Path))
@click.argument("run_b", type=click.Path(exists=True, path_type=Path))
@click.option("--metric", "metric_names", multiple=True,
              help="Compare only this metric (repeatable); default: every per-item metric of the task.")  # fmt: skip
@click.option("--n-resamples", type=int, default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the comparison as JSON here.")
def compare(run_a: Path, run_b: Path, metric_names: tuple[str, ...], n_resamples: int, seed: int,
            out: Path | None) -> None:  # fmt: skip
    """Paired bootstrap of the difference B − A between two evaluation runs on the same items.

    RUN_A and RUN_B are evaluation output folders (or their evaluation_results.csv) of the same task (vqa or
    captioning), matched item by item on `id`. For each metric that is a mean of per-item scores (VQA: strict and
    llava_med closed accuracy, open recall, strict accuracy; captioning: CIDEr-D, ROUGE-L, sentence BLEU-4) it
    prints A, B, B − A and its 95% interval, and whether the interval excludes 0 (a real difference).

    \b
    Example:
      radtune eval compare runs/base/eval-test runs/lora/eval-test --metric strict/closed_accuracy
    """
    from radtune.common.metrics.compare import compare_runs, comparison_table
    from radtune.common.metrics.io import EvaluationFileError

    if n_resamples < 1:
        raise _fail(f"--n-resamples must be positive, got {n_resamples}")
    try:
        comparison = compare_runs(run_a, run_b, metrics=metric_names or None, n_resamples=n_resamples, seed=seed)
    except (EvaluationFileError, ValueError, RuntimeError) as error:
        raise _fail(str(error)) from error
    if not comparison["metrics"]:
        raise _fail("no metric has items scored in both runs")
    click.echo(f"A: {run_a}\nB: {run_b}\n{comparison['task']}, {comparison['n']} items, "
               f"{n_resamples} paired bootstrap resamples (seed {seed})")  # fmt: skip
    click.echo(comparison_table(comparison))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        # NaN (an interval over fewer than two items) is written as null.
        body = json.dumps(_nan_to_none(comparison), indent=2, ensure_ascii=False, allow_nan=False)
        out.write_text(body + "\n", encoding="utf-8")
        click.echo(f"wrote {out}")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


@eval_group.command("label")
@click.argument("reports", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text-column", required=True, help="The column holding the report text.")
@click.option("--id-column", default="id", show_default=True, help="Copied to the output when present.")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the labels CSV here (default: stdout)."
)
def label(reports: Path, text_column: str, id_column: str, out: Path | None) -> None:
    """Label each report in the CSV REPORTS with the 14 CheXpert observations (rule-based labeler).

    The output has the id column (when present) and one column per observation holding 1.0 (positive),
    0.0 (negative), -1.0 (uncertain) or blank (not mentioned), like MIMIC-CXR's chexpert.csv.

    \b
    Example:
      radtune eval label reports.csv --text-column report --out labels.csv
    """
    from tqdm import tqdm

    from radtune.common.labeler import OBSERVATIONS, label_report

    limit = csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # whole reports in one field; the limit is global
    try:
        with reports.open(encoding="utf-8", newline="") as file:
            reader = csv.DictReader(file)
            columns = reader.fieldnames or []
            if text_column not in columns:
                raise _fail(f"{reports}: no column {text_column!r} (columns: {', '.join(columns) or 'none'})")
            rows = list(reader)
    finally:
        csv.field_size_limit(limit)
    header = ([id_column] if id_column in columns else []) + list(OBSERVATIONS)
    counts = {name: {1.0: 0, 0.0: 0, -1.0: 0} for name in OBSERVATIONS}
    handle = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        writer = csv.writer(handle)
        writer.writerow(header)
        progress = tqdm(rows, desc="labelling reports", unit="report", disable=len(rows) < 1000)
        for number, row in enumerate(progress, start=1):
            text = row.get(text_column)
            if text is None or None in row:
                raise _fail(f"{reports}: row {number}: expected {len(columns)} cells")
            labels = label_report(text)
            cells = [row[id_column]] if id_column in columns else []
            for name in OBSERVATIONS:
                value = labels[name]
                cells.append("" if value is None else f"{value:.1f}")
                if value is not None:
                    counts[name][value] += 1
            writer.writerow(cells)
    finally:
        if out:
            handle.close()
    if out:
        click.echo(f"labelled {len(rows)} reports → {out}")
        width = max(len(n) for n in OBSERVATIONS)
        click.echo(f"{'observation'.ljust(width)}  positive  uncertain  negative")
        for name in OBSERVATIONS:
            c = counts[name]
            click.echo(f"{name.ljust(width)}  {c[1.0]:>8}  {c[-1.0]:>9}  {c[0.0]:>8}")


@eval_group.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.md"),
              show_default=True, help="Markdown table; the CSV and the PNG go beside it.")  # fmt: skip
def report(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Gather the evaluation runs RUN_DIRS into one report: markdown, CSV and PNG.

    Each RUN_DIR is an evaluation folder (or its metrics.json), or a training run whose subfolders hold them.
    The markdown shows each run's headline metric (VQA: strict closed accuracy, or open recall without closed
    items; captioning: CIDEr-D; zero-shot: macro AUC; retrieval: image→text Recall@5) with its interval, n,
    model, dataset, split, baseline and image-ablation verdict; the CSV holds every metric of every run, one row
    each, with ci_low/ci_high; the PNG has one panel per task, the runs as bars with interval whiskers.

    \b
    Example:
      radtune eval report runs/blip/eval-test runs/vit-gpt2/eval-test --out report.md   # also report.csv, .png
    """
    from radtune.common.eval_report import find_runs, markdown_table, write_report
    from radtune.common.metrics.io import EvaluationFileError

    try:
        runs = find_runs(list(run_dirs))
    except (EvaluationFileError, FileNotFoundError) as error:
        raise _fail(str(error)) from error
    paths = write_report(runs, out)
    click.echo("\n".join(markdown_table(runs)))
    click.echo(f"wrote {', '.join(map(str, paths))}")
