"""Do the demo's targets hold across seeds and thread counts? The demo's three trainings and their evaluations per seed.

Runs exactly what `scripts/demo.py` runs (its functions and its full settings, imported, not copied): the data once,
then for each seed the tiny CLIP (zero-shot and retrieval), the tiny LLaVA on that CLIP (untrained and trained) and
the tiny ViT-GPT2 (untrained and trained), each seeded with the seed. `--threads N` sets `OMP_NUM_THREADS` for every
command (torch's thread count: another count orders float32 reductions differently, as another CPU does). Prints, per
seed, each target's value with its 95% interval and `met` / `NOT met`, then the mean, the minimum and the margin of
the minimum to each threshold; writes `seeds.csv` and `seeds.md` in `--out`.

The data are drawn once (`--data-seed`, default 0, as `make demo` draws them) and shared by the seeds, so the spread
is the trainings' (initialisation, order, augmentation) on fixed data; `--data-per-seed` draws each seed's own data
as `scripts/demo.py --seed S` does (about a minute more per seed).

    python benchmarks/demo_seeds.py                          # seeds 0-4, about 70 minutes on 2 idle cores
    python benchmarks/demo_seeds.py --seeds 0 1 --tasks contrastive   # while iterating: CLIP only
    python benchmarks/demo_seeds.py --seeds 0 --threads 1 --out runs/demo-seeds-1t

With one thread, two processes use two cores: give them different `--seeds`, the same `--out` and `--reuse` (the
data are drawn once and shared: start the second when the first has written `data-0/data-nih`), then one more
`--reuse` run over all the seeds writes the whole table:

    python benchmarks/demo_seeds.py --threads 1 --reuse --seeds 0 2 4 &
    python benchmarks/demo_seeds.py --threads 1 --reuse --seeds 1 3; wait
    python benchmarks/demo_seeds.py --threads 1 --reuse
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("contrastive", "llava", "captioning")


def load_demo():
    """`scripts/demo.py` as a module (the script is not in a package)."""
    spec = importlib.util.spec_from_file_location("radtune_demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def run_seed(demo, data: Path, out: Path, seed: int, tasks: list[str], env: dict, reuse: bool, log: list[str]) -> dict:
    """Runs `tasks` for one seed into `out` (the demo's own folder layout); returns each step's seconds."""
    settings, seconds = demo.FULL, {}
    steps = {
        "contrastive": (lambda: demo.run_contrastive(data, out, settings, seed, log, env=env), "retrieval"),
        "llava": (lambda: demo.run_llava(data, out, settings, seed, log, env=env), "llava"),
        "captioning": (lambda: demo.run_captioning(data, out, settings, seed, log, env=env), "caption-trained"),
    }
    for task in tasks:
        if task == "llava" and not (out / "contrastive" / "config.json").is_file():
            raise SystemExit(
                f"seed {seed}: llava needs this seed's CLIP ({out / 'contrastive'}): add --tasks contrastive"
            )
        step, result = steps[task]
        if reuse and done(out / result):
            print(f"seed {seed}: {task} reused from {out / result}", flush=True)
            continue
        started = time.monotonic()
        step()
        seconds[task] = time.monotonic() - started
    return seconds


def summarise(rows_by_seed: dict[int, list]) -> list[str]:
    """Markdown lines: per seed each target's value, interval and verdict; then mean, min and the margin of the min."""
    seeds = sorted(rows_by_seed)
    tasks = [row for row in rows_by_seed[seeds[0]] if row.threshold is not None]
    header = "| seed | " + " | ".join(f"{row.task} ({row.metric})" for row in tasks) + " |"
    lines = [header, "|---" * (len(tasks) + 1) + "|"]
    for seed in seeds:
        cells = []
        for row in (r for r in rows_by_seed[seed] if r.threshold is not None):
            if row.trained is None:
                cells.append("–")
                continue
            interval = f" [{row.interval[0]:.3f}, {row.interval[1]:.3f}]" if row.interval else ""
            cells.append(
                f"{row.trained:.3f}{interval} {'met' if row.met else 'NOT met'} (threshold {row.threshold:.3f})"
            )
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    means, minimums, margins = [], [], []
    for index, _ in enumerate(tasks):
        rows = [[r for r in rows_by_seed[seed] if r.threshold is not None][index] for seed in seeds]
        values = [r.trained for r in rows if r.trained is not None]
        if not values:
            means.append("–"), minimums.append("–"), margins.append("–")
            continue
        means.append(f"{statistics.fmean(values):.3f}")
        minimums.append(f"{min(values):.3f}")
        # Each seed's margin is against its own threshold (the majority and untrained baselines vary with the seed).
        margin = min(r.margin for r in rows if r.margin is not None)
        lows = [r.margin_low for r in rows if r.margin_low is not None]
        margins.append(f"{margin:+.3f}" + (f" (interval low {min(lows):+.3f})" if lows else ""))
    lines += ["| mean | " + " | ".join(means) + " |", "| min | " + " | ".join(minimums) + " |",
              "| min margin | " + " | ".join(margins) + " |"]  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of every command (default: unset)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo-seeds")
    parser.add_argument("--data-seed", type=int, default=0, help="Seed of the shared data (as `make demo`: 0).")
    parser.add_argument("--data-per-seed", action="store_true", help="Draw each seed's own data, as demo.py --seed.")
    parser.add_argument("--reuse", action="store_true", help="Keep a task's results already in --out (no rerun).")
    args = parser.parse_args(argv)
    demo = load_demo()
    env = {"TOKENIZERS_PARALLELISM": "false"} | (
        {} if args.threads is None else {"OMP_NUM_THREADS": str(args.threads)}
    )
    threads = args.threads or demo.torch_threads()
    root = args.out / f"threads-{threads}"
    log: list[str] = []

    rows_by_seed, seconds = {}, {}
    for seed in args.seeds:
        data = root / f"seed-{seed}" if args.data_per_seed else args.out / f"data-{args.data_seed}"
        first_use = args.data_per_seed or seed == args.seeds[0]
        if first_use and not (args.reuse and (data / "data-nih").is_dir()):
            demo.build_data(data, demo.FULL, seed if args.data_per_seed else args.data_seed, log, env=env)
        out = root / f"seed-{seed}"
        seconds[seed] = run_seed(demo, data, out, seed, args.tasks, env, args.reuse, log)
        rows_by_seed[seed] = demo.write_summary(out, sum(seconds[seed].values()), seed=seed, threads=threads)
        print(f"seed {seed}: " + ", ".join(f"{task} {s:.0f} s" for task, s in seconds[seed].items()), flush=True)

    lines = [f"# The demo's targets over seeds {args.seeds}, {threads} torch threads", "",
             *summarise(rows_by_seed), "", "Step times (s): " + "; ".join(
                 f"seed {seed}: " + (", ".join(f"{t} {s:.0f}" for t, s in steps.items()) or "reused")
                 for seed, steps in seconds.items())]  # fmt: skip
    (args.out / f"seeds-threads-{threads}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (args.out / f"seeds-threads-{threads}.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["seed", "threads", "task", "metric", "trained", "ci_low", "ci_high", "threshold", "target",
                         "margin", "margin_ci_low"])  # fmt: skip
        for seed, rows in rows_by_seed.items():
            for r in rows:
                writer.writerow([seed, threads, r.task, r.metric, r.trained, *(r.interval or ("", "")), r.threshold,
                                 r.target_cell, r.margin, r.margin_low])  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
