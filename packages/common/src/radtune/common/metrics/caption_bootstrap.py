"""Bootstrap intervals of the corpus captioning metrics, from per-item statistics computed once.

Rescoring 1,000 resampled corpora through pycocoevalcap would tokenise and rescore each of them. Instead every
item's share of each metric is computed once, on the same tokens `caption_metrics` scores, and a resample's
metric follows from the shares of its items:

- BLEU-1..4, exact: pycocoevalcap's corpus BLEU is a function of counts summed over the items (hypothesis
  length, closest reference length, n-gram guesses and clipped matches: `BleuScorer` with option "closest"),
  so a resample's BLEU is computed from the summed counts of its items, exactly as pycocoevalcap would.
- ROUGE-L, exact: the corpus score is the mean of the item scores.
- CIDEr-D, the standard approximation: an item's CIDEr-D uses document frequencies over the references of the
  whole corpus, which a resample would change slightly. The items are scored once with the full corpus's
  document frequencies and a resample's CIDEr-D is the mean of its items' scores, as CIDEr intervals usually are.
- METEOR: no interval. Its corpus score is the METEOR jar's aggregate of pooled statistics, not a mean of item
  scores, and rescoring every resample through the jar is too slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radtune.common.metrics.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci, mean_ci

BLEU_ORDER = 4
INTERVAL_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider")
INTERVAL_NOTES = {
    "cider": "approximate: items scored once with the full corpus's document frequencies, resamples averaged",
    "meteor": "no interval: METEOR's corpus score is the jar's aggregate, not a mean of item scores",
}
# pycocoevalcap's BleuScorer constants: they keep a zero count from dividing by zero.
_BLEU_TINY, _BLEU_SMALL = 1e-15, 1e-9


@dataclass
class CaptionItemStatistics:
    """Each item's share of the corpus metrics.

    Attributes:
        bleu_counts (`np.ndarray`): `(n, 2 + 2 * 4)`: hypothesis length, closest reference length, then the
            n-gram guesses and clipped matches for n = 1..4 (pycocoevalcap's `testlen`, `reflen`, `guess`,
            `correct`).
        rouge_l (`np.ndarray`): `(n,)` item ROUGE-L.
        cider (`np.ndarray`): `(n,)` item CIDEr-D with the full corpus's document frequencies.
    """

    bleu_counts: np.ndarray
    rouge_l: np.ndarray
    cider: np.ndarray

    def __len__(self) -> int:
        return len(self.rouge_l)

    def bleu(self, indices: np.ndarray | None = None) -> list[float]:
        """Corpus BLEU-1..4 of the items at `indices` (repeats count; all items by default)."""
        counts = self.bleu_counts if indices is None else self.bleu_counts[indices]
        testlen, reflen, *rest = counts.sum(axis=0)
        guess, correct = rest[:BLEU_ORDER], rest[BLEU_ORDER:]
        scores, product = [], 1.0
        for k in range(BLEU_ORDER):
            product *= (correct[k] + _BLEU_TINY) / (guess[k] + _BLEU_SMALL)
            scores.append(product ** (1.0 / (k + 1)))
        ratio = (testlen + _BLEU_TINY) / (reflen + _BLEU_SMALL)
        if ratio < 1:
            scores = [score * math.exp(1 - 1 / ratio) for score in scores]
        return [float(score) for score in scores]

    def metrics(self, indices: np.ndarray | None = None) -> dict[str, float]:
        """BLEU-1..4, ROUGE-L and CIDEr-D of the items at `indices` (all items by default)."""
        chosen = slice(None) if indices is None else indices
        out = {f"bleu_{k + 1}": value for k, value in enumerate(self.bleu(indices))}
        out["rouge_l"] = float(self.rouge_l[chosen].mean())
        out["cider"] = float(self.cider[chosen].mean())
        return out


def caption_item_statistics(
    predictions: Sequence[str], references: Sequence[Sequence[str] | str], *, tokenizer: str = "auto"
) -> CaptionItemStatistics:
    """Each item's share of BLEU-1..4, ROUGE-L and CIDEr-D, tokenised like `caption_metrics` does.

    Args:
        predictions (`Sequence[str]`): one generated caption per item.
        references (`Sequence[Sequence[str]]`): one or more reference captions per item.
        tokenizer (`str`, *optional*, defaults to `"auto"`): as in `caption_metrics`; pass the tokenizer the
            point estimates used (`CaptionMetrics.tokenizer`) so both see the same tokens.
    """
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    from radtune.common.metrics.captioning import CaptionScorer

    # The same (gts, res) the point estimates score: one tokenizer call, "auto" resolved the same way.
    gts, res = CaptionScorer(tokenizer=tokenizer, meteor=False).tokenized(predictions, references)
    n = len(res)

    bleu = BleuScorer(n=BLEU_ORDER)
    for i in range(n):
        bleu += (res[i][0], gts[i])
    counts = np.zeros((n, 2 + 2 * BLEU_ORDER))
    for i, cooked in enumerate(bleu.ctest):
        testlen = cooked["testlen"]
        closest = min((abs(length - testlen), length) for length in cooked["reflen"])[1]
        counts[i] = [testlen, closest, *cooked["guess"], *cooked["correct"]]
    rouge = np.asarray(Rouge().compute_score(gts, res)[1], dtype=float)
    cider = np.asarray(Cider().compute_score(gts, res)[1], dtype=float)
    return CaptionItemStatistics(bleu_counts=counts, rouge_l=rouge, cider=cider)


def caption_metric_cis(
    statistics: CaptionItemStatistics,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of BLEU-1..4, ROUGE-L and CIDEr-D over the items (see the module docstring).

    Every metric is resampled with the same seed, hence the same resamples. Returns `{name: (low, high)}`,
    `(nan, nan)` for fewer than two items.
    """
    kwargs = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    n = len(statistics)
    intervals = {
        f"bleu_{k + 1}": bootstrap_ci(n, lambda indices, k=k: statistics.bleu(indices)[k], **kwargs)
        for k in range(BLEU_ORDER)
    }
    intervals["rouge_l"] = mean_ci(statistics.rouge_l, **kwargs)
    intervals["cider"] = mean_ci(statistics.cider, **kwargs)
    return intervals
