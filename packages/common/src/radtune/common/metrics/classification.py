"""Multi-label classification metrics: per-class ROC AUC, macro/micro AUC and F1 at a threshold.

A class whose evaluated labels hold no positive (or no negative) has no ROC curve: its AUC is reported as
undefined (`NaN`, written as `null` in metrics.json) and listed in `undefined`, never as 0 or 0.5, and the macro
average runs over the defined classes only. Labels may hold `NaN` for "not labelled" (e.g. CheXpert's blank
or an uncertain label mapped away); those entries are left out of that class's metrics and of the micro ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClassificationMetrics:
    """What `multilabel_metrics` returns.

    Attributes:
        metrics (`dict[str, float]`): `auc/<class>`, `f1/<class>`, `auc_macro`, `auc_micro`, `f1_macro`,
            `f1_micro` (NaN where undefined).
        undefined (`dict[str, str]`): metric name → why it is undefined.
    """

    metrics: dict[str, float]
    undefined: dict[str, str] = field(default_factory=dict)


def _f1(tp: int, fp: int, fn: int) -> float:
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else math.nan


def _roc_auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary `truth` (both classes present) as the Mann-Whitney U statistic over midranks: the same
    value as `sklearn.metrics.roc_auc_score`, ties included. Written out because sklearn validates its inputs on
    every call (about 2 ms on 600 items): a 1000-resample bootstrap over 6 classes spent 15 s there, most of a
    zero-shot evaluation; the ranking itself is scipy's."""
    from scipy.stats import rankdata

    positive = truth == 1
    n_positive = int(positive.sum())
    n_negative = len(truth) - n_positive
    rank_sum = float(rankdata(scores)[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def multilabel_metrics(
    y_true: Sequence[Sequence[float]] | np.ndarray,
    y_score: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    *,
    threshold: float = 0.5,
) -> ClassificationMetrics:
    """Per-class and averaged ROC AUC and F1 for multi-label scores.

    Args:
        y_true (`array (n, c)`): 1 positive, 0 negative, NaN not labelled.
        y_score (`array (n, c)`): scores or probabilities; higher means more likely positive.
        class_names (`Sequence[str]`): the c class names.
        threshold (`float`, *optional*, defaults to `0.5`): a score >= threshold predicts positive (for F1).

    Returns:
        `ClassificationMetrics`. F1 of a class with no positive label and no positive prediction is undefined
        too (0/0); `f1_micro` pools every labelled entry.
    """
    truth = np.asarray(y_true, dtype=float)
    scores = np.asarray(y_score, dtype=float)
    if truth.ndim != 2 or truth.shape != scores.shape:
        raise ValueError(f"y_true and y_score must be 2-D arrays of one shape, got {truth.shape} and {scores.shape}")
    if truth.shape[1] != len(class_names):
        raise ValueError(f"{truth.shape[1]} label columns but {len(class_names)} class names")
    labelled = ~np.isnan(truth)
    if not np.isin(truth[labelled], (0.0, 1.0)).all():
        raise ValueError("y_true may hold only 0, 1 or NaN")
    if not np.isfinite(scores).all():
        raise ValueError("y_score holds NaN or infinite values")

    metrics: dict[str, float] = {}
    undefined: dict[str, str] = {}
    aucs, f1s = [], []
    for j, name in enumerate(class_names):
        mask = labelled[:, j]
        t, s = truth[mask, j], scores[mask, j]
        positives = int(t.sum())
        if positives == 0 or positives == len(t):
            metrics[f"auc/{name}"] = math.nan
            undefined[f"auc/{name}"] = "no positive labels" if positives == 0 else "no negative labels"
        else:
            metrics[f"auc/{name}"] = _roc_auc(t, s)
            aucs.append(metrics[f"auc/{name}"])
        predicted = s >= threshold
        f1 = _f1(
            int((predicted & (t == 1)).sum()), int((predicted & (t == 0)).sum()), int((~predicted & (t == 1)).sum())
        )
        metrics[f"f1/{name}"] = f1
        if math.isnan(f1):
            undefined[f"f1/{name}"] = "no positive labels and no positive predictions"
        else:
            f1s.append(f1)

    metrics["auc_macro"] = float(np.mean(aucs)) if aucs else math.nan
    t, s = truth[labelled], scores[labelled]
    if 0 < t.sum() < len(t):
        metrics["auc_micro"] = _roc_auc(t, s)
    else:
        metrics["auc_micro"] = math.nan
        undefined["auc_micro"] = "the pooled labels hold only one class"
    if not aucs:
        undefined["auc_macro"] = "no class has both positive and negative labels"
    metrics["f1_macro"] = float(np.mean(f1s)) if f1s else math.nan
    predicted = s >= threshold
    metrics["f1_micro"] = _f1(
        int((predicted & (t == 1)).sum()), int((predicted & (t == 0)).sum()), int((~predicted & (t == 1)).sum())
    )
    return ClassificationMetrics(metrics=metrics, undefined=undefined)
