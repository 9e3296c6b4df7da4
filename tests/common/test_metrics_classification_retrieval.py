"""Multi-label AUC/F1 against scikit-learn (with undefined classes) and retrieval metrics against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from radtune.common.metrics.classification import multilabel_metrics
from radtune.common.metrics.retrieval import retrieval_metrics

CLASSES = ["Atelectasis", "Cardiomegaly", "Edema", "Fracture", "Support Devices"]


@pytest.fixture
def labelled():
    rng = np.random.default_rng(0)
    truth = (rng.random((80, 5)) < 0.4).astype(float)
    truth[:, 3] = 0.0  # Fracture: no positives at all
    truth[:, 4] = 1.0  # Support Devices: no negatives
    truth[rng.random((80, 5)) < 0.1] = np.nan  # some entries not labelled
    truth[:, 3][np.isnan(truth[:, 3])] = 0.0
    scores = np.round(rng.random((80, 5)), 1)  # rounded: plenty of ties
    scores[:, 0] = np.where(truth[:, 0] == 1, scores[:, 0] + 0.3, scores[:, 0])
    return truth, scores


def test_auc_and_f1_match_sklearn_with_undefined_classes(labelled):
    truth, scores = labelled
    result = multilabel_metrics(truth, scores, CLASSES, threshold=0.5)
    defined = []
    for j, name in enumerate(CLASSES):
        mask = ~np.isnan(truth[:, j])
        t, s = truth[mask, j], scores[mask, j]
        if len(set(t)) < 2:
            assert math.isnan(result.metrics[f"auc/{name}"])
            assert f"auc/{name}" in result.undefined
        else:
            expected = roc_auc_score(t, s)
            assert result.metrics[f"auc/{name}"] == pytest.approx(expected, abs=1e-12)
            defined.append(expected)
        f1 = f1_score(t, s >= 0.5, zero_division=np.nan)
        assert result.metrics[f"f1/{name}"] == pytest.approx(f1, nan_ok=True)
    assert result.undefined["auc/Fracture"] == "no positive labels"
    assert result.undefined["auc/Support Devices"] == "no negative labels"
    assert result.metrics["auc_macro"] == pytest.approx(np.mean(defined))
    mask = ~np.isnan(truth)
    assert result.metrics["auc_micro"] == pytest.approx(roc_auc_score(truth[mask], scores[mask]))
    assert result.metrics["f1_micro"] == pytest.approx(f1_score(truth[mask], scores[mask] >= 0.5))


@pytest.mark.parametrize("n", [2, 3, 17, 600])
def test_auc_matches_sklearn_on_random_draws_with_ties(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        truth = np.zeros((n, 1))
        truth[rng.choice(n, size=rng.integers(1, n), replace=False), 0] = 1.0  # both classes present
        scores = rng.integers(0, rng.integers(1, 6), (n, 1)).astype(float)  # a few distinct values: many ties
        expected = roc_auc_score(truth[:, 0], scores[:, 0])
        assert multilabel_metrics(truth, scores, ["a"]).metrics["auc/a"] == pytest.approx(expected, rel=1e-12)


def test_undefined_is_not_zero_when_nothing_is_defined():
    result = multilabel_metrics([[0, 1], [0, 1]], [[0.2, 0.9], [0.1, 0.8]], ["a", "b"])
    assert math.isnan(result.metrics["auc_macro"]) and math.isnan(result.metrics["auc/a"])
    assert math.isnan(result.metrics["f1/a"])  # no positive label and no positive prediction: 0/0
    assert result.metrics["f1/b"] == 1.0


@pytest.mark.parametrize(
    ("truth", "scores", "match"),
    [
        ([[0, 1]], [[0.1, 0.2, 0.3]], "one shape"),
        ([[0, 2]], [[0.1, 0.2]], "only 0, 1 or NaN"),
        ([[0, 1]], [[0.1, float("nan")]], "NaN"),
        ([[0, 1, 0]], [[0.1, 0.2, 0.3]], "class names"),
    ],
)
def test_classification_rejects_malformed_input(truth, scores, match):
    with pytest.raises(ValueError, match=match):
        multilabel_metrics(truth, scores, ["a", "b"])


def _brute_force_ranks(sim: np.ndarray, owner: np.ndarray) -> tuple[list[int], list[int]]:
    """Sort every candidate list by score, ties with the correct items placed last; rank of the first correct."""
    i2t, t2i = [], []
    for i in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda j: (-sim[i, j], owner[j] == i))
        i2t.append(next(k for k, j in enumerate(order, start=1) if owner[j] == i))
    for j in range(sim.shape[1]):
        order = sorted(range(sim.shape[0]), key=lambda i: (-sim[i, j], i == owner[j]))
        t2i.append(order.index(owner[j]) + 1)
    return i2t, t2i


@pytest.mark.parametrize("seed", range(5))
def test_retrieval_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n_images = 23
    owner = np.concatenate([np.arange(n_images), rng.integers(0, n_images, size=9)])  # some images: 2+ texts
    sim = rng.integers(0, 4, size=(n_images, len(owner))).astype(float)  # four values: ties everywhere
    result = retrieval_metrics(sim, owner)
    i2t, t2i = _brute_force_ranks(sim, owner)
    for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
        for k in (1, 5, 10):
            assert result[f"{direction}/recall@{k}"] == pytest.approx(np.mean(np.array(ranks) <= k))
        assert result[f"{direction}/median_rank"] == np.median(ranks)


def test_retrieval_ties_are_pessimistic_and_order_free():
    result = retrieval_metrics(np.zeros((4, 4)))
    assert result["i2t/recall@1"] == 0.0 and result["i2t/median_rank"] == 4.0
    assert retrieval_metrics(np.eye(4))["t2i/recall@1"] == 1.0


@pytest.mark.parametrize(
    ("sim", "owner", "match"),
    [
        (np.zeros((2, 3)), None, "needs text_to_image"),
        (np.zeros((2, 2)), [0, 2], "outside"),
        (np.zeros((3, 2)), [0, 1], "have no text"),
        (np.array([[np.nan, 0], [0, 0]]), None, "NaN"),
    ],
)
def test_retrieval_rejects_malformed_input(sim, owner, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(sim, owner)
