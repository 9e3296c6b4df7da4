"""Evaluate a LLaVA VQA model on a QA split: generate, score with both VQA metric families, write the files."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from radtune.common.images import IMAGE_ABLATIONS as ABLATIONS
from radtune.common.images import ablated_images

BASELINE_PREFIX = "majority_baseline/"


def item_scores(predictions, items) -> dict[str, list[float]]:
    """Per-item scores whose means are the headline VQA metrics, for bootstrap intervals.

    Keys: `strict/accuracy`, `strict/closed_accuracy`, `strict/open_recall`, `llava_med/closed_accuracy` (items
    LLaVA-Med's rule counts), `llava_med/open_recall`; the mean of each list equals `vqa_metrics`' value of the
    same name.
    """
    from radtune.common.metrics.vqa import ITEM_METRICS, vqa_item_scores

    scores: dict[str, list[float]] = {name: [] for name in ITEM_METRICS}
    for prediction, item in zip(predictions, items, strict=True):
        for name, value in vqa_item_scores(prediction, item.answer, item.answer_type).items():
            scores[name].append(value)
    return scores


def result_rows(items, predictions) -> list[dict]:
    """`evaluation_results.csv` rows: the answer with its question, reference and the item's subgroup fields."""
    rows = []
    for item, prediction in zip(items, predictions, strict=True):
        row = {"id": item.id, "prediction": prediction, "references": [item.answer], "question": item.question,
               "answer": item.answer, "answer_type": item.answer_type}  # fmt: skip
        for name in ("category", "image_id", "view", "modality"):
            value = getattr(item, name)
            if value is not None and not (name == "image_id" and value == item.id):
                row[name] = value
        rows.append(row)
    return rows


def _most_common(counts: Counter) -> str:
    # Ties go to the alphabetically first answer, so the baseline does not depend on row order.
    return min(counts.items(), key=lambda item: (-item[1], item[0]))[0]


def majority_answers(train_items, items) -> list[str]:
    """The trivial baseline: for each item, the most common training answer to the same question.

    A question never seen in training gets the most common training answer of its answer type (closed/open),
    and failing that, of all training items. This is the bar a model must clear to show it uses the image.
    """
    if not train_items:
        raise ValueError("the majority-answer baseline needs training items")
    by_question: dict[str, Counter] = defaultdict(Counter)
    by_type: dict[str, Counter] = defaultdict(Counter)
    overall: Counter = Counter()
    for item in train_items:
        by_question[item.question.strip().lower()][item.answer] += 1
        by_type[item.answer_type][item.answer] += 1
        overall[item.answer] += 1
    return [
        _most_common(by_question.get(item.question.strip().lower()) or by_type.get(item.answer_type) or overall)
        for item in items
    ]


def evaluate_vqa(
    model,
    processor,
    dataset,
    out_dir: str | Path,
    batch_size: int = 8,
    max_new_tokens: int = 32,
    max_samples: int | None = None,
    meta: dict | None = None,
    progress: bool = True,
    baseline_dataset=None,
    ablation: bool = False,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Answer every question of `dataset`, score the answers, and write `evaluation_results.csv` + `metrics.json`.

    Args:
        model, processor: from `radtune.llava_vqa.inference.load_vqa_model` (or a trainer's model).
        dataset (`datasets.Dataset`): a split in radtune's QA export format.
        out_dir (`str` or `Path`): where the two files go.
        batch_size (`int`, *optional*, defaults to `8`): generation batch size.
        max_new_tokens (`int`, *optional*, defaults to `32`): longest answer.
        max_samples (`int`, *optional*): evaluate the first N QA items only.
        meta (`dict`, *optional*): run facts for `metrics.json` (model, dataset, split, seed, …).
        baseline_dataset (`datasets.Dataset`, *optional*): the training split; when given, the metrics of the
            majority-answer baseline are added under `majority_baseline/…`.
        ablation (`bool`, *optional*, defaults to `False`): also answer with blank and noise images; their
            metrics go under `ablation/<kind>/…` and `metrics.json`'s `meta.image_ablation` says whether the model
            ignores the image (its real-image interval reaches the blank or noise score).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals.
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap and of the noise images.

    Returns:
        `dict`: what `metrics.json` holds: `metrics` (`strict/…`, `llava_med/…`, counts, baselines, ablations),
        `ci` (bootstrap intervals), `meta` and `subgroups` (strict scores per answer type, and per question
        category, view and modality where the dataset has those columns; see `radtune.common.metrics.subgroups`).
    """
    from radtune.common.metrics.bootstrap import image_ablation_verdict, mean_ci
    from radtune.common.metrics.io import read_metrics, write_metrics, write_results
    from radtune.common.metrics.subgroups import vqa_subgroups
    from radtune.common.metrics.vqa import vqa_metrics
    from radtune.llava_vqa.inference import generate_answers, vqa_items

    items = vqa_items(dataset)
    if max_samples is not None:
        items = items[:max_samples]
    if not items:
        raise ValueError("the evaluation split holds no question/answer items")
    predictions = generate_answers(
        model, processor, [item.image for item in items], [item.question for item in items],
        batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress,
    )  # fmt: skip
    answers, answer_types = [item.answer for item in items], [item.answer_type for item in items]
    metrics = vqa_metrics(predictions, answers, answer_types)
    ci = {name: list(mean_ci(values, n_resamples=n_resamples, seed=seed))
          for name, values in item_scores(predictions, items).items() if len(values) >= 2}  # fmt: skip
    meta = dict(meta or {})
    if ablation:
        primary = "strict/closed_accuracy" if metrics["n_closed"] else "strict/open_recall"
        ablated = {}
        for kind in ABLATIONS:
            answers_without_image = generate_answers(
                model, processor, ablated_images([item.image for item in items], kind, seed),
                [item.question for item in items], batch_size=batch_size, max_new_tokens=max_new_tokens,
                progress=progress,
            )  # fmt: skip
            kind_metrics = vqa_metrics(answers_without_image, answers, answer_types)
            metrics.update({f"ablation/{kind}/{name}": value for name, value in kind_metrics.items() if "/" in name})
            ablated[kind] = kind_metrics[primary]
        verdict = image_ablation_verdict(metrics[primary], ci.get(primary, (float("nan"),) * 2), ablated)
        metrics["ablation/gap"] = verdict["gap"]
        meta["image_ablation"] = {"metric": primary, **verdict}
    if baseline_dataset is not None:
        baseline = vqa_metrics(majority_answers(vqa_items(baseline_dataset), items), answers, answer_types)
        metrics.update({BASELINE_PREFIX + name: value for name, value in baseline.items() if "/" in name})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = result_rows(items, predictions)
    write_results(out_dir / "evaluation_results.csv", rows)
    # Per answer type, question category, view and modality, where the items carry them.
    subgroups = vqa_subgroups(rows, n_resamples=n_resamples, seed=seed)
    known = {key: meta.pop(key, None) for key in ("model", "dataset", "split", "seed")}
    path = write_metrics(out_dir / "metrics.json", metrics, task="vqa", n=len(items), ci=ci, **known,
                         extra_meta=meta or None, subgroups=subgroups)  # fmt: skip
    return read_metrics(path)
