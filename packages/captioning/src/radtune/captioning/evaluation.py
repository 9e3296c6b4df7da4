"""Evaluate a captioner (or a BLIP VQA model) on a dataset split: batched generation, metrics, result files.

Writes `evaluation_results.csv` (one row per item: `id`, `prediction`, `references`, plus `question`, `answer`,
`answer_type` for VQA) and `metrics.json` into the output folder, through common's one writer
(`radtune.common.metrics.io`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from radtune.common.collators import row_image, row_text, undecoded_images

# Report sections: their generations are also scored by clinical label F1 (radtune's CheXpert-style labeler).
REPORT_FIELDS = ("findings", "impression", "report")
# --text_field name → the columns that make the text (the first present alternative wins).
TEXT_FIELDS = {
    "findings": (("findings",),),
    "impression": (("impression",),),
    "report": (("findings", "impression"), ("text",)),
    "caption": (("caption",), ("text",)),
    "text": (("text",),),
}


def text_columns(text_field: str, column_names: Sequence[str]) -> tuple[str, ...]:
    """The columns that make `text_field` in a dataset with `column_names`.

    `report` is findings + impression (or `text` when a dataset has neither), `caption` is the `caption` column
    (or `text`, which `radtune data build` fills with the caption for ROCO-style sources).

    Raises:
        `ValueError`: an unknown `text_field`, or none of its columns is in the dataset.
    """
    if text_field not in TEXT_FIELDS:
        raise ValueError(f"text_field must be one of {', '.join(TEXT_FIELDS)}, got {text_field!r}")
    for alternative in TEXT_FIELDS[text_field]:
        present = tuple(name for name in alternative if name in column_names)
        if present:
            return present
    wanted = " or ".join("+".join(alternative) for alternative in TEXT_FIELDS[text_field])
    raise ValueError(f"text_field={text_field!r} needs column(s) {wanted}; the dataset has: {', '.join(column_names)}")


def drop_empty_texts(dataset, columns: Sequence[str]):
    """Rows whose text (the `columns` joined) is not empty; reads only those columns, never the images."""
    columns = list(columns)
    return dataset.filter(
        lambda *values: bool(row_text(dict(zip(columns, values, strict=True)), columns)), input_columns=columns
    )


def row_id(row: dict, index: int) -> str:
    for name in ("id", "image_id", "study_id", "qid"):
        if row.get(name) not in (None, ""):
            return str(row[name])
    return str(index)


def caption_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """BLEU-1..4, METEOR (unless `meteor=False`: it starts a JVM that loads WordNet, ~10 s), ROUGE-L, CIDEr-D."""
    from radtune.common.metrics.captioning import caption_metrics

    return dict(caption_metrics(list(predictions), [list(refs) for refs in references], meteor=meteor).metrics)


def vqa_scores(predictions: Sequence[str], answers: Sequence[str], answer_types: Sequence[str]) -> dict[str, float]:
    """Closed accuracy, open recall/F1 … from common's VQA metrics."""
    from radtune.common.metrics.vqa import vqa_metrics

    return vqa_metrics(list(predictions), [str(a) for a in answers], list(answer_types))


def evaluate_dataset(
    captioner,
    dataset,
    out_dir: str | Path,
    text_field: str = "caption",
    image_field: str = "image",
    batch_size: int = 16,
    max_samples: int | None = None,
    meta: dict | None = None,
    meteor: bool = True,
    baseline_caption: str | None = None,
    **generation_kwargs,
) -> dict[str, float]:
    """Generate for every row of `dataset`, score, and write the result files into `out_dir`.

    Args:
        captioner (`Captioner`): from `radtune.captioning.modeling.load_captioner`.
        dataset (`datasets.Dataset`): one split; for a VQA model it needs `question`, `answer`, `answer_type`.
        out_dir (`str` or `Path`): where `evaluation_results.csv` and `metrics.json` go.
        text_field (`str`, *optional*, defaults to `"caption"`): which text is the reference (captioning only).
        image_field (`str`, *optional*, defaults to `"image"`): the image column (else the first of `images`).
        batch_size (`int`, *optional*, defaults to `16`): images per `generate` call.
        max_samples (`int`, *optional*): evaluate only the first this many rows.
        meta (`dict`, *optional*): `metrics.json`'s `meta` fields (`model`, `dataset`, `split`, `seed`, or others).
        meteor (`bool`, *optional*, defaults to `True`): compute METEOR (slow: a JVM loading WordNet).
        baseline_caption (`str`, *optional*): a constant caption (e.g. "No acute cardiopulmonary process.") scored
            against the same references, under `constant_baseline/…`: the bar a captioner must clear.
        generation_kwargs: passed to `generate` (`max_new_tokens`, `num_beams`).

    Returns:
        `dict[str, float]`: the metrics (for `findings`/`impression`/`report` also `clinical_f1/...`).
    """
    from tqdm.auto import tqdm

    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if captioner.vqa:
        columns = ("answer",)
        for name in ("question", "answer", "answer_type"):
            if name not in dataset.column_names:
                raise ValueError(f"VQA evaluation needs a {name!r} column; the dataset has: {dataset.column_names}")
    else:
        columns = text_columns(text_field, dataset.column_names)
    dataset = undecoded_images(drop_empty_texts(dataset, columns), image_field)
    if len(dataset) == 0:
        raise ValueError("no rows with a non-empty reference to evaluate")
    rows = []
    with tqdm(total=len(dataset), desc="evaluate", unit="img") as progress:
        for start in range(0, len(dataset), batch_size):
            batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = [row_image(row, image_field) for row in batch]
            questions = [str(row["question"]) for row in batch] if captioner.vqa else None
            predictions = captioner.generate(images, questions=questions, **generation_kwargs)
            for offset, (row, prediction) in enumerate(zip(batch, predictions, strict=True)):
                item = {"id": row_id(row, start + offset), "prediction": prediction}
                if captioner.vqa:
                    answer = str(row["answer"])
                    item.update(question=row["question"], answer=answer, references=[answer],
                                answer_type=row["answer_type"])  # fmt: skip
                else:
                    item["references"] = [row_text(row, columns)]
                rows.append(item)
            progress.update(len(batch))
    from radtune.common.metrics.io import write_metrics, write_results

    predictions = [row["prediction"] for row in rows]
    extra = {}
    if captioner.vqa:
        metrics = vqa_scores(predictions, [r["answer"] for r in rows], [r["answer_type"] for r in rows])
        task = "vqa"
    else:
        from radtune.common.metrics.captioning import caption_metrics

        references = [row["references"] for row in rows]
        scored = caption_metrics(predictions, references, meteor=meteor)
        metrics = dict(scored.metrics)
        if baseline_caption is not None:
            baseline = caption_metrics([baseline_caption] * len(rows), references, meteor=meteor).metrics
            metrics.update({f"constant_baseline/{name}": value for name, value in baseline.items()})
            extra["baseline_caption"] = baseline_caption
        extra.update(tokenizer=scored.tokenizer, unavailable=scored.unavailable, text_field=text_field)
        if text_field in REPORT_FIELDS:
            from radtune.common.metrics.clinical import clinical_label_metrics

            metrics.update(clinical_label_metrics(predictions, [row["references"][0] for row in rows]))
        task = "captioning"
    meta = dict(meta or {})
    known = {key: meta.pop(key, None) for key in ("model", "dataset", "split", "seed")}
    write_results(out_dir, rows)
    write_metrics(out_dir, metrics, task=task, n=len(rows), **known, extra_meta={**extra, **meta})
    return metrics
