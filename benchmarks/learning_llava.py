"""Does the tiny LLaVA learn to read phantom chest X-rays? (issue 8's learning check)

Runs the real commands on phantoms — `radtune data phantoms`, `radtune data build mimic-cxr`, `radtune data qa
--generator rules` (closed questions balanced 50/50 per question), `radtune tiny clip` + `radtune.contrastive.train`
(the CLIP that becomes the vision tower, as LLaVA-1.5 starts from CLIP), `radtune tiny llava --vision-tower`, then
`radtune.llava_vqa.train` with `packages/llava_vqa/recipes/phantom_cpu.yaml` — and prints the strict closed
accuracy on the test split next to the majority-answer baseline, with the targets (≥ 0.85, and ≥ majority + 0.20).
`--random-vision-tower` skips the CLIP step (the LLaVA then learns to see from the QA alone: far less).

    python benchmarks/learning_llava.py --work runs/bench-llava [--n 4000] [--epochs 3] [-- extra train flags]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET, MARGIN = 0.85, 0.20


def run(*words) -> None:
    words = [str(word) for word in words]
    print("$ " + " ".join(words), flush=True)
    subprocess.run(words, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-llava")
    parser.add_argument("--n", type=int, default=4000, help="Phantom studies.")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--clip-epochs", type=int, default=15)
    parser.add_argument("--image-size", type=int, default=64, help="Tiny LLaVA (and CLIP) input size.")
    parser.add_argument("--hidden-size", type=int, default=128, help="Tiny LLaVA (and CLIP) hidden size.")
    parser.add_argument("--random-vision-tower", action="store_true", help="No CLIP: a random vision tower.")
    parser.add_argument("--seed", type=int, default=0)
    args, extra = parser.parse_known_args()
    extra = [word for word in extra if word != "--"]
    work, radtune = args.work, BIN / "radtune"
    run(radtune, "data", "phantoms", work / "phantoms", "--n", args.n, "--layout", "mimic-cxr", "--image-size", 128,
        "--seed", args.seed)  # fmt: skip
    run(radtune, "data", "build", "mimic-cxr", work / "phantoms", work / "data", "--overwrite")
    run(radtune, "data", "qa", work / "data", work / "qa", "--generator", "rules", "--overwrite")
    sizes = ["--image-size", args.image_size, "--hidden-size", args.hidden_size, "--seed", args.seed]
    tower = []
    if not args.random_vision_tower:
        run(radtune, "tiny", "clip", work / "tiny-clip", "--texts", work / "data", *sizes)
        run(sys.executable, "-m", "radtune.contrastive.train", "--config",
            ROOT / "packages/contrastive/recipes/phantom_cpu_clip.yaml", "--model_name_or_path", work / "tiny-clip",
            "--dataset_name", work / "data", "--output_dir", work / "clip", "--num_train_epochs", args.clip_epochs,
            "--seed", args.seed, "--report_to", "none")  # fmt: skip
        tower = ["--vision-tower", work / "clip"]
    run(radtune, "tiny", "llava", work / "tiny-llava", "--texts", work / "qa", *sizes, *tower)
    run(sys.executable, "-m", "radtune.llava_vqa.train", "--config", ROOT / "packages/llava_vqa/recipes/phantom_cpu.yaml",
        "--model_name_or_path", work / "tiny-llava", "--dataset_name", work / "qa", "--output_dir", work / "llava",
        "--num_train_epochs", args.epochs, "--seed", args.seed, "--report_to", "none", *extra)  # fmt: skip
    report = json.loads((work / "llava" / "metrics.json").read_text())
    metrics, ci = report["metrics"], report.get("ci", {})
    accuracy, majority = metrics["strict/closed_accuracy"], metrics["majority_baseline/strict/closed_accuracy"]
    low, high = ci.get("strict/closed_accuracy", (float("nan"), float("nan")))
    print(f"\nclosed questions in the test split: {int(metrics['n_closed'])}")
    print(f"strict closed accuracy  {accuracy:.3f} [{low:.3f}, {high:.3f}]   target >= {TARGET}: "
          f"{'PASS' if accuracy >= TARGET else 'FAIL'}")  # fmt: skip
    print(f"majority-answer baseline {majority:.3f}   accuracy - baseline = {accuracy - majority:+.3f}   "
          f"target >= +{MARGIN}: {'PASS' if accuracy - majority >= MARGIN else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    main()
