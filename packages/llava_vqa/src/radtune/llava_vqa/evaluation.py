"""Evaluate a LLaVA VQA model on a QA split: generate, score with both VQA metric families, write the files."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

BASELINE_PREFIX = "majority_baseline/"


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
) -> dict[str, float]:
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

    Returns:
        `dict[str, float]`: the metrics (`strict/…`, `llava_med/…`, counts).
    """
    from radtune.common.metrics.vqa import vqa_metrics
    from radtune.common.metrics.io import write_metrics, write_results
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
    if baseline_dataset is not None:
        baseline = vqa_metrics(majority_answers(vqa_items(baseline_dataset), items), answers, answer_types)
        metrics.update({BASELINE_PREFIX + name: value for name, value in baseline.items() if "/" in name})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {"id": item.id, "prediction": prediction, "references": [item.answer], "question": item.question,
         "answer": item.answer, "answer_type": item.answer_type}
        for item, prediction in zip(items, predictions)
    ]  # fmt: skip
    write_results(out_dir / "evaluation_results.csv", rows)
    meta = dict(meta or {})
    known = {key: meta.pop(key, None) for key in ("model", "dataset", "split", "seed")}
    write_metrics(out_dir / "metrics.json", metrics, task="vqa", n=len(items), **known, extra_meta=meta or None)
    return metrics
