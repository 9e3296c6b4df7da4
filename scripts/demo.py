"""The demo command's pipeline: phantom chest X-rays → datasets → QA → three trainings → evaluations → report.

Every step is a real radtune command, printed before it runs, so a user can copy it for real data. Everything
lands in `runs/demo/` (or `--out`). `make demo` runs this after set-up; `--quick` is the shortened version the
test suite runs end to end.

    python scripts/demo.py                # the full demo (about 15 minutes on 2 CPU cores)
    python scripts/demo.py --quick --out /tmp/demo
    python scripts/demo.py --qa-generator openai --qa-model gpt-4o-mini   # QA from an OpenAI-compatible API

`report.md` and `results.csv` give each target as `met` / `NOT met` with its margin (trained value minus threshold,
and the interval's lower end minus it) and, for a missed target, what to check. `benchmarks/demo_seeds.py` runs the
same trainings (these functions, these settings) over several seeds and thread counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Settings:
    logging_steps: int
    n_mimic: int
    n_nih: int
    image_size: int
    tiny_image_size: int
    tiny_hidden: int
    llava_epochs: int
    caption_epochs: int
    clip_epochs: int


FULL = Settings(logging_steps=10, n_mimic=4000, n_nih=3000, image_size=128, tiny_image_size=64, tiny_hidden=128,
                llava_epochs=4, caption_epochs=15, clip_epochs=20)  # fmt: skip
CONSTANT_CAPTION = "No acute cardiopulmonary process."
ZERO_SHOT_CLASSES = ("Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Consolidation")
QUICK = Settings(logging_steps=1, n_mimic=120, n_nih=80, image_size=64, tiny_image_size=32, tiny_hidden=32,
                 llava_epochs=1, caption_epochs=1, clip_epochs=1)  # fmt: skip


def run(*command: str | Path, log: list[str], env: dict | None = None) -> None:
    """Print a command the way a user would type it, then run it (with `env` added to the environment); stop the
    demo if it fails."""
    words = [str(word) for word in command]
    # Show the virtualenv's tools by name (radtune, accelerate), as a user with the venv active types them.
    program = Path(words[0]).name if Path(words[0]).parent == BIN and words[0] != sys.executable else words[0]
    shown = shlex.join([program, *words[1:]]).replace(str(ROOT) + "/", "")
    print(f"\n\033[1m$ {shown}\033[0m", flush=True)
    log.append(shown)
    started = time.monotonic()
    completed = subprocess.run(words, cwd=ROOT, env={**os.environ, **env} if env else None)
    if completed.returncode != 0:
        sys.exit(f"demo step failed (exit {completed.returncode}): {shown}")
    print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


def build_data(data: Path, settings: Settings, seed: int, log: list[str], qa: list[str] | None = None,
               env: dict | None = None) -> None:  # fmt: skip
    """Phantom studies in MIMIC-CXR's layout (reports) and NIH's layout (labels, a separate draw), built by the real
    readers, and QA from the reports: `data/data-mimic`, `data/data-qa`, `data/data-nih`."""
    radtune = BIN / "radtune"
    run(radtune, "data", "phantoms", data / "phantoms-mimic", "--n", settings.n_mimic, "--layout", "mimic-cxr",
        "--image-size", settings.image_size, "--seed", seed, log=log, env=env)  # fmt: skip
    run(radtune, "data", "build", "mimic-cxr", data / "phantoms-mimic", data / "data-mimic", "--overwrite", log=log,
        env=env)  # fmt: skip
    run(radtune, "data", "qa", data / "data-mimic", data / "data-qa", *(qa or ["--generator", "rules"]),
        "--overwrite", log=log, env=env)  # fmt: skip
    run(radtune, "data", "phantoms", data / "phantoms-nih", "--n", settings.n_nih, "--layout", "nih",
        "--image-size", settings.image_size, "--seed", seed + 1, log=log, env=env)  # fmt: skip
    run(radtune, "data", "build", "nih", data / "phantoms-nih", data / "data-nih", "--overwrite", log=log, env=env)


def _sizes(settings: Settings) -> list:
    return ["--image-size", settings.tiny_image_size, "--hidden-size", settings.tiny_hidden]


def run_contrastive(data: Path, out: Path, settings: Settings, seed: int, log: list[str],
                    env: dict | None = None) -> None:  # fmt: skip
    """A tiny CLIP learns from the reports (`out/contrastive`); zero-shot on the NIH-layout draw (`out/zero-shot`) and
    image→report retrieval (`out/retrieval`)."""
    radtune, tiny_clip = BIN / "radtune", out / "models" / "tiny-clip"
    run(radtune, "tiny", "clip", tiny_clip, "--texts", data / "data-mimic", *_sizes(settings), "--seed", seed, log=log,
        env=env)  # fmt: skip
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.contrastive.train",
        "--config", ROOT / "packages/contrastive/recipes/phantom_cpu_clip.yaml", "--model_name_or_path", tiny_clip,
        "--dataset_name", data / "data-mimic", "--output_dir", out / "contrastive", "--num_train_epochs",
        settings.clip_epochs, "--logging_steps", settings.logging_steps, "--seed", seed,
        "--eval_after_training", "false", log=log, env=env)  # fmt: skip
    run(radtune, "clip", "zero-shot", "--model", out / "contrastive", "--dataset", data / "data-nih", "--split", "test",
        "--labels", ",".join(ZERO_SHOT_CLASSES), "--out", out / "zero-shot", log=log, env=env)  # fmt: skip
    run(radtune, "clip", "retrieve", "--model", out / "contrastive", "--dataset", data / "data-mimic", "--split",
        "test", "--text-column", "impression", "--max-text-length", 128, "--out", out / "retrieval", log=log,
        env=env)  # fmt: skip


def run_llava(data: Path, out: Path, settings: Settings, seed: int, log: list[str], ablation: bool = False,
              env: dict | None = None) -> None:  # fmt: skip
    """A tiny LLaVA (the CLIP in `out/contrastive` as its vision tower, a tokenizer trained on the QA texts), scored
    untrained (`out/llava-untrained`), then its projector and language model fine-tuned and scored (`out/llava`)."""
    radtune, tiny_llava = BIN / "radtune", out / "models" / "tiny-llava"
    run(radtune, "tiny", "llava", tiny_llava, "--texts", data / "data-qa", *_sizes(settings), "--vision-tower",
        out / "contrastive", "--seed", seed, log=log, env=env)  # fmt: skip
    run(radtune, "vqa", "evaluate", "--model", tiny_llava, "--dataset", data / "data-qa", "--split", "test",
        "--out", out / "llava-untrained", "--no-ablation", "--max-new-tokens", "8", log=log, env=env)  # fmt: skip
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.llava_vqa.train",
        "--config", ROOT / "packages/llava_vqa/recipes/phantom_cpu.yaml", "--model_name_or_path", tiny_llava,
        "--dataset_name", data / "data-qa", "--output_dir", out / "llava", "--num_train_epochs",
        settings.llava_epochs, "--logging_steps", settings.logging_steps, "--seed", seed,
        "--eval_ablation", "true" if ablation else "false", log=log, env=env)  # fmt: skip


def run_captioning(data: Path, out: Path, settings: Settings, seed: int, log: list[str], ablation: bool = False,
                   meteor: bool = True, env: dict | None = None) -> None:  # fmt: skip
    """A tiny ViT-GPT2 learns to write the impression, scored untrained (`out/caption-untrained`) and trained
    (`out/caption-trained`) against a constant caption."""
    radtune, tiny_captioner = BIN / "radtune", out / "models" / "tiny-vit-gpt2"
    caption_eval = ["--dataset", data / "data-mimic", "--split", "test", "--text-column", "impression",
                    "--baseline-caption", CONSTANT_CAPTION] + ([] if meteor else ["--no-meteor"])  # fmt: skip
    run(radtune, "tiny", "vit-gpt2", tiny_captioner, "--texts", data / "data-mimic", "--seed", seed, log=log, env=env)
    run(radtune, "caption", "evaluate", "--model", tiny_captioner, *caption_eval, "--out", out / "caption-untrained",
        "--no-ablation", log=log, env=env)  # fmt: skip
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.captioning.train",
        "--config", ROOT / "packages/captioning/recipes/phantom_cpu_vitgpt2.yaml", "--model_name_or_path",
        tiny_captioner, "--dataset_name", data / "data-mimic", "--output_dir", out / "caption", "--num_train_epochs",
        settings.caption_epochs, "--eval_after_training", "false", "--logging_steps", settings.logging_steps,
        "--seed", seed, log=log, env=env)  # fmt: skip
    run(radtune, "caption", "evaluate", "--model", out / "caption", *caption_eval, "--out", out / "caption-trained",
        *([] if ablation else ["--no-ablation"]), log=log, env=env)  # fmt: skip


def _report(folder: Path) -> tuple[dict, dict]:
    if not (folder / "metrics.json").is_file():
        return {}, {}
    body = json.loads((folder / "metrics.json").read_text())
    return body["metrics"], body.get("ci", {})


def _cell(value, interval=None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


@dataclass
class Row:
    """One line of the demo's report: a task's headline metric, its references and (if it has one) its target.

    `threshold` is the value the metric must reach (the stricter of a target's conditions), `margin` the trained
    value minus it and `margin_low` the interval's lower end minus it; `met` is `None` for a row without target.
    """

    task: str
    metric: str
    trained: float | None
    interval: tuple[float, float] | None
    untrained: float | None
    baseline: float | None
    baseline_is: str
    target: str = ""
    threshold: float | None = None
    met: bool | None = None

    @property
    def margin(self) -> float | None:
        return None if self.threshold is None or self.trained is None else self.trained - self.threshold

    @property
    def margin_low(self) -> float | None:
        return None if self.threshold is None or not self.interval else self.interval[0] - self.threshold

    @property
    def target_cell(self) -> str:
        """The target's text and `met` / `NOT met` (these two words exactly)."""
        return "" if self.met is None else f"{self.target}: {'met' if self.met else 'NOT met'}"

    @property
    def margin_cell(self) -> str:
        if self.margin is None:
            return ""
        return f"{self.margin:+.3f}" + ("" if self.margin_low is None else f" (interval low {self.margin_low:+.3f})")


def summary_rows(out: Path) -> list[Row]:
    """Each task's headline metric after training (with its 95% bootstrap interval), untrained, a trivial baseline,
    and the demo's target, read from the runs' `metrics.json` in `out` (a task that did not run reads as missing)."""
    (llava, llava_ci), (llava0, _) = _report(out / "llava"), _report(out / "llava-untrained")
    (caption, caption_ci), (caption0, _) = _report(out / "caption-trained"), _report(out / "caption-untrained")
    (zero_shot, zero_shot_ci), (retrieval, retrieval_ci) = _report(out / "zero-shot"), _report(out / "retrieval")
    accuracy, majority = llava.get("strict/closed_accuracy"), llava.get("majority_baseline/strict/closed_accuracy")
    cider, cider0, constant = caption.get("cider"), caption0.get("cider"), caption.get("constant_baseline/cider")
    macro, r5, chance5 = zero_shot.get("auc_macro"), retrieval.get("i2t/recall@5"), retrieval.get("chance/recall@5")
    llava_threshold = max(0.90, (majority or 0.0) + 0.25)
    caption_threshold = max(3 * (cider0 or 0.0), constant or 0.0)
    return [
        Row("LLaVA VQA", "strict closed accuracy", accuracy, llava_ci.get("strict/closed_accuracy"),
            llava0.get("strict/closed_accuracy"), majority, "majority answer", ">= 0.90 and >= baseline + 0.25",
            llava_threshold, accuracy is not None and accuracy >= llava_threshold),
        Row("ViT-GPT2 captioning", "CIDEr-D", cider, caption_ci.get("cider"), cider0, constant,
            f'"{CONSTANT_CAPTION}"', ">= 3x untrained and > baseline", caption_threshold,
            cider is not None and cider >= 3 * (cider0 or 0.0) and cider > (constant or 0.0)),
        Row("CLIP zero-shot", "macro AUC (6 classes)", macro, zero_shot_ci.get("auc_macro"), None, 0.5, "chance",
            ">= 0.85", 0.85, macro is not None and macro >= 0.85),
        Row("CLIP retrieval", "image→text Recall@5", r5, retrieval_ci.get("i2t/recall@5"), None, chance5, "chance"),
    ]  # fmt: skip


def missed_advice(rows: list[Row], seed: int, threads: int) -> list[str]:
    """For each missed target, what to check: the interval, the seed, the thread count."""
    lines = []
    for row in rows:
        if row.met is not False:
            continue
        value = "no result" if row.trained is None else f"{row.trained:.3f}"
        line = f"- **{row.task}** ({row.metric}): {value} against {row.threshold:.3f} ({row.target}). Check "
        if row.interval and row.interval[0] <= row.threshold <= row.interval[1]:
            line += (f"the interval: [{row.interval[0]:.3f}, {row.interval[1]:.3f}] contains the threshold, so the "
                     "miss is within the test set's sampling noise; ")  # fmt: skip
        elif row.interval:
            line += f"the interval: [{row.interval[0]:.3f}, {row.interval[1]:.3f}] lies below the threshold; "
        line += (f"the seed (this run: `--seed {seed}`; `python benchmarks/demo_seeds.py --seeds 0 1 2` shows the "
                 f"spread over seeds); the thread count (this run: {threads} torch threads; another count or another "
                 "CPU changes float32 reductions and so the numbers: `benchmarks/demo_seeds.py --threads N`); and "
                 "the training's loss curve.")  # fmt: skip
        lines.append(line)
    return lines


def torch_threads() -> int:
    """The torch thread count of the demo's commands: `OMP_NUM_THREADS` if set, else torch's default."""
    import torch

    return int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads())


