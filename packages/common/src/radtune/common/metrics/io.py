"""The one writer (and the readers) of radtune's evaluation outputs; every task uses these.

`metrics.json`::

    {"metrics": {"bleu_4": 0.12, ...},             # name -> float, null = undefined (NaN)
     "ci": {"bleu_4": [0.10, 0.14], ...},          # optional confidence intervals
     "meta": {"task": ..., "model": ..., "dataset": ..., "split": ..., "n": ..., "seed": ...,
              "radtune_versions": {"radtune-common": "0.1.0", ...}, ...},
     "subgroups": {"strict/closed_accuracy":                     # optional, see metrics.subgroups
                   {"view": {"PA": {"n": 40, "metric": 0.8, "ci": [0.68, 0.9]}, ...}, ...}, ...}}

`evaluation_results.csv`: one row per example, columns `id, prediction, references` (`references` is a JSON
list of strings) followed by whichever task columns the rows carry, in this order: `question, answer,
answer_type, category, image_id, view, modality, labels` (`labels` is JSON). Any other column is an error, so
the format stays fixed.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
RESULTS_FILE = "evaluation_results.csv"
BASE_COLUMNS = ("id", "prediction", "references")
TASK_COLUMNS = ("question", "answer", "answer_type", "category", "image_id", "view", "modality", "labels")
META_KEYS = ("task", "model", "dataset", "split", "n", "seed")


class EvaluationFileError(ValueError):
    """A malformed evaluation input or output file; the message names the file and the row."""


def _json_float(value: Any, name: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"metric {name!r} must be a number, got {type(value).__name__}")
    value = float(value)
    return None if math.isnan(value) else value


def write_metrics(
    path: str | Path,
    metrics: Mapping[str, float],
    *,
    task: str,
    model: str | None = None,
    dataset: str | None = None,
    split: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    ci: Mapping[str, Sequence[float]] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    subgroups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]] | None = None,
) -> Path:
    """Write `metrics.json` (a folder path gets `<folder>/metrics.json`). NaN is written as `null`.

    Args:
        path (`str` or `Path`): the file, or a folder to write `metrics.json` into.
        metrics (`Mapping[str, float]`): metric name → value.
        task, model, dataset, split, n, seed: the `meta` fields (`radtune_versions` is added).
        ci (`Mapping[str, [lo, hi]]`, *optional*): confidence intervals of some metrics.
        extra_meta (`Mapping`, *optional*): more JSON-serialisable `meta` fields (e.g. `unavailable`, `tokenizer`).
        subgroups (`Mapping`, *optional*): per-subgroup scores, `{metric: {field: {value: {"n", "metric", "ci"}}}}`
            as `radtune.common.metrics.subgroups.subgroup_metrics` returns them per metric.
    """
    from radtune.common.cli import radtune_distributions

    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / METRICS_FILE
    body: dict[str, Any] = {"metrics": {str(k): _json_float(v, k) for k, v in metrics.items()}}
    if ci:
        intervals = {}
        for name, bounds in ci.items():
            if len(bounds) != 2:
                raise ValueError(f"ci[{name!r}] must be [lo, hi], got {bounds!r}")
            intervals[str(name)] = [_json_float(bounds[0], name), _json_float(bounds[1], name)]
        body["ci"] = intervals
    meta = {"task": task, "model": model, "dataset": dataset, "split": split, "n": n, "seed": seed}
    meta["radtune_versions"] = radtune_distributions()
    meta.update(extra_meta or {})
    from radtune.common.credentialed import dataset_marks, run_is_credentialed

    if dataset_marks(dataset) or (model is not None and run_is_credentialed(model)):
        meta["credentialed"] = True  # results of (or from a model trained on) credentialed data: see hub pushes
    body["meta"] = meta
    if subgroups:
        body["subgroups"] = _subgroups_json(subgroups)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _subgroups_json(subgroups: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> dict:
    out: dict[str, dict] = {}
    for metric, fields in subgroups.items():
        out[str(metric)] = {
            str(field): {
                str(value): {
                    "n": int(group["n"]),
                    "metric": _json_float(group["metric"], metric),
                    "ci": [_json_float(bound, metric) for bound in group["ci"]],
                }
                for value, group in groups.items()
            }
            for field, groups in fields.items()
        }
    return out


def _subgroups_from_json(path: Path, subgroups: Any) -> dict:
    def nan(value):
        return math.nan if value is None else float(value)

    try:
        return {
            metric: {
                field: {
                    value: {"n": int(group["n"]), "metric": nan(group["metric"]), "ci": [nan(b) for b in group["ci"]]}
                    for value, group in groups.items()
                }
                for field, groups in fields.items()
            }
            for metric, fields in subgroups.items()
        }
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise EvaluationFileError(
            f"{path}: 'subgroups' must map metric → field → value → {{n, metric, ci}} ({error!r})"
        ) from error


def read_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check a `metrics.json` (a folder path reads `<folder>/metrics.json`); `null` comes back as NaN.

    Returns `{"metrics", "ci", "meta"}`, plus `"subgroups"` when the file has them.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise EvaluationFileError(f"{path}: no such file") from error
    except json.JSONDecodeError as error:
        raise EvaluationFileError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(body, dict) or not isinstance(body.get("metrics"), dict):
        raise EvaluationFileError(f"{path}: expected an object with a 'metrics' object")
    metrics = {}
    for name, value in body["metrics"].items():
        if value is None:
            value = math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise EvaluationFileError(f"{path}: metric {name!r} must be a number or null, got {value!r}")
        metrics[name] = float(value)
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise EvaluationFileError(f"{path}: 'meta' must be an object")
    ci = body.get("ci", {})
    if not isinstance(ci, dict) or any(not isinstance(v, list) or len(v) != 2 for v in ci.values()):
        raise EvaluationFileError(f"{path}: 'ci' must map metric names to [lo, hi]")
    out = {"metrics": metrics, "ci": ci, "meta": meta}
    if "subgroups" in body:
        out["subgroups"] = _subgroups_from_json(path, body["subgroups"])
    return out


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write `evaluation_results.csv` (a folder path gets `<folder>/evaluation_results.csv`).

    Each row needs `id`, `prediction` and `references` (a list of strings, or one string); `question`,
    `answer`, `answer_type`, `category`, `image_id`, `view`, `modality` and `labels` are written when any row has
    them. `labels` and `references` are stored as JSON.
    """
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / RESULTS_FILE
    rows = list(rows)
    allowed = set(BASE_COLUMNS) | set(TASK_COLUMNS)
    present = set()
    for i, row in enumerate(rows):
        missing = [c for c in BASE_COLUMNS if c not in row]
        if missing:
            raise EvaluationFileError(f"row {i}: missing {', '.join(missing)}")
        unknown = set(row) - allowed
        if unknown:
            raise EvaluationFileError(f"row {i}: unknown columns {sorted(unknown)}; allowed: {sorted(allowed)}")
        present |= set(row)
    columns = list(BASE_COLUMNS) + [c for c in TASK_COLUMNS if c in present]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            references = row["references"]
            references = [references] if isinstance(references, str) else list(references)
            cells = []
            for column in columns:
                value = row.get(column)
                if column == "references":
                    value = json.dumps(references, ensure_ascii=False)
                elif column == "labels" and value is not None:
                    value = json.dumps(value, ensure_ascii=False)
                cells.append("" if value is None else value)
            writer.writerow(cells)
    return path


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Read and check an `evaluation_results.csv`; `references` (and `labels`) come back parsed from JSON.

    Raises `EvaluationFileError` naming the file and the row (1 = the first data row) for a missing column,
    an unknown column, a duplicate id, or a `references` cell that is not a JSON list of strings.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        file = path.open(encoding="utf-8", newline="")
    except FileNotFoundError as error:
        raise EvaluationFileError(f"{path}: no such file") from error
    with file:
        reader = csv.DictReader(file)
        columns = reader.fieldnames or []
        missing = [c for c in BASE_COLUMNS if c not in columns]
        if missing:
            raise EvaluationFileError(f"{path}: missing columns {', '.join(missing)} (has: {', '.join(columns)})")
        unknown = [c for c in columns if c not in BASE_COLUMNS + TASK_COLUMNS]
        if unknown:
            raise EvaluationFileError(f"{path}: unknown columns {', '.join(unknown)}")
        rows, seen = [], set()
        for number, row in enumerate(reader, start=1):
            if None in row or any(v is None for v in row.values()):
                raise EvaluationFileError(f"{path}: row {number}: expected {len(columns)} cells")
            if row["id"] in seen:
                raise EvaluationFileError(f"{path}: row {number}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            try:
                references = json.loads(row["references"])
            except json.JSONDecodeError as error:
                raise EvaluationFileError(
                    f"{path}: row {number} (id {row['id']!r}): references is not JSON"
                ) from error
            if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
                raise EvaluationFileError(
                    f"{path}: row {number} (id {row['id']!r}): references must be a JSON list of strings"
                )
            row["references"] = references
            if row.get("labels"):
                try:
                    row["labels"] = json.loads(row["labels"])
                except json.JSONDecodeError as error:
                    raise EvaluationFileError(
                        f"{path}: row {number} (id {row['id']!r}): labels is not JSON"
                    ) from error
            rows.append(row)
    return rows
