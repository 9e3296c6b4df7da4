"""A QA dataset in radtune's export format whose answers depend on the image, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw


def _image(has_finding: bool, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = (rng.normal(60, 10, (32, 32))).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").convert("RGB")
    if has_finding:
        ImageDraw.Draw(image).ellipse((8, 8, 24, 24), fill=(240, 240, 240))
    return image


def _row(index: int, has_finding: bool) -> dict:
    question = "Is there a nodule?"
    answer = "Yes." if has_finding else "No."
    return {
        "id": f"q{index}",
        "messages": [
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": [_image(has_finding, index)],
        "question": question,
        "answer": answer,
        "answer_type": "closed",
    }


def _train_args(model_dir, data_dir, out_dir, *extra):
    from radtune.common.config import parse_args_and_config
    from radtune.llava_vqa.train import make_parser

    return parse_args_and_config(
        make_parser(),
        [
            "--model_name_or_path", str(model_dir), "--dataset_name", str(data_dir), "--output_dir", str(out_dir),
            "--use_cpu", "true", "--dtype", "float32", "--bf16", "false", "--report_to", "none",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1",
            "--activation_checkpointing", "false", "--learning_rate", "0.01", "--logging_steps", "1",
            "--lora_r", "4", "--lora_alpha", "8", "--save_strategy", "no", "--dataloader_num_workers", "0",
            "--max_new_tokens", "4", *extra,
        ],
    )  # fmt: skip


@pytest.fixture(scope="session")
def train_args():
    """`train_args(model_dir, data_dir, out_dir, *extra)`: parsed arguments of a short CPU run on the tiny LLaVA."""
    return _train_args


@pytest.fixture(scope="session")
def trained(tiny_model, qa_dataset_dir, tmp_path_factory):
    """One short training run (adapter folder, results) shared by the evaluate / predict / merge / Hub tests."""
    from radtune.llava_vqa.train import main

    out_dir = tmp_path_factory.mktemp("llava-run")
    results = main(*_train_args(tiny_model("llava"), qa_dataset_dir, out_dir, "--max_steps", "3"))
    return out_dir, results


@pytest.fixture(scope="session")
def qa_dataset_dir(tmp_path_factory):
    from datasets import Dataset, DatasetDict

    rows = [_row(i, i % 2 == 0) for i in range(24)]
    data = DatasetDict({"train": Dataset.from_list(rows[:16]), "test": Dataset.from_list(rows[16:])})
    folder = tmp_path_factory.mktemp("qa") / "phantom-qa"
    data.save_to_disk(folder)
    return folder


@pytest.fixture(scope="session")
def qa_row():
    """`qa_row(index, has_finding)`: one row of the QA export format whose answer says whether a nodule is drawn."""
    return _row