def write_summary(out: Path, seconds: float, seed: int = 0, threads: int | None = None) -> list[Row]:
    """`report.md` + `results.csv`: each task's headline metric after training (with its 95% bootstrap interval),
    untrained, a trivial baseline, the demo's target (`met` / `NOT met`) and the margin to it; for a missed target,
    what to check. Returns the rows."""
    threads = torch_threads() if threads is None else threads
    rows = summary_rows(out)
    lines = [
        "# radtune demo report", "",
        f"Phantom chest radiographs, tiny models, CPU only; {seconds / 60:.1f} minutes, seed {seed}, {threads} torch "
        "threads. Every command is in `commands.sh`; every metric of every run is in `all-metrics.csv`, each run's "
        "headline metric in `all-metrics.md` and `all-metrics.png`. "
        "Trained values carry their 95% bootstrap interval over the test items; the margin is the trained value "
        "minus the target's threshold (and the interval's lower end minus it).", "",
        "| task | metric | trained | untrained | baseline | baseline is | target | margin |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {r.task} | {r.metric} | {_cell(r.trained, r.interval)} | {_cell(r.untrained)} | {_cell(r.baseline)} "
              f"| {r.baseline_is} | {r.target_cell} | {r.margin_cell} |" for r in rows]  # fmt: skip
    missed = missed_advice(rows, seed, threads)
    if missed:
        lines += ["", "## Targets not met", "", *missed]
    lines += ["", "Loss curves: `llava/loss_curve.png`, `caption/loss_curve.png`, `contrastive/loss_curve.png`.", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["task", "metric", "trained", "trained_ci_low", "trained_ci_high", "untrained", "baseline",
                         "baseline_is", "target", "margin", "margin_ci_low"])  # fmt: skip
        for r in rows:
            writer.writerow([r.task, r.metric, "" if r.trained is None else r.trained, *(r.interval or ("", "")),
                             "" if r.untrained is None else r.untrained, "" if r.baseline is None else r.baseline,
                             r.baseline_is, r.target_cell, "" if r.margin is None else f"{r.margin:.6f}",
                             "" if r.margin_low is None else f"{r.margin_low:.6f}"])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo", help="Output folder.")
    parser.add_argument("--quick", action="store_true", help="A shortened run (the test suite's version).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qa-generator", choices=["rules", "openai"], default="rules",
                        help="openai: generate QA with an OpenAI-compatible API (needs OPENAI_API_KEY or --qa-base-url)")  # fmt: skip
    parser.add_argument("--qa-model", default="gpt-4o-mini")
    parser.add_argument("--ablation", action="store_true",
                        help="Also evaluate the trained models with blank and noise images (slower; off by default).")  # fmt: skip
    parser.add_argument("--qa-base-url", default=None, help="A local OpenAI-compatible server, e.g. vLLM or Ollama.")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    started = time.monotonic()

    # Data: phantom studies in MIMIC-CXR's layout (reports) and NIH's layout (labels), built by the real readers.
    qa = ["--generator", args.qa_generator]
    if args.qa_generator == "openai":
        qa += ["--model", args.qa_model, "--provider", "compatible" if args.qa_base_url else "openai"]
        qa += ["--base-url", args.qa_base_url] if args.qa_base_url else []
    build_data(out, settings, args.seed, log, qa=qa)

    # Contrastive: a tiny CLIP learns from the reports; zero-shot on NIH-layout phantoms (a separate draw) and
    # retrieval. It is also the vision tower the LLaVA starts from, as LLaVA-1.5 starts from CLIP.
    run_contrastive(out, out, settings, args.seed, log)
    # LLaVA VQA: a tiny LLaVA (the CLIP above as its vision tower, a tokenizer trained on the QA texts), its
    # projector and language model fine-tuned, evaluated against the untrained model and the majority answer.
    run_llava(out, out, settings, args.seed, log, ablation=args.ablation)
    # Captioning: a tiny ViT-GPT2 learns to write the impression, against the untrained model and a constant caption.
    run_captioning(out, out, settings, args.seed, log, ablation=args.ablation, meteor=not args.quick)

    # Report
    runs = ["llava-untrained", "llava", "caption-untrained", "caption-trained", "zero-shot", "retrieval"]
    run(BIN / "radtune", "eval", "report", *(out / name for name in runs), "--out", out / "all-metrics.md", log=log)
    write_summary(out, time.monotonic() - started, seed=args.seed)
    (out / "commands.sh").write_text("\n".join(log) + "\n")
    print((out / "report.md").read_text())
    print(f"demo finished in {time.monotonic() - started:.0f} s; everything is in {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
