"""Exact resume of contrastive training (CLIP and the dual encoder): a run resumed from an intermediate checkpoint
logs the losses of the uninterrupted run and ends with its weights.

Augmented runs resume exactly too: each row's augmentation draws from a generator seeded by (seed, epoch, row), not
from Python's global `random` (the Trainer prepares the batch after a checkpoint before it saves that checkpoint's
random state, so a global stream resumed with other augmentations)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from radtune.common.config import parse_args_and_config
from radtune.contrastive.data import ROW_COLUMN, RadiographAugment, pair_transform
from radtune.contrastive.train import main, make_parser

MODES = {
    "clip-frozen-vision": ("clip", ["--freeze_vision_tower", "true", "--augment", "false"]),
    "dual-encoder": ("dual-encoder", ["--augment", "false"]),
    # 24 rows, batch 8: 3 steps an epoch; resumed at step 4 (inside epoch 1), it crosses into epoch 2 at step 7.
    "clip-augmented": ("clip", ["--augment", "true"]),
}
STEPS = {"clip-augmented": {"steps": 8, "save_steps": 2, "resume_at": 4}}


def test_each_rows_augmentation_depends_on_seed_epoch_and_row_only():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)).convert("RGB")
    batch = {"image": [image, image], "text": ["a", "b"], ROW_COLUMN: [0, 1]}
    augment = RadiographAugment(rotation_degrees=10.0, crop_min_area=0.8, brightness=0.2, contrast=0.2)

    def pixels(seed, epoch, rows=batch):
        transform = pair_transform("image", "text", augment=augment, seed=seed)
        transform.epoch = epoch
        return [np.asarray(out) for out in transform(rows)["image"]]

    first = pixels(0, 0)
    # Same seed, epoch and row: the same image, whatever else is in the batch or was drawn before.
    np.testing.assert_array_equal(pixels(0, 0, {key: value[1:] for key, value in batch.items()})[0], first[1])
    np.testing.assert_array_equal(pixels(0, 0)[0], first[0])
    # Another row, epoch or seed: another augmentation (the same input image in both rows).
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(pixels(0, 1)[0], first[0])
    assert not np.array_equal(pixels(1, 0)[0], first[0])
    with pytest.raises(ValueError, match=ROW_COLUMN):
        pair_transform("image", "text", augment=augment)({"image": [image], "text": ["a"]})


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_resumed_run_matches_the_uninterrupted_run(mode, exact_resume, tiny_model, pair_dataset):
    kind, extra = MODES[mode]

    def train(out_dir, *flags):
        main(*parse_args_and_config(make_parser(), [
            "--model_name_or_path", str(tiny_model(kind)), "--dataset_name", str(pair_dataset),
            "--output_dir", str(out_dir), "--per_device_train_batch_size", "8", "--use_cpu", "true",
            "--logging_steps", "1", "--warmup_steps", "0", "--seed", "0", "--report_to", "none",
            "--eval_after_training", "false", *extra, *flags]))  # fmt: skip

    full, _ = exact_resume(train, f"contrastive-{mode}", **STEPS.get(mode, {}))
    if mode == "clip-augmented":  # the augmentation was applied: the same run without it logs other losses
        train(full.parent / "plain", "--max_steps", "8", "--augment", "false")

        def losses(folder):
            history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
            return [row["loss"] for row in history if "loss" in row]

        assert losses(full.parent / "plain") != losses(full)
