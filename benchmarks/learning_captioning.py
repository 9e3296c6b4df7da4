"""Does captioning training learn? CIDEr-D on phantom chest X-ray impressions, before and after each CPU recipe.

For each arch (vit-gpt2, blip): a tiny model (tokenizer trained on the phantom reports) is evaluated untrained,
trained with its CPU recipe (`packages/captioning/recipes/phantom_cpu_<arch>.yaml`), and evaluated again on
the test split; the constant caption "No acute cardiopulmonary process." is scored on the same references.
Targets: trained CIDEr-D >= 3x the untrained model's, and above the constant caption.

    python benchmarks/learning_captioning.py                 # ~5-10 min on a laptop CPU
    python benchmarks/learning_captioning.py --n 1200 --archs blip --work runs/bench-learning
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "packages" / "captioning" / "recipes"
CONSTANT = "No acute cardiopulmonary process."
TINY_KIND = {"vit-gpt2": "vit-gpt2", "blip": "blip-caption"}
RECIPE = {"vit-gpt2": "phantom_cpu_vitgpt2.yaml", "blip": "phantom_cpu_blip.yaml"}


def prepare_data(work: Path, n: int, image_size: int) -> Path:
    from radtune.dataprep.build import build_dataset
    from radtune.dataprep.phantoms import generate_phantoms

    built = work / "phantoms-built"
    if not built.is_dir():
        generate_phantoms(work / "phantoms", n=n, layout="mimic-cxr", image_size=image_size, seed=0)
        build_dataset("mimic-cxr", work / "phantoms", built, overwrite=True)
    return built


def cider(folder: Path) -> float:
    return json.loads((folder / "metrics.json").read_text())["metrics"]["cider"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-learning"))
    parser.add_argument("--n", type=int, default=800, help="phantom studies to generate")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--archs", nargs="+", default=["vit-gpt2", "blip"], choices=list(TINY_KIND))
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="overrides for the recipes")
    args = parser.parse_args(argv)

    from radtune.captioning import train
    from radtune.captioning.evaluation import caption_scores, evaluate_captions
    from radtune.captioning.modeling import load_captioner
    from radtune.common.config import parse_args_and_config
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.tiny import build_tiny

    args.work.mkdir(parents=True, exist_ok=True)
    dataset = prepare_data(args.work, args.n, args.image_size)
    data = load_dataset_any(dataset)
    test = data["test"]
    texts = [t for split in data.values() for column in ("findings", "impression") for t in split[column] if t]

    constant = caption_scores([CONSTANT] * len(test), [[t] for t in test["impression"]], meteor=False)["cider"]
    results = {}
    for arch in args.archs:
        tiny = args.work / f"tiny-{TINY_KIND[arch]}"
        if not tiny.is_dir():
            build_tiny(TINY_KIND[arch], tiny, texts=texts)
        untrained = evaluate_captions(load_captioner(tiny, device="cpu"), test, args.work / f"untrained-{arch}",
                                      text_column="impression", meteor=False, ablation=False,
                                      max_new_tokens=24)["cider"]  # fmt: skip
        out = args.work / f"trained-{arch}"
        start = time.perf_counter()
        train.main(*parse_args_and_config(train.make_parser(), [
            "--config", str(RECIPES / RECIPE[arch]), "--model_name_or_path", str(tiny),
            "--dataset_name", str(dataset), "--output_dir", str(out), "--report_to", "none",
            "--max_eval_samples", str(len(test)), *args.extra,
        ]))  # fmt: skip
        seconds = time.perf_counter() - start
        results[arch] = {"untrained": untrained, "trained": cider(out), "train_s": seconds}

    print(f"\nCIDEr-D on {len(test)} phantom test impressions (constant caption {CONSTANT!r}: {constant:.3f})")
    print(f"{'arch':10s} {'untrained':>10s} {'trained':>10s} {'constant':>10s} {'x untrained':>12s} {'train s':>8s}")
    for arch, r in results.items():
        ratio = r["trained"] / r["untrained"] if r["untrained"] > 0 else float("inf")
        print(f"{arch:10s} {r['untrained']:10.3f} {r['trained']:10.3f} {constant:10.3f} {ratio:12.1f} "
              f"{r['train_s']:8.0f}  {'OK' if ratio >= 3 and r['trained'] > constant else 'BELOW TARGET'}")  # fmt: skip


if __name__ == "__main__":
    main()
