"""Cross-modal retrieval metrics from a similarity matrix: Recall@K and median rank, both directions.

Tie rule (deterministic, pessimistic): a correct item ranks *after* every wrong item with an equal score, so
rank = 1 + the number of wrong candidates scoring >= the correct one. A constant similarity matrix therefore
gets the worst ranks, not lucky ones, and the result never depends on the order of the candidates.
When an image has several correct texts, its image→text rank is that of its best-scoring correct text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def _ranks(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Per row: 1 + number of wrong columns scoring >= the best correct column (boolean mask `correct`)."""
    best = np.where(correct, scores, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((scores >= best) & ~correct).sum(axis=1)


def retrieval_metrics(
    similarity: Sequence[Sequence[float]] | np.ndarray,
    text_to_image: Sequence[int] | None = None,
    *,
    recall_at: Sequence[int] = RECALL_AT,
) -> dict[str, float]:
    """Image→text and text→image Recall@K and median rank.

    Args:
        similarity (`array (n_images, n_texts)`): higher = more similar.
        text_to_image (`Sequence[int]`, *optional*): the index of each text's image; defaults to the diagonal
            (text j belongs to image j, needs a square matrix).
        recall_at (`Sequence[int]`, *optional*, defaults to `(1, 5, 10)`).

    Returns:
        `dict[str, float]`: `i2t/recall@K`, `t2i/recall@K`, `i2t/median_rank`, `t2i/median_rank`
        (recall in 0..1, ranks from 1).
    """
    sim = np.asarray(similarity, dtype=float)
    if sim.ndim != 2 or 0 in sim.shape:
        raise ValueError(f"similarity must be a non-empty 2-D matrix, got shape {sim.shape}")
    if not np.isfinite(sim).all():
        raise ValueError("similarity holds NaN or infinite values")
    n_images, n_texts = sim.shape
    if text_to_image is None:
        if n_images != n_texts:
            raise ValueError(f"a {n_images}x{n_texts} matrix needs text_to_image")
        owner = np.arange(n_texts)
    else:
        owner = np.asarray(text_to_image)
        if owner.shape != (n_texts,) or not np.issubdtype(owner.dtype, np.integer):
            raise ValueError(f"text_to_image must hold {n_texts} integer image indices")
        if owner.min() < 0 or owner.max() >= n_images:
            raise ValueError(f"text_to_image holds an index outside 0..{n_images - 1}")
    correct = owner[None, :] == np.arange(n_images)[:, None]  # (images, texts)
    has_text = correct.any(axis=1)
    if not has_text.all():
        raise ValueError(f"images {np.flatnonzero(~has_text)[:10].tolist()} have no text")

    out: dict[str, float] = {}
    for direction, ranks in (("i2t", _ranks(sim, correct)), ("t2i", _ranks(sim.T, correct.T))):
        for k in recall_at:
            out[f"{direction}/recall@{k}"] = float((ranks <= k).mean())
        out[f"{direction}/median_rank"] = float(np.median(ranks))
    return out
