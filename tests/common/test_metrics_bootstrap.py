"""Bootstrap intervals: contain the estimate, shrink with more items, are reproducible; the ablation verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radtune.common.metrics.bootstrap import (
    bootstrap_ci,
    bootstrap_cis,
    image_ablation_verdict,
    mean_ci,
    paired_difference_ci,
)


def test_interval_contains_the_estimate_and_shrinks_with_more_items():
    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400, 4000):
        values = (rng.random(n) < 0.7).astype(float)
        low, high = mean_ci(values, n_resamples=400)
        assert low <= values.mean() <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # The normal approximation of a proportion's 95% interval at n=4000: 2 * 1.96 * sqrt(.21 / 4000) ≈ 0.028.
    assert widths[2] == pytest.approx(2 * 1.96 * math.sqrt(0.7 * 0.3 / 4000), rel=0.25)


def test_same_seed_same_interval_and_corpus_statistic():
    values = np.linspace(0, 1, 50)
    assert mean_ci(values, seed=3) == mean_ci(values, seed=3)
    assert mean_ci(values, seed=3) != mean_ci(values, seed=4)
    # A statistic over the whole resampled set (here the median), not a mean of per-item scores.
    low, high = bootstrap_ci(len(values), lambda idx: float(np.median(values[idx])), n_resamples=300)
    assert low <= np.median(values) <= high


def test_joint_intervals_equal_one_metric_at_a_time_with_one_call_per_resample():
    values = np.random.default_rng(2).random(60)
    calls = []

    def statistics(idx):
        calls.append(1)
        return {"mean": float(values[idx].mean()), "median": float(np.median(values[idx]))}

    joint = bootstrap_cis(len(values), statistics, ["mean", "median"], n_resamples=200, seed=5)
    assert len(calls) == 200
    for name in ("mean", "median"):
        alone = bootstrap_ci(len(values), lambda idx, n=name: statistics(idx)[n], n_resamples=200, seed=5)
        assert joint[name] == pytest.approx(alone)
    assert all(math.isnan(v) for v in bootstrap_cis(1, statistics, ["mean"])["mean"])


def test_degenerate_inputs():
    assert mean_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert all(math.isnan(v) for v in mean_ci([0.5]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(10, lambda idx: 0.0, confidence=1.5)


def test_paired_difference():
    a = np.array([1.0, 1, 1, 0, 1, 1, 1, 1, 0, 1] * 10)
    b = np.array([0.0, 1, 0, 0, 1, 0, 1, 0, 0, 1] * 10)
    diff, (low, high) = paired_difference_ci(a, b, n_resamples=500)
    assert diff == pytest.approx((a - b).mean())
    assert 0 < low <= diff <= high
    with pytest.raises(ValueError, match="same items"):
        paired_difference_ci(a, b[:5])


def test_ablation_verdict():
    flagged = image_ablation_verdict(0.62, (0.55, 0.69), {"blank": 0.60, "noise": 0.40})
    assert flagged["ignores_image"] and flagged["overlapping"] == ["blank"]
    assert flagged["gap"] == pytest.approx(0.02)
    better_without = image_ablation_verdict(0.62, (0.55, 0.69), {"blank": 0.75, "noise": 0.30})
    assert better_without["ignores_image"]
    uses_image = image_ablation_verdict(0.95, (0.91, 0.98), {"blank": 0.52, "noise": 0.50})
    assert not uses_image["ignores_image"] and uses_image["overlapping"] == []
