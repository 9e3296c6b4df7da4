"""The captioning evaluation's image-ablation check and bootstrap intervals.

A captioner that cannot see its image is flagged; one whose caption is a function of the image is not; the
intervals hold the estimate and shrink with more items; `--no-ablation` skips the check; metrics.json holds the
intervals and the verdict. BLIP VQA answers get the same, through the one VQA scorer, with the majority baseline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from captioning_data import FINDINGS, IMPRESSIONS
from click.testing import CliRunner

CAPTION_INTERVALS = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"}


@pytest.fixture(scope="module")
def blind_captioner(tmp_path_factory, tiny_model):
    """A tiny ViT-GPT2 that cannot see: its encoder's final layer norm is zeroed, so whatever the pixels the
    decoder's cross-attention reads the same all-zero states, and its captions cannot depend on the image."""
    import shutil

    import torch
    from transformers import VisionEncoderDecoderModel

    out = tmp_path_factory.mktemp("blind-vit-gpt2") / "model"
    shutil.copytree(tiny_model("vit-gpt2"), out)
    model = VisionEncoderDecoderModel.from_pretrained(out)
    with torch.no_grad():
        model.encoder.layernorm.weight.zero_()
        model.encoder.layernorm.bias.zero_()
    model.save_pretrained(out)
    return out


class NearestNeighbourCaptioner:
    """A captioner whose caption is a function of the image: the caption of the training image nearest in its
    column-mean profile. `captioning_data.make_image` darkens a band whose width depends on the finding, so the
    profile tells the findings apart; a blank or a noise image lands on one finding for every item.

    It stands in for a trained model (a trained tiny ViT-GPT2 needs minutes to read these images) and goes through
    the same evaluation path: `evaluate_captions` only calls `generate(images, questions=…)`.
    """

    vqa = False

    def __init__(self, rows, text_column: str):
        self.profiles = np.stack([self.profile(image) for image in rows["image"]])
        self.captions = list(rows[text_column])

    @staticmethod
    def profile(image) -> np.ndarray:
        from radtune.captioning.collators import open_image

        return np.asarray(open_image(image).convert("L").resize((40, 40)), dtype=float).mean(axis=0)

    def generate(self, images, questions=None, **generation_kwargs) -> list[str]:
        distances = [((self.profiles - self.profile(image)) ** 2).sum(axis=1) for image in images]
        return [self.captions[int(np.argmin(d))] for d in distances]


class ConstantCaptioner:
    """Writes one caption whatever the image: what a captioner trained on captions unrelated to the images learns
    (the most common one)."""

    vqa = False

    def __init__(self, caption: str):
        self.caption = caption

    def generate(self, images, questions=None, **generation_kwargs) -> list[str]:
        return [self.caption] * len(images)


class ConstantAnswerer:
    """A VQA model that answers "yes" whatever the image and the question."""

    vqa = True

    def generate(self, images, questions=None, **generation_kwargs) -> list[str]:
        assert questions is not None and len(questions) == len(images)
        return ["yes"] * len(images)


def _evaluate_cli(model, dataset, out, *extra):
    from radtune.common.cli import cli

    return CliRunner().invoke(cli, [
        "caption", "evaluate", "--model", str(model), "--dataset", str(dataset), "--split", "test", "--out", str(out),
        "--text-column", "impression", "--no-meteor", "--max-new-tokens", "8", "--n-resamples", "200", *extra,
    ])  # fmt: skip


def _assert_intervals_hold_the_estimates(body):
    assert set(body["ci"]) == CAPTION_INTERVALS  # METEOR has none: its corpus score is the jar's aggregate
    for name, (low, high) in body["ci"].items():
        assert low <= body["metrics"][name] <= high, name


def test_a_captioner_blind_to_the_image_is_flagged(blind_captioner, caption_dataset, tmp_path):
    from radtune.common.metrics.io import read_results

    result = _evaluate_cli(blind_captioner, caption_dataset, tmp_path)
    assert result.exit_code == 0, result.output
    predictions = [row["prediction"] for row in read_results(tmp_path)]
    assert len(predictions) == 4 and len(set(predictions)) == 1  # four different images, one caption

    body = json.loads((tmp_path / "metrics.json").read_text())
    metrics, verdict = body["metrics"], body["meta"]["image_ablation"]
    # Blank and noise images give the same captions, hence the same scores, side by side with the real ones.
    for name in CAPTION_INTERVALS:
        assert metrics[f"ablation/blank/{name}"] == pytest.approx(metrics[name])
        assert metrics[f"ablation/noise/{name}"] == pytest.approx(metrics[name])
    assert verdict["ignores_image"] is True and verdict["metric"] == "cider"
    assert verdict["overlapping"] == ["blank", "noise"]
    assert verdict["gap"] == pytest.approx(0.0) and metrics["ablation/gap"] == pytest.approx(0.0)
    _assert_intervals_hold_the_estimates(body)

    assert "WARNING: the model ignores the image" in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("cider "))
    low, high = body["ci"]["cider"]
    value = metrics["cider"]
    assert line.split() == ["cider", f"{value:.4f}", f"[{low:.4f},", f"{high:.4f}]", f"{value:.4f}", f"{value:.4f}",
                            f"{0.0:+.4f}"]  # fmt: skip


