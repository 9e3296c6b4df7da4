"""`radtune eval report`: gather evaluation runs into a table a person reads, a long CSV and small-multiple plots.

The markdown shows one headline metric per run (its task's, see `HEADLINE_METRICS`) with its interval, the run's
model/dataset/split/n, the recorded baseline and the image-ablation verdict where there are any. The CSV keeps
every metric of every run, one row each (`run, task, model, dataset, split, n, metric, value, ci_low, ci_high,
headline`). The PNG has one small panel per task and headline metric, the runs as bars with interval whiskers.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each task's headline, the first of these the run holds with a value (VQA: closed accuracy, else open recall).
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "vqa": ("strict/closed_accuracy", "strict/open_recall"),
    "captioning": ("cider",),
    "zero-shot": ("auc_macro",),
    "retrieval": ("i2t/recall@5",),
}
# Where a run records the bar its headline must clear, and what that bar is.
BASELINE_PREFIXES = (("majority_baseline/", "majority answer"), ("constant_baseline/", "constant caption"),
                     ("chance/", "chance"))  # fmt: skip
CSV_COLUMNS = ("run", "task", "model", "dataset", "split", "n", "metric", "value", "ci_low", "ci_high", "headline")
MAX_PNG_WIDTH = 2400
_PANEL_WIDTH_IN, _DPI = 5.5, 110  # three panels a row: 1815 px


@dataclass
class Run:
    """One evaluation run: its name in the report, where its metrics.json is, and the file's contents."""

    name: str
    path: Path
    body: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.body["meta"].get("task") or "")


def _is_count(name: str) -> bool:
    return name.split("/")[-1].startswith("n_") or name.endswith("_counted")


def _is_secondary(name: str) -> bool:
    return name.startswith(("ablation/", *(prefix for prefix, _ in BASELINE_PREFIXES)))


def _defined(value: Any) -> bool:
    return isinstance(value, int | float) and not math.isnan(value)


def headline_metric(body: dict[str, Any]) -> str | None:
    """The metric a report shows for a run, from its `metrics.json` as `read_metrics` returns it.

    The metric its image-ablation verdict was decided on when it has one; else its task's entry in
    `HEADLINE_METRICS` (the first there with a value); for another task, the first metric with an interval, else
    the first that is neither a count nor a baseline/ablation. `None` for a run without metrics.
    """
    metrics = body["metrics"]
    verdict = body["meta"].get("image_ablation")
    if isinstance(verdict, dict) and verdict.get("metric") in metrics:
        return verdict["metric"]
    known = [m for m in HEADLINE_METRICS.get(body["meta"].get("task"), ()) if m in metrics]
    if known:
        return next((m for m in known if _defined(metrics[m])), known[0])
    scores = [m for m in metrics if not _is_count(m) and not _is_secondary(m)]
    with_ci = [m for m in scores if m in body.get("ci", {})]
    return (with_ci or scores or list(metrics) or [None])[0]


def baseline_of(body: dict[str, Any], metric: str) -> tuple[float, str] | None:
    """The recorded baseline of `metric` in a run (`majority_baseline/…`, `constant_baseline/…`, `chance/…`;
    0.5 for a ROC AUC) and what it is, or `None`."""
    # Retrieval records one chance level for both directions: `chance/recall@5` for `i2t/recall@5`.
    for prefix, what in BASELINE_PREFIXES:
        for name in (metric, metric.split("/", 1)[-1]):
            value = body["metrics"].get(prefix + name)
            if _defined(value):
                return value, what
    if metric.startswith("auc"):
        return 0.5, "chance"
    return None


def find_runs(paths: list[Path]) -> list[Run]:
    """The runs in `paths`: a `metrics.json`, a folder holding one, or a folder (a training run) whose direct
    subfolders hold them (its `eval-*` folders), each such subfolder a run named `<folder>/<subfolder>`.

    Raises:
        `FileNotFoundError` naming a path with no metrics.json in it or in its subfolders;
        `radtune.common.metrics.io.EvaluationFileError` for a malformed metrics.json.
    """
    from radtune.common.metrics.io import METRICS_FILE, read_metrics

    found: list[tuple[Path, str, Path]] = []  # (given path, name, metrics.json)
    for path in paths:
        if path.is_file():
            found.append((path, path.parent.name or str(path.parent), path))
        elif (path / METRICS_FILE).is_file():
            found.append((path, path.name or str(path), path / METRICS_FILE))
        else:
            inner = sorted(path.glob(f"*/{METRICS_FILE}"))
            if not inner:
                raise FileNotFoundError(f"{path}: no {METRICS_FILE} in it or in its subfolders; evaluate the "
                                        "run first (its evaluate command writes one)")  # fmt: skip
            found += [(path, f"{path.name or path}/{file.parent.name}", file) for file in inner]
    names = [name for _, name, _ in found]
    if len(set(names)) < len(names):
        names = [str(file.parent) for _, _, file in found]
    return [Run(name, file, read_metrics(file)) for name, (_, _, file) in zip(names, found, strict=True)]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if _defined(value) else ""


