"""InfoNCE and triplet losses: exact values on small tensors, the clamped logit scale, and two gloo ranks that
match one process seeing the whole batch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radtune.contrastive.losses import InfoNCELoss, TripletLoss, build_loss, clamp_logit_scale_

HERE = Path(__file__).parent


def unit(rows) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=-1)


def direct_infonce(images: np.ndarray, texts: np.ndarray, scale: float) -> float:
    """Symmetric InfoNCE written out with explicit log-sum-exp loops."""
    n = len(images)
    logits = scale * images @ texts.T
    image_to_text = [-(logits[i, i] - math.log(sum(math.exp(logits[i, j]) for j in range(n)))) for i in range(n)]
    text_to_image = [-(logits[j, j] - math.log(sum(math.exp(logits[i, j]) for i in range(n)))) for j in range(n)]
    return (sum(image_to_text) / n + sum(text_to_image) / n) / 2


def test_infonce_equals_direct_computation():
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(5, 3, generator=generator, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(5, 3, generator=generator, dtype=torch.float64), dim=-1)
    logit_scale = torch.tensor(math.log(7.0), dtype=torch.float64)
    loss = InfoNCELoss()(images, texts, logit_scale)
    assert loss.item() == pytest.approx(direct_infonce(images.numpy(), texts.numpy(), 7.0), rel=1e-12)
    # Perfectly aligned, orthogonal pairs with a large scale: the loss goes to 0.
    eye = torch.eye(3, dtype=torch.float64)
    assert InfoNCELoss()(eye, eye, torch.tensor(math.log(100.0))).item() < 1e-30


def test_logit_scale_is_clamped_in_use_and_in_storage():
    images, texts = unit([[1, 0], [0.6, 0.8], [0, 1]]), unit([[0.8, 0.6], [1, 0], [0, 1]])
    too_large = torch.tensor(math.log(1e4), dtype=torch.float64, requires_grad=True)
    loss = InfoNCELoss()(images, texts, too_large)
    assert loss.item() == pytest.approx(direct_infonce(images.numpy(), texts.numpy(), 100.0), rel=1e-12)
    loss.backward()
    assert too_large.grad.item() == 0.0  # beyond the bound the scale no longer moves the loss
    parameter = torch.nn.Parameter(torch.tensor(9.0))
    clamp_logit_scale_(parameter)
    assert parameter.item() == pytest.approx(math.log(100.0))
    parameter.data.fill_(-3.0)
    clamp_logit_scale_(parameter)
    assert parameter.item() == 0.0


def brute_force_triplet(images: np.ndarray, texts: np.ndarray, margin: float, mining: str) -> float:
    """Both directions, every anchor, negatives chosen by looping over the candidates."""

    def one_direction(anchors, candidates):
        losses = []
        for i, anchor in enumerate(anchors):
            distances = [float(np.linalg.norm(anchor - candidate)) for candidate in candidates]
            positive = distances[i]
            negatives = [d for j, d in enumerate(distances) if j != i]
            if mining == "hardest":
                negative = min(negatives)
            else:
                farther = [d for d in negatives if d > positive]
                negative = min(farther) if farther else max(negatives)
            losses.append(max(0.0, positive - negative + margin))
        return sum(losses) / len(losses)

    return (one_direction(images, texts) + one_direction(texts, images)) / 2


def test_triplet_hardest_by_hand():
    # Two pairs. Image 0 sits on text 1 (distance 0) and √2 from its own text: the hardest negative is text 1.
    images = unit([[1, 0], [0, 1]])
    texts = unit([[0, 1], [1, 0]])
    loss = TripletLoss(margin=0.2, mining="hardest")(images, texts)
    # Every anchor (both directions) has d(a, p) = √2 and d(a, n) = 0, which the loss floors at √1e-12 = 1e-6 (sqrt's
    # gradient stays finite): loss = √2 - 1e-6 + 0.2 for each. (With the floor left out, the difference is 1e-6: an
    # absolute tolerance of 1e-6 passed or failed by the last bit.) float64 throughout: a relative tolerance of 1e-9.
    assert loss.item() == pytest.approx(math.sqrt(2) - math.sqrt(1e-12) + 0.2, rel=1e-9)
    aligned = TripletLoss(margin=0.2, mining="hardest")(images, images)
    assert aligned.item() == 0.0  # d(a, p) = 0, d(a, n) = √2 > margin: the hinge is exactly zero


@pytest.mark.parametrize("mining", ["hardest", "semi-hard"])
def test_triplet_matches_brute_force(mining):
    angles_images = np.radians([0, 50, 100, 170, 260])
    angles_texts = np.radians([20, 30, 140, 200, 250])
    images = np.stack([np.cos(angles_images), np.sin(angles_images)], axis=1)
    texts = np.stack([np.cos(angles_texts), np.sin(angles_texts)], axis=1)
    loss = TripletLoss(margin=0.5, mining=mining)(torch.tensor(images), torch.tensor(texts))
    assert loss.item() == pytest.approx(brute_force_triplet(images, texts, 0.5, mining), rel=1e-9)


def test_semi_hard_differs_from_hardest_where_it_should():
    # Anchor image 0 at 0°; its text at 40°; other texts at 10° (closer: hard, not semi-hard) and 60° (semi-hard).
    angles = np.radians
    images = np.stack([np.cos(angles([0, 180, 270])), np.sin(angles([0, 180, 270]))], axis=1)
    texts = np.stack([np.cos(angles([40, 10, 60])), np.sin(angles([40, 10, 60]))], axis=1)
    hardest = TripletLoss(margin=0.3, mining="hardest")._one_direction(torch.tensor(images[:1]), torch.tensor(texts), 0)
    semi = TripletLoss(margin=0.3, mining="semi-hard")._one_direction(torch.tensor(images[:1]), torch.tensor(texts), 0)
    chord = lambda degrees: 2 * math.sin(math.radians(degrees) / 2)  # noqa: E731
    assert hardest.item() == pytest.approx(chord(40) - chord(10) + 0.3, rel=1e-9)
    assert semi.item() == 0.0 == max(0.0, chord(40) - chord(60) + 0.3)  # the hinge is exactly zero


def test_build_loss_rejects_unknown_names():
    assert isinstance(build_loss("triplet", mining="semi-hard"), TripletLoss)
    with pytest.raises(ValueError, match="unknown loss 'siglip'"):
        build_loss("siglip")
    with pytest.raises(ValueError, match="mining"):
        TripletLoss(mining="easy")


@pytest.mark.distributed
def test_two_gloo_ranks_match_one_process_with_the_whole_batch(tmp_path):
    from radtune.common.launch import launch_command

    sys.path.insert(0, str(HERE))
    try:
        import loss_probe
    finally:
        sys.path.remove(str(HERE))

    out = tmp_path / "report.json"
    command = launch_command("loss_probe", [str(out)], cpu=True, num_processes=2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    for name, make in loss_probe.CASES.items():
        loss, grads = loss_probe.loss_and_grads(make(), slice(0, 8))
        assert report[name]["loss"] == pytest.approx(loss.item(), rel=1e-5), name
        for key, grad in grads.items():
            # float32 sums in another order: relative to the gradient's scale (its near-zero entries included)
            scale = float(np.abs(grad.numpy()).max())
            np.testing.assert_allclose(report[name]["grads"][key], grad.numpy(), rtol=1e-4, atol=1e-5 * scale,
                                       err_msg=f"{name} {key}")  # fmt: skip
        assert any(np.abs(np.asarray(g)).sum() > 0 for g in report[name]["grads"].values()), name
