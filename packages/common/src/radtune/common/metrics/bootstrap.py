"""Bootstrap confidence intervals over evaluation items, and the image-ablation check built on them.

Intervals are percentile intervals over resampled item indices, with a fixed seed, so a corpus-level statistic
(CIDEr, AUC) is recomputed on every resample exactly as it is on the full set. The resamples and the percentiles
are those of `scipy.stats.bootstrap(..., method="percentile")`, except that a resample on which a metric is
undefined (NaN: an AUC on a resample without a positive, as CheXzero's bootstrap skips them) is left out of that
metric's interval instead of turning the whole interval into NaN with a warning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


def bootstrap_ci(
    n_items: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `n_items` evaluation items.

    Args:
        n_items (`int`): number of items.
        statistic (`Callable[[np.ndarray], float]`): computes the metric from an array of item indices (with
            repeats); it is called once per resample.
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples.
        confidence (`float`, *optional*, defaults to `0.95`): confidence level.
        seed (`int`, *optional*, defaults to `0`): seed of the resampling.

    Returns:
        `(low, high)` over the resamples where the statistic is defined; `(nan, nan)` for fewer than two items
        or when fewer than two resamples are defined.
    """
    low, high = _percentile_interval(n_items, lambda indices: [statistic(indices)], n_resamples, confidence, seed)
    return (float(low[0]), float(high[0]))


def bootstrap_cis(
    n_items: int,
    statistics: Callable[[np.ndarray], Mapping[str, float]],
    names: Sequence[str],
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """`bootstrap_ci` of several metrics that one computation gives together (e.g. every class's AUC and the macro
    AUC): `statistics` is called once per resample, not once per metric and resample.

    Returns:
        `{name: (low, high)}` for each of `names`, as `bootstrap_ci` gives them.
    """
    names = list(names)

    def statistic(indices):
        values = statistics(indices)
        return [values[name] for name in names]

    low, high = _percentile_interval(n_items, statistic, n_resamples, confidence, seed, n_values=len(names))
    return {name: (float(lo), float(hi)) for name, lo, hi in zip(names, low, high, strict=True)}


def _percentile_interval(
    n_items: int,
    statistic: Callable[[np.ndarray], Sequence[float]],
    n_resamples: int,
    confidence: float,
    seed: int,
    n_values: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Low and high percentile bounds of each of the `n_values` metrics `statistic` returns, each over the
    resamples where that metric is not NaN."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    low, high = np.full(n_values, math.nan), np.full(n_values, math.nan)
    if n_items < 2 or n_values == 0:
        return low, high
    # The draws of scipy.stats.bootstrap with batch=None: one (n_resamples, n_items) matrix of indices.
    indices = np.random.default_rng(seed).integers(0, n_items, (n_resamples, n_items))
    values = np.array([statistic(row) for row in indices], dtype=float).reshape(n_resamples, n_values)
    alpha = (1 - confidence) / 2
    for column in range(n_values):
        defined = values[:, column][~np.isnan(values[:, column])]
        if len(defined) >= 2:
            low[column], high[column] = np.quantile(defined, [alpha, 1 - alpha])
    return low, high


def mean_ci(values: Sequence[float], **kwargs) -> tuple[float, float]:
    """Bootstrap interval of the mean of per-item scores (accuracy, recall, …)."""
    array = np.asarray(values, dtype=float)
    if len(array) >= 2 and np.all(array == array[0]):
        return (float(array[0]), float(array[0]))  # every resample has the same mean
    return bootstrap_ci(len(array), lambda indices: float(array[indices].mean()), **kwargs)


def paired_difference_ci(
    values_a: Sequence[float], values_b: Sequence[float], **kwargs
) -> tuple[float, tuple[float, float]]:
    """Mean of `a - b` over the same items, with its paired bootstrap interval (both runs resampled together)."""
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same items: got {len(a)} and {len(b)}")
    difference = a - b
    return float(difference.mean()) if len(difference) else math.nan, mean_ci(difference, **kwargs)


def image_ablation_verdict(
    real_value: float, real_ci: Sequence[float], ablated: Mapping[str, float]
) -> dict[str, object]:
    """Decide whether a model ignores its image input.

    The model is flagged when the real-image metric's interval contains (overlaps) the metric it reaches with a
    blank or a noise image: then nothing shows that the image matters to its answers.

    Args:
        real_value (`float`): the metric with the real images.
        real_ci (`Sequence[float]`): its bootstrap interval `(low, high)`.
        ablated (`Mapping[str, float]`): the same metric per ablation, e.g. `{"blank": 0.61, "noise": 0.58}`.

    Returns:
        `dict` with `ignores_image` (`bool`), `overlapping` (the ablations inside the interval) and `gap` (real
        value minus the best ablated value: how much the image adds).
    """
    low, high = real_ci
    if math.isnan(low) or math.isnan(high):
        low = high = real_value
    # An ablated score inside the interval, or above it, gives no evidence that the image helps.
    overlapping = sorted(name for name, value in ablated.items() if value >= low)
    best = max(ablated.values()) if ablated else math.nan
    return {"ignores_image": bool(overlapping), "overlapping": overlapping, "gap": real_value - best}


def ablation_message(verdict: Mapping) -> str:
    """The line a command prints for an `image_ablation_verdict` stored in `metrics.json` (`meta.image_ablation`,
    which adds the deciding `metric`)."""
    metric, gap = verdict["metric"], verdict["gap"]
    if verdict["ignores_image"]:
        return (f"WARNING: the model ignores the image: with {', '.join(verdict['overlapping'])} images its {metric} "
                f"falls inside the real-image interval (gap {gap:+.4f}).")  # fmt: skip
    return f"the image matters: {metric} is {gap:+.4f} above the best blank/noise-image score."