def _interval(ci: Any) -> str:
    if not ci or not all(_defined(bound) for bound in ci):
        return ""
    return f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def _verdict_cell(verdict: dict | None) -> str:
    if not verdict:
        return ""
    if verdict["ignores_image"]:
        return f"IGNORES THE IMAGE ({', '.join(verdict['overlapping'])} within the interval)"
    return f"uses the image ({verdict['gap']:+.4f})"


def _meta_cells(run: Run, short_paths: bool = False) -> list[str]:
    meta = run.body["meta"]
    cells = ["" if meta.get(key) is None else str(meta[key]) for key in ("task", "model", "dataset", "split", "n")]
    return [_relative(cell) for cell in cells] if short_paths else cells


def _relative(value: str) -> str:
    """An absolute path under the working directory, shown relative to it (`runs/demo/llava`)."""
    path = Path(value)
    if not path.is_absolute():
        return value
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return value


def by_task(runs: list[Run]) -> list[Run]:
    """The runs grouped by task, tasks in the order they first appear, runs in the given order within a task."""
    order = list(dict.fromkeys(run.task for run in runs))
    return sorted(runs, key=lambda run: order.index(run.task))


def markdown_table(runs: list[Run]) -> list[str]:
    """The report's table: one row per run with its headline metric; the baseline and image-ablation columns only
    when a run has one. Model and dataset paths under the working directory are shown relative to it."""
    baselines = {run.name: baseline_of(run.body, headline_metric(run.body) or "") for run in runs}
    with_baseline = any(baselines.values())
    ablated = any(run.body["meta"].get("image_ablation") for run in runs)
    header = ["run", "task", "model", "dataset", "split", "n", "metric", "value", "95% interval"]
    header += ["baseline"] * with_baseline + ["image ablation"] * ablated
    rows = []
    for run in by_task(runs):
        metric = headline_metric(run.body)
        value = run.body["metrics"].get(metric) if metric else None
        row = [run.name, *_meta_cells(run, short_paths=True), metric or "", _fmt(value) or "n/a",
               _interval(run.body.get("ci", {}).get(metric))]  # fmt: skip
        if with_baseline:
            baseline = baselines[run.name]
            row.append(f"{baseline[0]:.4f} ({baseline[1]})" if baseline else "")
        if ablated:
            row.append(_verdict_cell(run.body["meta"].get("image_ablation")))
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def long_rows(runs: list[Run]) -> list[list[str]]:
    """Every metric of every run, one row each, under `CSV_COLUMNS` (values in full precision, blank = undefined)."""
    rows = []
    for run in runs:
        headline, ci = headline_metric(run.body), run.body.get("ci", {})
        for metric, value in run.body["metrics"].items():
            bounds = ci.get(metric) or (None, None)
            cells = [f"{v:.10g}" if _defined(v) else "" for v in (value, *bounds)]
            rows.append([run.name, *_meta_cells(run), metric, *cells, "true" if metric == headline else "false"])
    return rows


