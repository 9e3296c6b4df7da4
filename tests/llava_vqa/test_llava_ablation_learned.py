"""The image-ablation check on trained models: one that learned to read the image is not flagged, one trained on
answers independent of the images is.

Both train the tiny LLaVA fully (its language model is random weights) on the same images and question; only the
answers differ: whether the nodule is drawn, or a coin flip unrelated to the image.
"""

from __future__ import annotations

import json
import random

import pytest


def _dataset(folder, qa_row, image_dependent: bool):
    from datasets import Dataset, DatasetDict

    rows = [qa_row(i, i % 2 == 0) for i in range(96)]
    if not image_dependent:
        coin = random.Random(0)
        for row in rows:
            row["answer"] = coin.choice(["Yes.", "No."])
            row["messages"][1]["content"][0]["text"] = row["answer"]
    DatasetDict({"train": Dataset.from_list(rows[:64]), "test": Dataset.from_list(rows[64:])}).save_to_disk(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("image_dependent", [True, False], ids=["reads-the-image", "labels-independent-of-images"])
def test_ablation_flags_only_the_model_that_ignores_the_image(image_dependent, qa_row, tiny_model, train_args,
                                                              tmp_path):  # fmt: skip
    from radtune.llava_vqa.train import main

    data = _dataset(tmp_path / "qa", qa_row, image_dependent)
    out_dir = tmp_path / "run"
    main(*train_args(tiny_model("llava"), data, out_dir, "--use_peft", "false", "--train_projector", "true",
                     "--learning_rate", "0.003", "--num_train_epochs", "8", "--eval_ablation", "true",
                     "--eval_batch_size", "16"))  # fmt: skip
    report = json.loads((out_dir / "metrics.json").read_text())
    accuracy, verdict = report["metrics"]["strict/closed_accuracy"], report["meta"]["image_ablation"]
    blank, noise = (report["metrics"][f"ablation/{kind}/strict/closed_accuracy"] for kind in ("blank", "noise"))
    low, high = report["ci"]["strict/closed_accuracy"]
    if image_dependent:
        assert accuracy >= 0.9, report["metrics"]
        assert verdict["ignores_image"] is False and verdict["overlapping"] == []
        assert low > max(blank, noise)
    else:
        assert verdict["ignores_image"] is True and verdict["overlapping"]
        assert max(blank, noise) >= low  # the real-image interval reaches an ablated score
