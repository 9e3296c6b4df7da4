"""Exact resume of contrastive training (CLIP and the dual encoder): a run resumed from an intermediate checkpoint
logs the losses of the uninterrupted run and ends with its weights.

With image augmentation off: augmentation draws from Python's global `random`, and the Trainer prepares the batch after
a checkpoint before it saves that checkpoint's random state, so an augmented run resumes with other augmentations
(per-row seeding would fix it, but changes the demo's CLIP: macro AUC 0.873 -> 0.800 on the same machine; left for the
issue on the demo's margins)."""

from __future__ import annotations

import pytest

from radtune.common.config import parse_args_and_config
from radtune.contrastive.train import main, make_parser

pytestmark = pytest.mark.slow

MODES = {"clip-frozen-vision": ("clip", ["--freeze_vision_tower", "true"]), "dual-encoder": ("dual-encoder", [])}


@pytest.mark.parametrize("mode", MODES)
def test_resumed_run_matches_the_uninterrupted_run(mode, exact_resume, tiny_model, pair_dataset):
    kind, extra = MODES[mode]

    def train(out_dir, *flags):
        main(*parse_args_and_config(make_parser(), [
            "--model_name_or_path", str(tiny_model(kind)), "--dataset_name", str(pair_dataset),
            "--output_dir", str(out_dir), "--per_device_train_batch_size", "8", "--use_cpu", "true",
            "--logging_steps", "1", "--warmup_steps", "0", "--seed", "0", "--report_to", "none",
            "--eval_after_training", "false", "--augment", "false", *extra, *flags]))  # fmt: skip

    exact_resume(train, f"contrastive-{mode}")