def test_a_constant_captioner_is_flagged_though_it_scores_above_zero(caption_dataset, tmp_path):
    from radtune.captioning.evaluation import evaluate_captions
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.metrics.io import read_metrics

    test = load_dataset_any(caption_dataset)["test"]
    # ablation is on by default, as in `radtune caption evaluate` and the trainer's final evaluation
    metrics = evaluate_captions(ConstantCaptioner(IMPRESSIONS[0]), test, tmp_path, text_column="impression",
                                meteor=False, n_resamples=300)  # fmt: skip
    body = read_metrics(tmp_path)
    low, high = body["ci"]["cider"]
    assert low < metrics["cider"] < high and metrics["cider"] > 0  # right on one item in four
    assert metrics["ablation/blank/cider"] == pytest.approx(metrics["cider"])
    assert body["meta"]["image_ablation"]["ignores_image"] is True
    _assert_intervals_hold_the_estimates(body)


def test_no_ablation_skips_the_check_but_keeps_the_intervals(blind_captioner, caption_dataset, tmp_path):
    result = _evaluate_cli(blind_captioner, caption_dataset, tmp_path, "--no-ablation")
    assert result.exit_code == 0, result.output
    body = json.loads((tmp_path / "metrics.json").read_text())
    assert not [name for name in body["metrics"] if name.startswith("ablation/")]
    assert "image_ablation" not in body["meta"]
    assert "ignores the image" not in result.output and "blank" not in result.output
    _assert_intervals_hold_the_estimates(body)


def test_a_captioner_that_reads_the_image_is_not_flagged(caption_dataset, tmp_path):
    from radtune.captioning.evaluation import evaluate_captions
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.metrics.io import read_metrics

    data = load_dataset_any(caption_dataset)
    captioner = NearestNeighbourCaptioner(data["train"], "impression")
    metrics = evaluate_captions(captioner, data["test"], tmp_path, text_column="impression", meteor=False,
                                ablation=True, n_resamples=300)  # fmt: skip
    body = read_metrics(tmp_path)
    verdict = body["meta"]["image_ablation"]
    assert verdict["ignores_image"] is False and verdict["overlapping"] == []
    low = body["ci"]["cider"][0]
    assert metrics["ablation/blank/cider"] < low and metrics["ablation/noise/cider"] < low
    assert verdict["gap"] == pytest.approx(metrics["cider"] - max(metrics["ablation/blank/cider"],
                                                                  metrics["ablation/noise/cider"]))  # fmt: skip
    assert verdict["gap"] > 0 and metrics["ablation/gap"] == pytest.approx(verdict["gap"])
    _assert_intervals_hold_the_estimates(body)


def test_intervals_hold_the_estimate_and_shrink_as_the_sample_grows():
    from radtune.common.metrics.caption_bootstrap import caption_item_statistics, caption_metric_cis
    from radtune.common.metrics.captioning import caption_metrics

    # 20 items, right, half right or wrong in turn, repeated: the corpus scores stay put while the items grow.
    predictions, references = [], []
    for i in range(20):
        kind = i % 4
        predictions.append([IMPRESSIONS[kind], FINDINGS[kind], IMPRESSIONS[(kind + 1) % 4]][i % 3])
        references.append([IMPRESSIONS[kind]])
    widths = {name: [] for name in CAPTION_INTERVALS}
    for repeats in (1, 4, 16):
        preds, refs = predictions * repeats, references * repeats
        point = caption_metrics(preds, refs, tokenizer="fallback-regex", meteor=False).metrics
        statistics = caption_item_statistics(preds, refs, tokenizer="fallback-regex")
        for name, (low, high) in caption_metric_cis(statistics, n_resamples=300).items():
            assert low <= point[name] <= high, (name, repeats)
            widths[name].append(high - low)
    for name, (small, medium, large) in widths.items():
        assert small > medium > large > 0, (name, widths[name])


def test_blip_vqa_answers_get_intervals_the_ablation_check_and_the_majority_baseline(vqa_dataset, tmp_path):
    from radtune.captioning.evaluation import evaluate_blip_vqa
    from radtune.common.datasets_io import load_dataset_any
    from radtune.common.metrics.io import read_metrics, read_results

    data = load_dataset_any(vqa_dataset)
    metrics = evaluate_blip_vqa(ConstantAnswerer(), data["test"], tmp_path, train_dataset=data["train"],
                                n_resamples=200)  # fmt: skip
    body = read_metrics(tmp_path)
    assert body["meta"]["task"] == "vqa" and body["meta"]["n"] == 4
    verdict = body["meta"]["image_ablation"]
    assert verdict["metric"] == "strict/closed_accuracy" and verdict["ignores_image"] is True
    for kind in ("blank", "noise"):
        assert metrics[f"ablation/{kind}/strict/closed_accuracy"] == metrics["strict/closed_accuracy"]
    # "yes" to both closed questions (one yes, one no); the training split's answer to each question is always right
    assert metrics["strict/closed_accuracy"] == 0.5
    assert metrics["majority_baseline/strict/closed_accuracy"] == 1.0
    assert metrics["majority_baseline/strict/open_recall"] == 1.0
    low, high = body["ci"]["strict/closed_accuracy"]
    assert low <= metrics["strict/closed_accuracy"] <= high
    rows = read_results(tmp_path)
    assert [row["question"] for row in rows] == data["test"]["question"]
    assert {row["answer_type"] for row in rows} == {"closed", "open"}


def test_blip_vqa_evaluation_refuses_a_captioner(vqa_dataset, tmp_path):
    from radtune.captioning.evaluation import evaluate_blip_vqa
    from radtune.common.datasets_io import load_dataset_any

    with pytest.raises(ValueError, match="BLIP VQA model"):
        evaluate_blip_vqa(ConstantCaptioner("x"), load_dataset_any(vqa_dataset)["test"], tmp_path)
