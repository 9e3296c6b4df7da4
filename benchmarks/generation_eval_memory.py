"""Memory of the evaluation during training as the eval split grows: streamed generation metrics vs `compute_metrics`.

Each measurement runs in its own subprocess: it builds the LLaVA VQA trainer exactly as `radtune.llava_vqa.train`
does (`build_trainer`, `--eval_strategy steps`) on radtune's tiny LLaVA, then calls `trainer.evaluate()`, the
call the Trainer makes at every `eval_steps`, on an eval split of N and then 4N rows.

- `stream` (radtune's way): `--generation_eval_samples` = the whole eval split, so every row is answered and
  scored; the answers are generated batch by batch and only their strings are kept.
- `logits` (the control: what users of `compute_metrics` run into): no generation, a token-accuracy
  `compute_metrics`, so the Trainer gathers the logits of every eval row before scoring.

For each run it prints the peak resident memory of the whole process (VmHWM / ru_maxrss) and the growth of the
resident memory during `evaluate()` (the peak is reset just before, via /proc/self/clear_refs), and the ratio of
the 4N peak to the N peak per mode (target for `stream`: <= 1.2).

    python benchmarks/generation_eval_memory.py                 # N = 128, tiny LLaVA, CPU, ~1-3 min
    python benchmarks/generation_eval_memory.py --n 256 --modes stream
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.2


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0: writing 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def make_qa_dataset(folder: Path, n_train: int, n_eval: int) -> None:
    """A QA export-like `DatasetDict` (messages + images, closed questions whose answers depend on the image)."""
    import numpy as np
    from datasets import Dataset, DatasetDict
    from PIL import Image, ImageDraw

    def row(index: int) -> dict:
        rng = np.random.default_rng(index)
        image = Image.fromarray(rng.normal(60, 10, (32, 32)).clip(0, 255).astype(np.uint8), mode="L").convert("RGB")
        finding = index % 2 == 0
        if finding:
            ImageDraw.Draw(image).ellipse((8, 8, 24, 24), fill=(240, 240, 240))
        question, answer = "Is there a nodule?", "Yes." if finding else "No."
        return {
            "id": f"q{index}",
            "messages": [
                {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ],
            "images": [image],
            "answer_type": "closed",
        }

    rows = [row(i) for i in range(n_train + n_eval)]
    DatasetDict({"train": Dataset.from_list(rows[:n_train]),
                 "validation": Dataset.from_list(rows[n_train:])}).save_to_disk(str(folder))  # fmt: skip


def child(model_dir: str, data_dir: str, mode: str, batch_size: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from datasets import load_from_disk

    from radtune.common.config import parse_args_and_config
    from radtune.llava_vqa.train import build_trainer, make_parser

    n_eval = len(load_from_disk(data_dir)["validation"])
    args = [
        "--model_name_or_path", model_dir, "--dataset_name", data_dir, "--output_dir", tempfile.mkdtemp(),
        "--use_cpu", "true", "--dtype", "float32", "--bf16", "false", "--report_to", "none", "--lora_r", "4",
        "--lora_alpha", "8", "--save_strategy", "no", "--dataloader_num_workers", "0", "--max_new_tokens", "8",
        "--activation_checkpointing", "false", "--eval_strategy", "steps", "--eval_steps", "1",
        "--per_device_eval_batch_size", str(batch_size), "--disable_tqdm", "true",
        "--generation_eval_samples", str(n_eval if mode == "stream" else 0),
    ]  # fmt: skip
    trainer, _ = build_trainer(*parse_args_and_config(make_parser(), args))
    if mode == "logits":

        def token_accuracy(prediction):
            predicted = prediction.predictions.argmax(-1)[:, :-1]
            labels = prediction.label_ids[:, 1:]
            mask = labels != -100
            return {"token_accuracy": float((predicted == labels)[mask].mean())}

        trainer.compute_metrics = token_accuracy
    before = _status_kib("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    metrics = trainer.evaluate()
    seconds = time.perf_counter() - start
    import resource

    peak_eval = _status_kib("VmHWM") if reset else None
    return {
        "mode": mode,
        "n_eval": n_eval,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "eval_growth_mib": (peak_eval - before) / 1024 if peak_eval is not None and before is not None else None,
        "eval_seconds": seconds,
        "metrics": {k: v for k, v in metrics.items() if k in ("eval_strict_closed_accuracy", "eval_n_closed",
                                                                "eval_token_accuracy", "eval_loss")},
    }  # fmt: skip


def run_child(model_dir: Path, data_dir: Path, mode: str, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--child", "--model", str(model_dir), "--data", str(data_dir), "--mode", mode,
               "--batch-size", str(batch_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1"}  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode:
        raise RuntimeError(f"{mode} run failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=128, help="Eval rows of the small run (the large one has 4x).")
    parser.add_argument("--batch-size", type=int, default=8, help="per_device_eval_batch_size.")
    parser.add_argument("--modes", nargs="+", default=["stream", "logits"], choices=["stream", "logits"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.data, args.mode, args.batch_size)))
        return

    import datasets

    from radtune.common.tiny import build_tiny

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="radtune-generation-eval-memory-") as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny("llava", tmp / "tiny-llava")
        sizes = (args.n, 4 * args.n)
        for n in sizes:
            make_qa_dataset(tmp / f"qa-{n}", n_train=8, n_eval=n)
        results = {}
        for mode in args.modes:
            for n in sizes:
                result = results[mode, n] = run_child(model_dir, tmp / f"qa-{n}", mode, args.batch_size)
                growth = result["eval_growth_mib"]
                print(f"{mode:>7} n_eval={n:>5}: peak RSS {result['peak_rss_mib']:7.1f} MiB, growth during "
                      f"evaluate() {'n/a' if growth is None else f'{growth:6.1f} MiB'}, "
                      f"{result['eval_seconds']:6.1f} s, {result['metrics']}", flush=True)  # fmt: skip
        print()
        for mode in args.modes:
            small, large = results[mode, sizes[0]], results[mode, sizes[1]]
            ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
            verdict = (
                f"(target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})" if mode == "stream" else "(control)"
            )
            growth = (f"; growth during evaluate() {small['eval_growth_mib']:.1f} -> {large['eval_growth_mib']:.1f} MiB"
                      if small["eval_growth_mib"] is not None else "")  # fmt: skip
            print(f"{mode}: peak RSS at {sizes[1]} / {sizes[0]} eval rows = {ratio:.3f} {verdict}{growth}")


if __name__ == "__main__":
    main()