def plot_headlines(runs: list[Run], path: Path) -> Path:
    """Small multiples: one panel per task and headline metric, the runs as horizontal bars with their interval
    as whiskers (a run that ignores the image in red) and their baseline as a dashed line, never wider than
    `MAX_PNG_WIDTH` pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels: dict[tuple[str, str], list[Run]] = {}
    for run in by_task(runs):
        panels.setdefault((run.task, headline_metric(run.body) or ""), []).append(run)
    n_cols = 2 if len(panels) == 4 else min(3, len(panels))
    n_rows = math.ceil(len(panels) / n_cols)
    keys = list(panels)
    row_heights = [
        max(1.4 + 0.38 * len(panels[k]) for k in keys[r * n_cols : (r + 1) * n_cols]) for r in range(n_rows)
    ]
    width_in = min(n_cols * _PANEL_WIDTH_IN, MAX_PNG_WIDTH / _DPI)
    figure, axes = plt.subplots(n_rows, n_cols, figsize=(width_in, sum(row_heights) + 0.4), squeeze=False,
                                gridspec_kw={"height_ratios": row_heights})  # fmt: skip
    for axis, (task, metric) in zip(axes.flat, keys, strict=False):
        members = panels[(task, metric)]
        values = [run.body["metrics"].get(metric, math.nan) for run in members]
        bounds = [run.body.get("ci", {}).get(metric) or (None, None) for run in members]
        low = [v - b[0] if _defined(v) and _defined(b[0]) else 0.0 for v, b in zip(values, bounds, strict=True)]
        high = [b[1] - v if _defined(v) and _defined(b[1]) else 0.0 for v, b in zip(values, bounds, strict=True)]
        colors = ["tab:red" if (run.body["meta"].get("image_ablation") or {}).get("ignores_image") else "tab:blue"
                  for run in members]  # fmt: skip
        positions = list(range(len(members)))[::-1]  # the first run on top
        shown = [v if _defined(v) else 0.0 for v in values]
        axis.barh(positions, shown, color=colors, alpha=0.8, height=0.6)
        whiskers = [i for i, b in enumerate(bounds) if _defined(values[i]) and _defined(b[0]) and _defined(b[1])]
        if whiskers:
            axis.errorbar([shown[i] for i in whiskers], [positions[i] for i in whiskers], fmt="none", ecolor="black",
                          xerr=[[low[i] for i in whiskers], [high[i] for i in whiskers]], capsize=3)  # fmt: skip
        top = max([1.0] + [v + h for v, h in zip(shown, high, strict=True)])
        for y, run in zip(positions, members, strict=True):
            baseline = baseline_of(run.body, metric)
            if baseline:
                axis.plot([baseline[0]] * 2, [y - 0.4, y + 0.4], color="black", linestyle="--", linewidth=1.2)
                top = max(top, baseline[0])
        for y, value, extra in zip(positions, values, high, strict=True):
            text = f"{value:.3f}" if _defined(value) else "n/a"
            axis.text((value if _defined(value) else 0.0) + extra + top * 0.02, y, text, va="center", fontsize=8)
        axis.set_xlim(0, top * 1.2)
        axis.set_yticks(positions)
        axis.set_yticklabels([_short(run.name) for run in members], fontsize=8)
        axis.set_title(f"{task or 'unknown task'}: {metric}", fontsize=9)
        axis.tick_params(axis="x", labelsize=8)
        axis.grid(axis="x", alpha=0.3)
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    legend = [Patch(color="tab:blue", alpha=0.8, label="value, whisker: 95% interval")]
    if any((run.body["meta"].get("image_ablation") or {}).get("ignores_image") for run in runs):
        legend.append(Patch(color="tab:red", alpha=0.8, label="ignores the image (ablation)"))
    if any(baseline_of(run.body, headline_metric(run.body) or "") for run in runs):
        legend.append(Line2D([], [], color="black", linestyle="--", label="baseline (majority, constant, chance)"))
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.4 / (sum(row_heights) + 0.4), 1, 1))  # room for the legend
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI)
    plt.close(figure)
    return path


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def write_report(runs: list[Run], out: Path) -> tuple[Path, Path, Path]:
    """Write `out` (markdown), and beside it `<out>.csv` (every metric) and `<out>.png` (the headline plots).

    Returns:
        The three paths.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out.with_suffix(".csv"), out.with_suffix(".png")
    lines = [
        "# Evaluation report", "",
        "Each run's headline metric (VQA: strict closed accuracy, or open recall without closed items; captioning: "
        "CIDEr-D; zero-shot: macro AUC; retrieval: image→text Recall@5) with its 95% bootstrap interval where the "
        f"run stored one. Every metric of every run, with its interval: `{csv_path.name}`; plots: "
        f"`{png_path.name}`.", "",
        *markdown_table(runs),
    ]  # fmt: skip
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with csv_path.open("w", encoding="utf-8", newline="") as file:
        csv.writer(file).writerows([CSV_COLUMNS, *long_rows(runs)])
    plot_headlines(runs, png_path)
    return out, csv_path, png_path
