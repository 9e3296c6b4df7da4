"""Per-item caption statistics: a resample's BLEU and ROUGE-L equal pycocoevalcap's on the resampled corpus;
CIDEr-D is the mean of items scored with the full corpus's document frequencies. And the ablation images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from radtune.common.images import ablated_images
from radtune.common.metrics.caption_bootstrap import caption_item_statistics, caption_metric_cis
from radtune.common.metrics.captioning import caption_metrics

WORDS = "no acute cardiopulmonary process small left pleural effusion right lower lobe pneumonia mild edema".split()


def _corpus(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)

    def sentence():
        return " ".join(rng.choice(WORDS, int(rng.integers(2, 9)))) + "."

    predictions = [sentence() for _ in range(n)]
    references = [[sentence()] if i % 3 else [sentence(), sentence()] for i in range(n)]
    return predictions, references


def test_resampled_bleu_and_rouge_are_pycocoevalcaps_on_the_resampled_corpus():
    predictions, references = _corpus(30)
    statistics = caption_item_statistics(predictions, references, tokenizer="fallback-regex")
    full = caption_metrics(predictions, references, tokenizer="fallback-regex", meteor=False).metrics
    for name, value in statistics.metrics().items():
        assert value == pytest.approx(full[name], abs=1e-12), name
    indices = np.random.default_rng(1).integers(0, 30, 30)  # with repeats, like a bootstrap resample
    resampled = caption_metrics([predictions[i] for i in indices], [references[i] for i in indices],
                                tokenizer="fallback-regex", meteor=False).metrics  # fmt: skip
    approximated = statistics.metrics(indices)
    for name in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l"):
        assert approximated[name] == pytest.approx(resampled[name], abs=1e-12), name
    # CIDEr-D keeps the full corpus's document frequencies: close to, not equal to, rescoring the resample.
    assert approximated["cider"] == pytest.approx(float(statistics.cider[indices].mean()))
    assert approximated["cider"] == pytest.approx(resampled["cider"], rel=0.25)


def test_intervals_are_reproducible_and_undefined_for_one_item():
    predictions, references = _corpus(25, seed=2)
    statistics = caption_item_statistics(predictions, references, tokenizer="fallback-regex")
    assert caption_metric_cis(statistics, 200, seed=5) == caption_metric_cis(statistics, 200, seed=5)
    assert caption_metric_cis(statistics, 200, seed=5) != caption_metric_cis(statistics, 200, seed=6)
    single = caption_item_statistics(predictions[:1], references[:1], tokenizer="fallback-regex")
    assert all(math.isnan(bound) for bounds in caption_metric_cis(single).values() for bound in bounds)


def test_ablated_images_keep_the_size_and_seed_noise_by_item_index():
    images = [Image.new("L", (12, 8), 200), Image.new("RGB", (5, 7), (9, 9, 9)), Image.new("L", (6, 6))]
    blank = ablated_images(images, "blank")
    assert [image.size for image in blank] == [(12, 8), (5, 7), (6, 6)]
    assert all(image.mode == "RGB" and not np.asarray(image).any() for image in blank)
    noise = ablated_images(images, "noise", seed=3)
    assert np.asarray(noise[0]).std() > 50  # uniform 0..255
    # Batched with first_index, item i gets the same noise as in one call.
    later = ablated_images(images[1:], "noise", seed=3, first_index=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(noise[1:], later, strict=True))
    assert not np.array_equal(np.asarray(ablated_images(images[:1], "noise", seed=4)[0]), np.asarray(noise[0]))
    with pytest.raises(ValueError, match="unknown ablation"):
        ablated_images(images, "grey")
