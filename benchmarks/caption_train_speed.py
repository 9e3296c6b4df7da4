"""Captioning training throughput: the seed's BLIP loop vs radtune's Trainer, on the same model and data.

(a) seed 004's way: the processor pads every caption to `max_length`, the labels are the padded ids (padding
    is trained on), images are decoded in the training process (no DataLoader workers);
(b) radtune's way: `GenerationTrainer` with `CaptioningCollator` (padding to the longest caption of the batch,
    padding masked with -100) and DataLoader workers.

Prints samples/s of both and their ratio (target >= 2x), and for (b) the full step time divided by the time of a
model-only step on pre-collated tensors already on the device (target <= 1.15: the data pipeline hides behind
the model). The model is a BLIP captioner with random weights built from a config, so nothing is downloaded:
`--size tiny` (radtune's test model) or `--size base` (Salesforce/blip-image-captioning-base's shapes).

    python benchmarks/caption_train_speed.py                       # tiny, CPU, ~1-2 min
    python benchmarks/caption_train_speed.py --size base --steps 60 --workers 8   # on a GPU
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_dataset(n: int, image_side: int, image_format: str = "JPEG", seed: int = 0):
    """Grey radiograph-like images (JPEG like ROCOv2 and MIMIC-CXR-JPG, or PNG) and captions of realistic, varied
    length (ROCO-like: 5-60 words)."""
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from radtune.common.tiny import builtin_corpus

    rng = np.random.default_rng(seed)
    words = " ".join(builtin_corpus()).split()
    images, texts = [], []
    y, x = np.mgrid[0:image_side, 0:image_side] / image_side
    for _ in range(n):
        a, b = rng.uniform(2, 9, size=2)
        smooth = 110 + 60 * np.sin(a * x * np.pi) * np.cos(b * y * np.pi)
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        PILImage.fromarray(pixels, mode="L").save(
            buffer, format=image_format, **({"quality": 92} if image_format == "JPEG" else {})
        )
        images.append({"bytes": buffer.getvalue(), "path": None})
        length = int(np.clip(rng.lognormal(2.7, 0.6), 5, 60))
        start = int(rng.integers(0, len(words) - length))
        texts.append(" ".join(words[start : start + length]))
    features = Features({"image": Image(), "text": Value("string")})
    return Dataset.from_dict({"image": images, "text": texts}, features=features)


def build_model(size: str, folder: Path):
    """A BLIP captioner with random weights: radtune's tiny one, or base-sized (blip-image-captioning-base shapes)."""
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    from radtune.common.tiny import build_tiny, builtin_corpus, train_tokenizer

    if size == "tiny":
        build_tiny("blip-caption", folder)
        return folder
    tokenizer = train_tokenizer(builtin_corpus(), "bert", vocab_size=30524)
    text = BlipTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                          sep_token_id=tokenizer.sep_token_id)  # fmt: skip
    config = BlipConfig(text_config=text.to_dict(), vision_config=BlipVisionConfig(image_size=384).to_dict())
    BlipForConditionalGeneration(config).save_pretrained(folder)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}),
                              tokenizer=tokenizer)  # fmt: skip
    processor.save_pretrained(folder)
    return folder


def seed_way(folder: Path, dataset, batch_size: int, steps: int, warmup: int, max_length: int, device, dtype):
    """Seed 004's hand-written loop: max_length padding, labels = padded ids, no DataLoader workers."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(folder)
    model = BlipForConditionalGeneration.from_pretrained(folder).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)

    def collate(rows):
        encoding = processor(images=[r["image"].convert("RGB") for r in rows], text=[r["text"] for r in rows],
                             padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")  # fmt: skip
        encoding["labels"] = encoding["input_ids"]
        return encoding

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=collate, num_workers=0)
    times, done = [], 0
    last = time.perf_counter()
    while done < steps + warmup:
        # measured from one step's end to the next, so loading and collating the batch count too
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if device.type == "cuda":
                torch.cuda.synchronize()
            done += 1
            now = time.perf_counter()
            if done > warmup:
                times.append(now - last)
            last = now
            if done >= steps + warmup:
                break
    return times


class StepTimer:
    """A `TrainerCallback` recording wall time from one step's end to the next (data loading included)."""

    def __init__(self, warmup: int):
        from transformers import TrainerCallback

        self.warmup, self.times, self.last = warmup, [], None
        timer = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                import torch

                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                now = time.perf_counter()
                if timer.last is not None and state.global_step > timer.warmup:
                    timer.times.append(now - timer.last)
                timer.last = now

        self.callback = Callback()


