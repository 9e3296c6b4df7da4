"""Does contrastive training learn? Zero-shot AUC and retrieval on phantom chest X-rays after the CPU recipe.

A tiny dual encoder (BERT + ResNet, 64-px images, hidden size 64, tokenizer trained on the phantom reports) is
trained with `packages/contrastive/recipes/phantom_cpu_dual_encoder.yaml` (InfoNCE on the impressions) on
MIMIC-CXR-layout phantom image–report pairs, then evaluated
- zero-shot on NIH-layout phantoms (a separate draw) over the drawn classes Cardiomegaly, Effusion, Pneumothorax,
  Nodule, Mass, Consolidation: CheXzero-style positive/negative prompts; target macro AUC >= 0.75;
- on image→text retrieval over the MIMIC-layout test split, against the whole reports (`text`, nearly unique;
  impressions repeat, and a repeated text cannot be retrieved as "the" match): Recall@5 against chance (5/N);
  target >= 2x chance.
The untrained model (same towers, fresh heads) is scored the same way, as the floor (`--tiny clip --recipe phantom_cpu_clip.yaml` trains
the CLIP instead; its retrieval passes, its zero-shot does not yet: see the issue notes).

    OMP_NUM_THREADS=1 python benchmarks/learning_contrastive.py          # 3-5 min on a busy 2-core CPU
    python benchmarks/learning_contrastive.py --n 1200 --work runs/bench-contrastive --extra --num_train_epochs 30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[1] / "packages" / "contrastive" / "recipes"
CLASSES = ["Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Consolidation"]


def prepare_data(work: Path, n_train: int, n_nih: int, image_size: int) -> tuple[Path, Path]:
    from radtune.dataprep.build import build_dataset
    from radtune.dataprep.phantoms import generate_phantoms

    pairs, nih = work / "phantoms-mimic-built", work / "phantoms-nih-built"
    if not pairs.is_dir():
        generate_phantoms(work / "phantoms-mimic", n=n_train, layout="mimic-cxr", image_size=image_size, seed=0)
        build_dataset("mimic-cxr", work / "phantoms-mimic", pairs, overwrite=True)
    if not nih.is_dir():
        generate_phantoms(work / "phantoms-nih", n=n_nih, layout="nih", image_size=image_size, seed=1)
        build_dataset("nih", work / "phantoms-nih", nih, overwrite=True)
    return pairs, nih


def evaluate(model_dir: Path, pairs: Path, nih: Path, split: str) -> dict:
    from radtune.common.datasets_io import load_dataset_any
    from radtune.contrastive.evaluation import retrieve, zero_shot
    from radtune.contrastive.modeling import load_contrastive

    model, processor = load_contrastive(model_dir)
    nih_rows = load_dataset_any(nih)
    nih_rows = [row for name in nih_rows for row in nih_rows[name]]  # every NIH phantom: none was trained on
    result, _, truth = zero_shot(model, processor, [r["image"] for r in nih_rows], [r["labels"] for r in nih_rows],
                                 CLASSES)  # fmt: skip
    test = load_dataset_any(pairs, split=split)
    retrieval, _ = retrieve(model, processor, test["image"], test["text"])
    return {"zero_shot": result["metrics"], "positives": truth.sum(axis=0).tolist(), "n_nih": len(nih_rows),
            "retrieval": retrieval, "n_test": len(test)}  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-contrastive"))
    parser.add_argument("--n", type=int, default=1000, help="MIMIC-layout phantom studies (train/validation/test)")
    parser.add_argument("--n-nih", type=int, default=400, help="NIH-layout phantom studies for zero-shot")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--recipe", default="phantom_cpu_dual_encoder.yaml")
    parser.add_argument("--tiny", default="dual-encoder", choices=["clip", "dual-encoder"])
    parser.add_argument("--tiny-image-size", type=int, default=64, help="input side of the tiny model")
    parser.add_argument("--tiny-hidden-size", type=int, default=64)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="overrides for the recipe")
    args = parser.parse_args(argv)

    from radtune.common.config import parse_args_and_config
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.tiny import build_tiny
    from radtune.contrastive import train

    args.work.mkdir(parents=True, exist_ok=True)
    pairs, nih = prepare_data(args.work, args.n, args.n_nih, args.image_size)
    data = load_dataset_any(pairs)
    tiny = args.work / f"tiny-{args.tiny}-{args.tiny_image_size}px-{args.tiny_hidden_size}"
    if not tiny.is_dir():
        build_tiny(args.tiny, tiny, texts=[t for split in data.values() for t in split["text"] if t],
                   image_size=args.tiny_image_size, hidden_size=args.tiny_hidden_size)
    model_args = (["--model_name_or_path", str(tiny)] if args.tiny == "clip" else
                  ["--text_model_name_or_path", str(tiny / "text"), "--image_model_name_or_path", str(tiny / "image")])  # fmt: skip
    out = args.work / f"trained-{args.tiny}"
    start = time.perf_counter()
    train.main(*parse_args_and_config(train.make_parser(), [
        "--config", str(RECIPES / args.recipe), *model_args, "--dataset_name", str(pairs), "--output_dir", str(out),
        "--report_to", "none", "--dataset_test_split", "test", *args.extra,
    ]))  # fmt: skip
    seconds = time.perf_counter() - start
    if args.tiny == "clip":
        untrained = evaluate(tiny, pairs, nih, "test")
    else:  # the same towers with fresh heads, as the trained run started
        import torch

        from radtune.contrastive.dual_encoder import DualEncoderModel
        from radtune.contrastive.modeling import load_processor

        floor = args.work / f"{tiny.name}-untrained"
        torch.manual_seed(0)
        dim = json.loads((out / "dual_encoder_config.json").read_text())["projection_dim"]
        DualEncoderModel.from_text_image_pretrained(tiny / "text", tiny / "image", projection_dim=dim).save_pretrained(floor)
        load_processor(tiny / "text", tiny / "image", "dual-encoder").save_pretrained(floor)
        untrained = evaluate(floor, pairs, nih, "test")
    trained = evaluate(out, pairs, nih, "test")

    print(f"\nZero-shot AUC on {trained['n_nih']} NIH-layout phantoms (positives per class: "
          f"{dict(zip(CLASSES, trained['positives'], strict=True))})")  # fmt: skip
    print(f"{'class':15s} {'untrained':>10s} {'trained':>10s}")
    for name in [*CLASSES, "macro"]:
        key = "auc_macro" if name == "macro" else f"auc/{name}"
        print(f"{name:15s} {untrained['zero_shot'][key]:10.3f} {trained['zero_shot'][key]:10.3f}")
    macro = trained["zero_shot"]["auc_macro"]
    r5, chance = trained["retrieval"]["i2t/recall@5"], trained["retrieval"]["chance/recall@5"]
    print(f"\nImage→text retrieval on {trained['n_test']} test pairs: Recall@1 {trained['retrieval']['i2t/recall@1']:.3f}, "
          f"Recall@5 {r5:.3f} (chance {chance:.3f}, {r5 / chance:.1f}x), Recall@10 {trained['retrieval']['i2t/recall@10']:.3f}, "
          f"median rank {trained['retrieval']['i2t/median_rank']:.0f}")  # fmt: skip
    print(f"untrained: Recall@5 {untrained['retrieval']['i2t/recall@5']:.3f}, macro AUC {untrained['zero_shot']['auc_macro']:.3f}")
    print(f"\nmacro AUC {macro:.3f} (target >= 0.75): {'OK' if macro >= 0.75 else 'BELOW TARGET'}")
    print(f"Recall@5 {r5 / chance:.1f}x chance (target >= 2x): {'OK' if r5 >= 2 * chance else 'BELOW TARGET'}")
    print(f"training took {seconds:.0f} s")


if __name__ == "__main__":
    main()
