"""Contrastive losses for image–text pairs, each an `nn.Module` that owns its distributed gather.

Shaped after open_clip's `ClipLoss`: the forward takes L2-normalised image and text features of the *local* batch
(plus the model's log logit scale for InfoNCE), gathers the features of every rank with
an all-gather whose backward carries gradients back to the rank that produced them, and
computes the loss over the global batch, so the negatives of every pair are the whole global batch.

Why the gradients come out right under DDP: the backward of the gathering all-gather sums, over ranks, the
gradient each rank's loss sends to a feature; DDP then averages parameter gradients over the ranks. With
`local_loss=False` every rank computes the same global loss `L`, so the sum is `world_size * dL/dx` and the
average divides it back. With `local_loss=True` rank `r` computes `L_r` over its own rows against all columns,
`L = mean_r L_r`, and sum-then-average gives `dL/dx` again. Either way training matches one process that sees
the whole batch (tests/contrastive/test_contrastive_losses.py checks this with two gloo ranks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InfoNCELoss", "TripletLoss", "LOSSES", "build_loss", "gather_features", "clamp_logit_scale_"]

# CLIP's bound: the logit scale exp(s) never exceeds 100 (temperature >= 0.01).
MAX_LOGIT_SCALE = 100.0


def _world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each rank the gradient of its own rows summed over every rank's loss.

    Written out (all-reduce of the whole gradient, then this rank's slice) instead of taking
    `torch.distributed.nn.functional.all_gather`: that one is deprecated in torch 2.13, and on gloo its backward
    goes through all-to-all, which aborted processes at exit now and then in our two-rank tests.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor) -> torch.Tensor:
        rank, world_size = _world()
        ctx.rank, ctx.batch = rank, features.shape[0]
        gathered = [torch.empty_like(features) for _ in range(world_size)]
        torch.distributed.all_gather(gathered, features.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_features(features: torch.Tensor) -> torch.Tensor:
    """Concatenate `features` of every rank along the batch, in rank order, keeping gradients.

    On a single process this returns `features` unchanged. Every rank must pass the same batch size.
    """
    _, world_size = _world()
    if world_size == 1:
        return features
    return _GatherWithGrad.apply(features)


def clamp_logit_scale_(logit_scale: torch.Tensor, max_logit_scale: float = MAX_LOGIT_SCALE) -> None:
    """Clamp a log logit scale parameter in place to `[0, log(max_logit_scale)]` (open_clip does this after
    every optimizer step, so the stored parameter, not only its use, stays in range)."""
    with torch.no_grad():
        logit_scale.clamp_(0.0, math.log(max_logit_scale))


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE (CLIP's loss): cross-entropy of image→text and text→image similarity logits.

    The temperature is learnable: it lives in the model as a log logit scale `s` (CLIP's `logit_scale`, initial
    value `log(1/0.07)`), and the logits are `exp(clamp(s, 0, log(max_logit_scale))) * image @ text.T`.

    Args:
        local_loss (`bool`, *optional*, defaults to `False`): each rank computes the loss of its own rows
            against the global batch (memory `O(local × global)` instead of `O(global²)`); same gradients.
        max_logit_scale (`float`, *optional*, defaults to `100.0`): upper bound of `exp(s)`.

    Shape:
        `image_features`, `text_features`: `(local_batch, dim)`, L2-normalised; `logit_scale`: a scalar tensor.
        Returns a scalar.
    """

    def __init__(self, local_loss: bool = False, max_logit_scale: float = MAX_LOGIT_SCALE):
        super().__init__()
        self.local_loss = local_loss
        self.max_logit_scale = max_logit_scale

    def logits(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits per image, per text and the target column of each row (for the local or global rows)."""
        rank, _ = _world()
        scale = logit_scale.clamp(0.0, math.log(self.max_logit_scale)).exp()
        all_image = gather_features(image_features)
        all_text = gather_features(text_features)
        if self.local_loss:
            logits_per_image = scale * image_features @ all_text.T
            logits_per_text = scale * text_features @ all_image.T
            offset = rank * image_features.shape[0]
        else:
            logits_per_image = scale * all_image @ all_text.T
            logits_per_text = logits_per_image.T
            offset = 0
        labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device) + offset
        return logits_per_image, logits_per_text, labels

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
    ) -> torch.Tensor:
        logits_per_image, logits_per_text, labels = self.logits(image_features, text_features, logit_scale)
        return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


class TripletLoss(nn.Module):
    """Triplet margin loss with in-batch negatives, in both directions (image anchors and text anchors).

    For an anchor `a` with its positive `p` (the paired item of the other modality) and a negative `n` (another
    pair's item of the other modality), the loss is `max(0, d(a, p) - d(a, n) + margin)` with `d` the Euclidean
    distance between L2-normalised features (`sqrt(2 - 2 cos)`). Negatives come from the global batch.

    Args:
        margin (`float`, *optional*, defaults to `0.2`): the margin.
        mining (`str`, *optional*, defaults to `"hardest"`): `"hardest"`: the closest negative of each anchor;
            `"semi-hard"` (FaceNet): the closest negative farther than the positive, or, where there is none, the
            farthest negative (as TensorFlow Addons' `triplet_semihard_loss` does).
        local_loss (`bool`, *optional*, defaults to `False`): only this rank's anchors (negatives stay global).

    The logit scale argument is accepted and ignored, so both losses share one call signature. A global batch of
    a single pair (no negative) gives a zero loss.
    """

    MINING = ("hardest", "semi-hard")

    def __init__(self, margin: float = 0.2, mining: str = "hardest", local_loss: bool = False):
        super().__init__()
        if mining not in self.MINING:
            raise ValueError(f"mining must be one of {self.MINING}, got {mining!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin
        self.mining = mining
        self.local_loss = local_loss

    def _one_direction(self, anchors: torch.Tensor, candidates: torch.Tensor, offset: int) -> torch.Tensor:
        # Euclidean distances of unit vectors; the clamp keeps sqrt's gradient finite at d = 0.
        distances = (2 - 2 * anchors @ candidates.T).clamp_min(1e-12).sqrt()
        rows = torch.arange(anchors.shape[0], device=anchors.device)
        positive_columns = rows + offset
        positive = distances[rows, positive_columns]
        is_negative = torch.ones_like(distances, dtype=torch.bool)
        is_negative[rows, positive_columns] = False
        if self.mining == "hardest":
            negative = distances.masked_fill(~is_negative, float("inf")).min(dim=1).values
        else:
            farther = is_negative & (distances > positive[:, None])
            closest_farther = distances.masked_fill(~farther, float("inf")).min(dim=1).values
            farthest = distances.masked_fill(~is_negative, float("-inf")).max(dim=1).values
            negative = torch.where(farther.any(dim=1), closest_farther, farthest)
        return F.relu(positive - negative + self.margin).mean()

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | None = None
    ) -> torch.Tensor:
        rank, _ = _world()
        all_image = gather_features(image_features)
        all_text = gather_features(text_features)
        if all_image.shape[0] < 2:
            # A last batch of one pair has no negative: contribute nothing (but stay in the graph).
            return (image_features.sum() + text_features.sum()) * 0.0
        if self.local_loss:
            offset = rank * image_features.shape[0]
            image_anchors, text_anchors = image_features, text_features
        else:
            offset = 0
            image_anchors, text_anchors = all_image, all_text
        return (self._one_direction(image_anchors, all_text, offset) + self._one_direction(text_anchors, all_image, offset)) / 2


LOSSES = ("infonce", "triplet")


def build_loss(name: str, local_loss: bool = False, margin: float = 0.2, mining: str = "hardest") -> nn.Module:
    """The loss called `name` (`"infonce"` or `"triplet"`)."""
    if name == "infonce":
        return InfoNCELoss(local_loss=local_loss)
    if name == "triplet":
        return TripletLoss(margin=margin, mining=mining, local_loss=local_loss)
    raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