def radtune_way(folder: Path, dataset, batch_size: int, steps: int, warmup: int, workers: int, use_cpu: bool,
                precision: str | None, max_length: int):  # fmt: skip
    from transformers import AutoImageProcessor, AutoTokenizer, BlipForConditionalGeneration

    from radtune.captioning.collators import CaptioningCollator, undecoded_images
    from radtune.captioning.train import CaptioningTrainingArguments
    from radtune.captioning.trainer import GenerationTrainer

    dataset = undecoded_images(dataset)  # as radtune.captioning.train does: the collator decodes at reduced scale
    model = BlipForConditionalGeneration.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    collator = CaptioningCollator(AutoImageProcessor.from_pretrained(folder), tokenizer, max_length=max_length,
                                  text_inputs=True, decoder_start_token_id=model.config.text_config.bos_token_id)  # fmt: skip
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as out:
        args = CaptioningTrainingArguments(
            output_dir=out, max_steps=steps + warmup + 1, per_device_train_batch_size=batch_size,
            learning_rate=5e-5, dataloader_num_workers=workers, dataloader_pin_memory=not use_cpu,
            dataloader_persistent_workers=workers > 0, dataloader_prefetch_factor=4 if workers > 0 else None,
            use_cpu=use_cpu, report_to="none", eval_strategy="no", save_strategy="no", logging_steps=10_000,
            bf16=precision == "bf16", fp16=precision == "fp16", disable_tqdm=True,
        )  # fmt: skip
        trainer = GenerationTrainer(model=model, args=args, data_collator=collator, train_dataset=dataset,
                                    processing_class=tokenizer, callbacks=[timer.callback])  # fmt: skip
        trainer.train()
        # model-only: the same trainer's training_step on batches collated beforehand and already on the device
        batches = [trainer._prepare_inputs(collator([dataset[i] for i in range(j, j + batch_size)]))
                   for j in range(0, batch_size * 8, batch_size)]  # fmt: skip
        model_times = []
        import torch

        for k in range(steps + warmup):
            start = time.perf_counter()
            trainer.training_step(trainer.model, batches[k % len(batches)])
            trainer.accelerator.clip_grad_norm_(trainer.model.parameters(), args.max_grad_norm)
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
            trainer.optimizer.zero_grad()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if k >= warmup:
                model_times.append(time.perf_counter() - start)
    return timer.times, model_times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "base"], default="tiny")
    parser.add_argument("--n", type=int, default=512, help="dataset rows")
    parser.add_argument("--image-side", type=int, default=1024, help="stored image side (pixels)")
    parser.add_argument("--image-format", choices=["JPEG", "PNG"], default="JPEG")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="timed steps (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=128, help="the seed's padding length")
    parser.add_argument("--workers", type=int, default=4, help="radtune's DataLoader workers")
    parser.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default=None,
                        help="default: bf16 on a GPU, fp32 on the CPU")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    import torch

    use_cpu = not torch.cuda.is_available()
    device = torch.device("cpu" if use_cpu else "cuda")
    precision = args.precision or ("fp32" if use_cpu else "bf16")
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    dataset = make_dataset(args.n, args.image_side, args.image_format)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(args.size, Path(tmp) / "blip")
        seed = seed_way(folder, dataset, args.batch_size, args.steps, args.warmup, args.max_length, device, dtype)
        full, model_only = radtune_way(folder, dataset, args.batch_size, args.steps, args.warmup, args.workers,
                                       use_cpu, None if precision == "fp32" else precision, args.max_length)  # fmt: skip
    seed_step, full_step, model_step = (statistics.median(t) for t in (seed, full, model_only))
    result = {
        "device": torch.cuda.get_device_name() if not use_cpu else "cpu",
        "size": args.size, "batch_size": args.batch_size, "precision": precision, "workers": args.workers,
        "seed_samples_per_s": args.batch_size / seed_step,
        "radtune_samples_per_s": args.batch_size / full_step,
        "speedup": seed_step / full_step,
        "full_over_model_only": full_step / model_step,
        "model_only_step_ms": 1000 * model_step,
    }  # fmt: skip
    print(f"device {result['device']}, BLIP {args.size}, batch {args.batch_size}, {precision}, "
          f"{args.image_side}-px {args.image_format}, "
          f"{args.workers} workers, median of {args.steps} steps")  # fmt: skip
    print(f"seed way    : {result['seed_samples_per_s']:8.1f} samples/s")
    print(f"radtune way : {result['radtune_samples_per_s']:8.1f} samples/s")
    print(f"speed-up    : {result['speedup']:8.2f}x  (target >= 2)")
    print(f"full step / model-only step: {result['full_over_model_only']:.3f}  (target <= 1.15; "
          f"model-only step {result['model_only_step_ms']:.1f} ms)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
