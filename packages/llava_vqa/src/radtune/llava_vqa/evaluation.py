"""Evaluate a LLaVA VQA model on a QA split: generate, score with both VQA metric families, write the files."""

from __future__ import annotations

from pathlib import Path


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
    metrics = vqa_metrics(predictions, [item.answer for item in items], [item.answer_type for item in items])
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
