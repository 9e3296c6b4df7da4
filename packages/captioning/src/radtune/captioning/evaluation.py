"""Evaluate a captioner (or a BLIP VQA model) on a dataset split: batched generation, metrics, result files.

Writes `evaluation_results.csv` (one row per item: `id`, `prediction`, `references`, plus `question`, `answer`,
`answer_type` for VQA) and `metrics.json` into the output folder, through common's one writer
(`radtune.common.metrics.io`). `metrics.json` holds percentile bootstrap intervals over the items
(`radtune.common.metrics.caption_bootstrap`) and, with `ablation=True`, the same items generated with blank and noise
images, side by side, and the verdict of the image-ablation check (`meta.image_ablation`), as the LLaVA VQA
evaluation does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from radtune.common.collators import row_image, row_text, undecoded_images
from radtune.common.images import IMAGE_ABLATIONS as ABLATIONS

ABLATION_PREFIX = "ablation/"
# The metric whose interval decides whether a captioner ignores the image: the consensus metric of captioning.
ABLATION_METRIC = "cider"
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
    # A QA export's `id` names the image (shared by its questions): `qa_id` names the item.
    for name in ("qa_id", "id", "image_id", "study_id", "qid"):
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


def generate_texts(
    captioner,
    dataset,
    image_field: str = "image",
    batch_size: int = 16,
    ablation: str | None = None,
    seed: int = 0,
    **generation_kwargs,
) -> list[str]:
    """The captioner's text for every row of `dataset` (answers to its `question`s for a VQA model), in batches.

    With `ablation` (`"blank"` or `"noise"`), each image is replaced by a black or a noise image of its size
    (`radtune.common.images.ablated_images`, the VQA evaluation's makers), to see what the model writes without it.
    """
    from tqdm.auto import tqdm

    from radtune.common.collators import open_image
    from radtune.common.images import ablated_images

    texts = []
    description = "evaluate" if ablation is None else f"evaluate ({ablation} images)"
    with tqdm(total=len(dataset), desc=description, unit="img") as progress:
        for start in range(0, len(dataset), batch_size):
            batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = [row_image(row, image_field) for row in batch]
            if ablation is not None:
                images = ablated_images([open_image(image) for image in images], ablation, seed, first_index=start)
            questions = [str(row["question"]) for row in batch] if captioner.vqa else None
            texts += captioner.generate(images, questions=questions, **generation_kwargs)
            progress.update(len(batch))
    return texts


def _caption_report(predictions, references, ablated, baseline_caption, meteor, n_resamples, seed):
    """Caption metrics of the real-image texts with bootstrap intervals, of each ablation, and of the constant."""
    from radtune.common.metrics.caption_bootstrap import INTERVAL_NOTES, caption_item_statistics, caption_metric_cis
    from radtune.common.metrics.captioning import CaptionScorer

    with CaptionScorer(meteor=meteor) as scorer:  # one METEOR process for every scoring
        scored = scorer.compute(predictions, references)
        metrics = dict(scored.metrics)
        for kind, texts in ablated.items():
            metrics.update({f"{ABLATION_PREFIX}{kind}/{name}": value
                            for name, value in scorer.compute(texts, references).metrics.items()})  # fmt: skip
        if baseline_caption is not None:
            baseline = scorer.compute([baseline_caption] * len(references), references).metrics
            metrics.update({f"constant_baseline/{name}": value for name, value in baseline.items()})
    statistics = caption_item_statistics(predictions, references, tokenizer=scored.tokenizer)
    ci = {name: list(bounds) for name, bounds in caption_metric_cis(statistics, n_resamples, seed=seed).items()}
    meta = {"tokenizer": scored.tokenizer, "unavailable": scored.unavailable, "ci_notes": INTERVAL_NOTES}
    if baseline_caption is not None:
        meta["baseline_caption"] = baseline_caption
    return metrics, ci, meta


def _vqa_report(predictions, answers, answer_types, ablated, n_resamples, seed):
    """VQA metrics of the real-image answers with bootstrap intervals (per-item means), and of each ablation."""
    from radtune.common.metrics.bootstrap import mean_ci
    from radtune.common.metrics.vqa import vqa_item_scores

    metrics = vqa_scores(predictions, answers, answer_types)
    per_item: dict[str, list[float]] = {}
    for prediction, answer, answer_type in zip(predictions, answers, answer_types, strict=True):
        for name, value in vqa_item_scores(prediction, answer, answer_type).items():
            per_item.setdefault(name, []).append(value)
    ci = {name: list(mean_ci(values, n_resamples=n_resamples, seed=seed))
          for name, values in per_item.items() if len(values) >= 2}  # fmt: skip
    for kind, texts in ablated.items():
        metrics.update({f"{ABLATION_PREFIX}{kind}/{name}": value
                        for name, value in vqa_scores(texts, answers, answer_types).items() if "/" in name})  # fmt: skip
    return metrics, ci


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
    ablation: bool = False,
    n_resamples: int = 1000,
    seed: int = 0,
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
        ablation (`bool`, *optional*, defaults to `False`): also generate with blank and noise images; their metrics
            go under `ablation/<kind>/…`, `ablation/gap` is the headline metric (CIDEr-D; for VQA strict closed
            accuracy, else open recall) minus its best ablated value, and `metrics.json`'s `meta.image_ablation`
            says whether the model ignores the image (its real-image interval reaches the blank or noise score).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals (`ci` in
            `metrics.json`: BLEU-1..4, ROUGE-L, CIDEr-D; for VQA the per-item metrics; none for METEOR).
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap and of the noise images.
        generation_kwargs: passed to `generate` (`max_new_tokens`, `num_beams`).

    Returns:
        `dict[str, float]`: the metrics (for `findings`/`impression`/`report` also `clinical_f1/...`); the
        intervals and the ablation verdict are in `metrics.json` (`radtune.common.metrics.io.read_metrics`).
    """
    from radtune.common.metrics.bootstrap import image_ablation_verdict
    from radtune.common.metrics.io import write_metrics, write_results
    from radtune.common.metrics.subgroups import caption_subgroups, subgroup_fields, vqa_subgroups

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
    generate = partial(generate_texts, captioner, dataset, image_field, batch_size, seed=seed, **generation_kwargs)
    predictions = generate()
    ablated = {kind: generate(ablation=kind) for kind in ABLATIONS} if ablation else {}

    rows = []
    texts_only = dataset.remove_columns([name for name in (image_field, "images") if name in dataset.column_names])
    for index, (row, prediction) in enumerate(zip(texts_only, predictions, strict=True)):
        item = {"id": row_id(row, index), "prediction": prediction, **subgroup_fields(row)}
        if captioner.vqa:
            answer = str(row["answer"])
            item.update(question=row["question"], answer=answer, references=[answer], answer_type=row["answer_type"])
        else:
            item["references"] = [row_text(row, columns)]
        rows.append(item)
    meta = dict(meta or {})
    if captioner.vqa:
        answers, answer_types = [r["answer"] for r in rows], [r["answer_type"] for r in rows]
        metrics, ci = _vqa_report(predictions, answers, answer_types, ablated, n_resamples, seed)
        primary = "strict/closed_accuracy" if metrics["n_closed"] else "strict/open_recall"
        extra, task = {}, "vqa"
    else:
        references = [row["references"] for row in rows]
        metrics, ci, extra = _caption_report(predictions, references, ablated, baseline_caption, meteor,
                                             n_resamples, seed)  # fmt: skip
        extra["text_field"] = text_field
        if text_field in REPORT_FIELDS:
            from radtune.common.metrics.clinical import clinical_label_metrics

            metrics.update(clinical_label_metrics(predictions, [row["references"][0] for row in rows]))
        primary, task = ABLATION_METRIC, "captioning"
    if ablation:
        scores = {kind: metrics[f"{ABLATION_PREFIX}{kind}/{primary}"] for kind in ABLATIONS}
        verdict = image_ablation_verdict(metrics[primary], ci.get(primary, (float("nan"),) * 2), scores)
        metrics[f"{ABLATION_PREFIX}gap"] = verdict["gap"]
        meta["image_ablation"] = {"metric": primary, **verdict}
    if captioner.vqa:
        subgroups = vqa_subgroups(rows, n_resamples=n_resamples, seed=seed)
    else:
        subgroups = caption_subgroups(rows, n_resamples=n_resamples, seed=seed)
    known = {key: meta.pop(key, None) for key in ("model", "dataset", "split", "seed")}
    write_results(out_dir, rows)
    write_metrics(out_dir, metrics, task=task, n=len(rows), ci=ci, subgroups=subgroups, **known,
                  extra_meta={**extra, **meta})  # fmt: skip
    return metrics
