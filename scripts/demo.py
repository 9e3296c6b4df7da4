"""The demo command's pipeline: phantom chest X-rays → datasets → QA → three trainings → evaluations → report.

Every step is a real radtune command, printed before it runs, so a user can copy it for real data. Everything
lands in `runs/demo/` (or `--out`). `make demo` runs this after set-up; `--quick` is the shortened version the
test suite runs end to end.

    python scripts/demo.py                # the full demo (about 13 minutes on 2 CPU cores)
    python scripts/demo.py --quick --out /tmp/demo
    python scripts/demo.py --qa-generator openai --qa-model gpt-4o-mini   # QA from an OpenAI-compatible API
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


FULL = Settings(logging_steps=10, n_mimic=4000, n_nih=1000, image_size=128, tiny_image_size=64, tiny_hidden=128,
                llava_epochs=3, caption_epochs=25, clip_epochs=15)  # fmt: skip
CONSTANT_CAPTION = "No acute cardiopulmonary process."
ZERO_SHOT_CLASSES = ("Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Consolidation")
QUICK = Settings(logging_steps=1, n_mimic=120, n_nih=80, image_size=64, tiny_image_size=32, tiny_hidden=32,
                 llava_epochs=1, caption_epochs=1, clip_epochs=1)  # fmt: skip


def run(*command: str | Path, log: list[str]) -> None:
    """Print a command the way a user would type it, then run it; stop the demo if it fails."""
    words = [str(word) for word in command]
    # Show the virtualenv's tools by name (radtune, accelerate), as a user with the venv active types them.
    program = Path(words[0]).name if Path(words[0]).parent == BIN and words[0] != sys.executable else words[0]
    shown = shlex.join([program, *words[1:]]).replace(str(ROOT) + "/", "")
    print(f"\n\033[1m$ {shown}\033[0m", flush=True)
    log.append(shown)
    started = time.monotonic()
    completed = subprocess.run(words, cwd=ROOT)
    if completed.returncode != 0:
        sys.exit(f"demo step failed (exit {completed.returncode}): {shown}")
    print(f"  ({time.monotonic() - started:.0f} s)", flush=True)


def _report(folder: Path) -> tuple[dict, dict]:
    body = json.loads((folder / "metrics.json").read_text())
    return body["metrics"], body.get("ci", {})


def _cell(value, interval=None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _target(met: bool, text: str) -> str:
    return f"{text}: {'met' if met else 'NOT met'}"


def write_summary(out: Path, seconds: float) -> None:
    """`report.md` + `results.csv`: each task's headline metric after training (with its 95% bootstrap interval),
    untrained, a trivial baseline, and the demo's target."""
    (llava, llava_ci), (llava0, _) = _report(out / "llava"), _report(out / "llava-untrained")
    (caption, caption_ci), (caption0, _) = _report(out / "caption-trained"), _report(out / "caption-untrained")
    (zero_shot, zero_shot_ci), (retrieval, retrieval_ci) = _report(out / "zero-shot"), _report(out / "retrieval")
    accuracy, majority = llava.get("strict/closed_accuracy", 0.0), llava.get("majority_baseline/strict/closed_accuracy")
    cider, cider0, constant = caption.get("cider", 0.0), caption0.get("cider"), caption.get("constant_baseline/cider")
    macro, r5, chance5 = zero_shot.get("auc_macro"), retrieval.get("i2t/recall@5"), retrieval.get("chance/recall@5")
    rows = [
        ("LLaVA VQA", "strict closed accuracy", accuracy, llava_ci.get("strict/closed_accuracy"),
         llava0.get("strict/closed_accuracy"), majority, "majority answer",
         _target(accuracy >= 0.90 and accuracy >= (majority or 0) + 0.25, ">= 0.90 and >= baseline + 0.25")),
        ("ViT-GPT2 captioning", "CIDEr-D", cider, caption_ci.get("cider"), cider0, constant, f'"{CONSTANT_CAPTION}"',
         _target(cider >= 3 * (cider0 or 0) and cider > (constant or 0), ">= 3x untrained and > baseline")),
        ("CLIP zero-shot", "macro AUC (6 classes)", macro, zero_shot_ci.get("auc_macro"), None, 0.5, "chance",
         _target((macro or 0) >= 0.85, ">= 0.85")),
        ("CLIP retrieval", "image→text Recall@5", r5, retrieval_ci.get("i2t/recall@5"), None, chance5, "chance", ""),
    ]  # fmt: skip
    lines = [
        "# radtune demo report", "",
        f"Phantom chest radiographs, tiny models, CPU only; {seconds / 60:.1f} minutes. Every command is in "
        "`commands.sh`; every metric of every run is in `all-metrics.csv`, each run's headline metric in "
        "`all-metrics.md` and `all-metrics.png`. "
        "Trained values carry their 95% bootstrap interval over the test items.", "",
        "| task | metric | trained | untrained | baseline | baseline is | target |", "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {t} | {m} | {_cell(a, ci)} | {_cell(b)} | {_cell(c)} | {d} | {g} |"
              for t, m, a, ci, b, c, d, g in rows]  # fmt: skip
    lines += ["", "Loss curves: `llava/loss_curve.png`, `caption/loss_curve.png`, `contrastive/loss_curve.png`.", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["task", "metric", "trained", "trained_ci_low", "trained_ci_high", "untrained", "baseline",
                         "baseline_is", "target"])  # fmt: skip
        writer.writerows([t, m, a, *(ci or ("", "")), b, c, d, g] for t, m, a, ci, b, c, d, g in rows)


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
    radtune = BIN / "radtune"
    log: list[str] = []
    started = time.monotonic()

    # Data: phantom studies in MIMIC-CXR's layout (reports) and NIH's layout (labels), built by the real readers.
    run(radtune, "data", "phantoms", out / "phantoms-mimic", "--n", settings.n_mimic, "--layout", "mimic-cxr",
        "--image-size", settings.image_size, "--seed", args.seed, log=log)  # fmt: skip
    run(radtune, "data", "build", "mimic-cxr", out / "phantoms-mimic", out / "data-mimic", "--overwrite", log=log)
    qa = ["--generator", args.qa_generator]
    if args.qa_generator == "openai":
        qa += ["--model", args.qa_model, "--provider", "compatible" if args.qa_base_url else "openai"]
        qa += ["--base-url", args.qa_base_url] if args.qa_base_url else []
    run(radtune, "data", "qa", out / "data-mimic", out / "data-qa", *qa, "--overwrite", log=log)

    # Contrastive: a tiny CLIP learns from the reports; zero-shot on NIH-layout phantoms (a separate draw) and
    # retrieval. It is also the vision tower the LLaVA starts from, as LLaVA-1.5 starts from CLIP.
    run(radtune, "data", "phantoms", out / "phantoms-nih", "--n", settings.n_nih, "--layout", "nih",
        "--image-size", settings.image_size, "--seed", args.seed + 1, log=log)  # fmt: skip
    run(radtune, "data", "build", "nih", out / "phantoms-nih", out / "data-nih", "--overwrite", log=log)
    tiny_clip = out / "models" / "tiny-clip"
    sizes = ["--image-size", settings.tiny_image_size, "--hidden-size", settings.tiny_hidden]
    run(radtune, "tiny", "clip", tiny_clip, "--texts", out / "data-mimic", *sizes, "--seed", args.seed, log=log)
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.contrastive.train",
        "--config", ROOT / "packages/contrastive/recipes/phantom_cpu_clip.yaml", "--model_name_or_path", tiny_clip,
        "--dataset_name", out / "data-mimic", "--output_dir", out / "contrastive", "--num_train_epochs",
        settings.clip_epochs, "--logging_steps", settings.logging_steps, "--seed", args.seed,
        "--eval_after_training", "false", log=log)  # fmt: skip
    run(radtune, "clip", "zero-shot", "--model", out / "contrastive", "--dataset", out / "data-nih", "--split", "test",
        "--labels", ",".join(ZERO_SHOT_CLASSES), "--out", out / "zero-shot", log=log)  # fmt: skip
    run(radtune, "clip", "retrieve", "--model", out / "contrastive", "--dataset", out / "data-mimic", "--split",
        "test", "--text-column", "impression", "--max-text-length", 128, "--out", out / "retrieval", log=log)  # fmt: skip

    # LLaVA VQA: a tiny LLaVA (the CLIP above as its vision tower, a tokenizer trained on the QA texts), its
    # projector and language model fine-tuned, evaluated against the untrained model and the majority answer.
    tiny_llava = out / "models" / "tiny-llava"
    run(radtune, "tiny", "llava", tiny_llava, "--texts", out / "data-qa", *sizes, "--vision-tower", out / "contrastive",
        "--seed", args.seed, log=log)  # fmt: skip
    run(radtune, "vqa", "evaluate", "--model", tiny_llava, "--dataset", out / "data-qa", "--split", "test",
        "--out", out / "llava-untrained", "--no-ablation", "--max-new-tokens", "8", log=log)  # fmt: skip
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.llava_vqa.train",
        "--config", ROOT / "packages/llava_vqa/recipes/phantom_cpu.yaml", "--model_name_or_path", tiny_llava,
        "--dataset_name", out / "data-qa", "--output_dir", out / "llava", "--num_train_epochs",
        settings.llava_epochs, "--logging_steps", settings.logging_steps, "--seed", args.seed,
        "--eval_ablation", "true" if args.ablation else "false", log=log)  # fmt: skip

    # Captioning: a tiny ViT-GPT2 learns to write the impression, against the untrained model and a constant caption.
    tiny_captioner = out / "models" / "tiny-vit-gpt2"
    caption_eval = ["--dataset", out / "data-mimic", "--split", "test", "--text-column", "impression",
                    "--baseline-caption", CONSTANT_CAPTION] + (["--no-meteor"] if args.quick else [])  # fmt: skip
    trained_eval = [] if args.ablation else ["--no-ablation"]
    run(radtune, "tiny", "vit-gpt2", tiny_captioner, "--texts", out / "data-mimic", "--seed", args.seed, log=log)
    run(radtune, "caption", "evaluate", "--model", tiny_captioner, *caption_eval, "--out", out / "caption-untrained",
        "--no-ablation", log=log)  # fmt: skip
    run(BIN / "accelerate", "launch", "--cpu", "--num_processes", "1", "-m", "radtune.captioning.train",
        "--config", ROOT / "packages/captioning/recipes/phantom_cpu_vitgpt2.yaml", "--model_name_or_path",
        tiny_captioner, "--dataset_name", out / "data-mimic", "--output_dir", out / "caption", "--num_train_epochs",
        settings.caption_epochs, "--eval_after_training", "false", "--logging_steps", settings.logging_steps,
        "--seed", args.seed, log=log)  # fmt: skip
    run(radtune, "caption", "evaluate", "--model", out / "caption", *caption_eval, "--out", out / "caption-trained",
        *trained_eval, log=log)  # fmt: skip

    # Report
    runs = ["llava-untrained", "llava", "caption-untrained", "caption-trained", "zero-shot", "retrieval"]
    run(radtune, "eval", "report", *(out / name for name in runs), "--out", out / "all-metrics.md", log=log)
    write_summary(out, time.monotonic() - started)
    (out / "commands.sh").write_text("\n".join(log) + "\n")
    print((out / "report.md").read_text())
    print(f"demo finished in {time.monotonic() - started:.0f} s; everything is in {out}")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
