"""The two evaluators of this package, one per task: `evaluate_captions` (captioners) and `evaluate_blip_vqa`
(BLIP VQA models). The trainers' final evaluation and `radtune caption evaluate` call them, with the same defaults.

Both generate with a `Captioner` in batches and write `evaluation_results.csv` (one row per item) and `metrics.json`
into the output folder through common's one writer (`radtune.common.metrics.io`), with percentile bootstrap
intervals over the items and, with `ablation=True` (the default), the same items generated with blank and noise
images side by side and the verdict of the image-ablation check (`meta.image_ablation`).

- Captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (`radtune.common.metrics.caption_bootstrap` intervals), clinical
  label F1 for report sections, an optional constant-caption baseline, per-subgroup scores.
- BLIP VQA answers: scored by `radtune.common.vqa_evaluation.score_vqa`, the one VQA scorer LLaVA uses too (both
  metric families, intervals, the majority-answer baseline from the training split, subgroups).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from radtune.captioning.collators import row_image, row_text, undecoded_images
from radtune.common.images import IMAGE_ABLATIONS as ABLATIONS

ABLATION_PREFIX = "ablation/"
# The metric whose interval decides whether a captioner ignores the image: the consensus metric of captioning.
ABLATION_METRIC = "cider"
# Report sections: their generations are also scored by clinical label F1 (radtune's CheXpert-style labeler).
REPORT_COLUMNS = ("findings", "impression", "report")
# --text_column value → the columns that make the text (the first present alternative wins).
TEXT_COLUMNS = {
    "findings": (("findings",),),
    "impression": (("impression",),),
    "report": (("findings", "impression"), ("text",)),
    "caption": (("caption",), ("text",)),
    "text": (("text",),),
}


def text_columns(text_column: str, column_names: Sequence[str]) -> tuple[str, ...]:
    """The columns that make `text_column` in a dataset with `column_names`.

    `report` is findings + impression (or `text` when a dataset has neither), `caption` is the `caption` column
    (or `text`, which `radtune data build` fills with the caption for ROCO-style sources).

    Raises:
        `ValueError`: an unknown `text_column`, or none of its columns is in the dataset.
    """
    if text_column not in TEXT_COLUMNS:
        raise ValueError(f"text_column must be one of {', '.join(TEXT_COLUMNS)}, got {text_column!r}")
    for alternative in TEXT_COLUMNS[text_column]:
        present = tuple(name for name in alternative if name in column_names)
        if present:
            return present
    wanted = " or ".join("+".join(alternative) for alternative in TEXT_COLUMNS[text_column])
    raise ValueError(f"text_column={text_column!r} needs column(s) {wanted}; the dataset has: "
                     f"{', '.join(column_names)}")  # fmt: skip


def drop_empty_texts(dataset, columns: Sequence[str]):
    """Rows whose text (the `columns` joined) is not empty; reads only those columns, never the images."""
    columns = list(columns)
    return dataset.filter(
        lambda *values: bool(row_text(dict(zip(columns, values, strict=True)), columns)), input_columns=columns
    )


def row_id(row: dict, index: int) -> str:
    for name in ("id", "image_id", "study_id"):
        if row.get(name) not in (None, ""):
            return str(row[name])
    return str(index)


def caption_scores(
    predictions: Sequence[str], references: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """BLEU-1..4, METEOR (unless `meteor=False`: it starts a JVM that loads WordNet, ~10 s), ROUGE-L, CIDEr-D."""
    from radtune.common.metrics.captioning import caption_metrics

    return dict(caption_metrics(list(predictions), [list(refs) for refs in references], meteor=meteor).metrics)


def generate_texts(
    captioner,
    images: Sequence,
    questions: Sequence[str] | None = None,
    batch_size: int = 16,
    ablation: str | None = None,
    seed: int = 0,
    **generation_kwargs,
) -> list[str]:
    """The captioner's text for every image (its answer to each of `questions` for a VQA model), in batches.

    Args:
        captioner (`Captioner`): from `radtune.captioning.modeling.load_captioner`.
        images (`Sequence`): the images, anything `radtune.captioning.collators.open_image` opens; read one batch
            at a time.
        questions (`Sequence[str]`, *optional*): one question per image (VQA models).
        batch_size (`int`, *optional*, defaults to `16`): images per `generate` call.
        ablation (`str`, *optional*): `"blank"` or `"noise"`: each image is replaced by a black or a noise image of
            its size (`radtune.common.images.ablated_images`), to see what the model writes without it.
        seed (`int`, *optional*, defaults to `0`): seed of the noise images.
        generation_kwargs: passed to `generate` (`max_new_tokens`, `num_beams`).
    """
    from tqdm.auto import tqdm

    from radtune.captioning.collators import open_image
    from radtune.common.images import ablated_images

    texts = []
    description = "evaluate" if ablation is None else f"evaluate ({ablation} images)"
    with tqdm(total=len(images), desc=description, unit="img") as progress:
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            batch = [images[i] for i in range(start, stop)]
            if ablation is not None:
                batch = ablated_images([open_image(image) for image in batch], ablation, seed, first_index=start)
            asked = list(questions[start:stop]) if questions is not None else None
            texts += captioner.generate(batch, questions=asked, **generation_kwargs)
            progress.update(len(batch))
    return texts


class _RowImages(Sequence):
    """The images of a dataset's rows, read when indexed (a test split's images never sit in memory at once)."""

    def __init__(self, dataset, image_column: str):
        self.dataset, self.image_column = dataset, image_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return row_image(self.dataset[index], self.image_column)


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


def evaluate_captions(
    captioner,
    dataset,
    out_dir: str | Path,
    text_column: str = "caption",
    image_column: str = "image",
    batch_size: int = 16,
    max_samples: int | None = None,
    meta: dict | None = None,
    meteor: bool = True,
    baseline_caption: str | None = None,
    ablation: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
    **generation_kwargs,
) -> dict[str, float]:
    """Caption every row of `dataset`, score the captions, and write the result files into `out_dir`.

    Args:
        captioner (`Captioner`): from `radtune.captioning.modeling.load_captioner`.
        dataset (`datasets.Dataset`): one split with the images and the reference texts.
        out_dir (`str` or `Path`): where `evaluation_results.csv` and `metrics.json` go (created).
        text_column (`str`, *optional*, defaults to `"caption"`): the reference text (`TEXT_COLUMNS`: findings,
            impression, report, caption, text); the one the model trained on, which the run's `run_info.json` holds.
        image_column (`str`, *optional*, defaults to `"image"`): the image column (else the first of `images`).
        batch_size (`int`, *optional*, defaults to `16`): images per `generate` call.
        max_samples (`int`, *optional*): evaluate only the first this many rows with a reference.
        meta (`dict`, *optional*): `metrics.json`'s `meta` fields (`model`, `dataset`, `split`, `seed`, or others).
        meteor (`bool`, *optional*, defaults to `True`): compute METEOR (slow: a JVM loading WordNet).
        baseline_caption (`str`, *optional*): a constant caption (e.g. "No acute cardiopulmonary process.") scored
            against the same references, under `constant_baseline/…`: the bar a captioner must clear.
        ablation (`bool`, *optional*, defaults to `True`): also generate with blank and noise images; their metrics
            go under `ablation/<kind>/…`, `ablation/gap` is CIDEr-D minus its best ablated value, and
            `metrics.json`'s `meta.image_ablation` says whether the model ignores the image (its real-image interval
            reaches the blank or noise score).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals (`ci` in
            `metrics.json`: BLEU-1..4, ROUGE-L, CIDEr-D; none for METEOR).
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap and of the noise images.
        generation_kwargs: passed to `generate` (`max_new_tokens`, `num_beams`).

    Returns:
        `dict[str, float]`: the metrics (for `findings`/`impression`/`report` also `clinical_f1/...`); the
        intervals and the ablation verdict are in `metrics.json` (`radtune.common.metrics.io.read_metrics`).

    Raises:
        `ValueError`: an unknown `text_column`, a dataset without its columns, or no row with a reference.
    """
    from radtune.common.metrics.bootstrap import image_ablation_verdict
    from radtune.common.metrics.io import write_metrics, write_results
    from radtune.common.metrics.subgroups import caption_subgroups, subgroup_fields

    columns = text_columns(text_column, dataset.column_names)
    dataset = drop_empty_texts(dataset, columns)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"no rows with a non-empty {text_column!r} reference to evaluate")
    dataset = undecoded_images(dataset, image_column)
    generate = partial(generate_texts, captioner, _RowImages(dataset, image_column), batch_size=batch_size, seed=seed,
                       **generation_kwargs)  # fmt: skip
    predictions = generate()
    ablated = {kind: generate(ablation=kind) for kind in ABLATIONS} if ablation else {}

    rows = []
    texts_only = dataset.remove_columns([name for name in (image_column, "images") if name in dataset.column_names])
    for index, (row, prediction) in enumerate(zip(texts_only, predictions, strict=True)):
        rows.append({"id": row_id(row, index), "prediction": prediction, "references": [row_text(row, columns)],
                     **subgroup_fields(row)})  # fmt: skip
    references = [row["references"] for row in rows]
    metrics, ci, extra = _caption_report(predictions, references, ablated, baseline_caption, meteor, n_resamples, seed)
    extra["text_column"] = text_column
    if text_column in REPORT_COLUMNS:
        from radtune.common.metrics.clinical import clinical_label_metrics

        metrics.update(clinical_label_metrics(predictions, [row["references"][0] for row in rows]))
    meta = {"seed": seed, **(meta or {})}
    if ablation:
        scores = {kind: metrics[f"{ABLATION_PREFIX}{kind}/{ABLATION_METRIC}"] for kind in ABLATIONS}
        verdict = image_ablation_verdict(metrics[ABLATION_METRIC], ci.get(ABLATION_METRIC, (float("nan"),) * 2),
                                         scores)  # fmt: skip
        metrics[f"{ABLATION_PREFIX}gap"] = verdict["gap"]
        meta["image_ablation"] = {"metric": ABLATION_METRIC, **verdict}
    subgroups = caption_subgroups(rows, n_resamples=n_resamples, seed=seed)
    known = {key: meta.pop(key, None) for key in ("model", "dataset", "split", "seed")}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_results(out_dir, rows)
    write_metrics(out_dir, metrics, task="captioning", n=len(rows), ci=ci, subgroups=subgroups, **known,
                  extra_meta={**extra, **meta})  # fmt: skip
    return metrics


def evaluate_blip_vqa(
    captioner,
    dataset,
    out_dir: str | Path,
    image_column: str = "image",
    batch_size: int = 16,
    max_samples: int | None = None,
    train_dataset=None,
    meta: dict | None = None,
    ablation: bool = True,
    n_resamples: int = 1000,
    seed: int = 0,
    **generation_kwargs,
) -> dict[str, float]:
    """Answer every question of `dataset` with a BLIP VQA model, score the answers with
    `radtune.common.vqa_evaluation.score_vqa`, and write the result files into `out_dir`.

    Args:
        captioner (`Captioner`): a VQA model (`captioner.vqa`), from `radtune.captioning.modeling.load_captioner`.
        dataset (`datasets.Dataset`): one split of a QA export (`question`/`answer`/`answer_type` columns, or
            `messages`; see `radtune.common.vqa_evaluation.vqa_items`).
        out_dir (`str` or `Path`): where `evaluation_results.csv` and `metrics.json` go (created).
        image_column (`str`, *optional*, defaults to `"image"`): the image column (else the first of `images`).
        batch_size (`int`, *optional*, defaults to `16`): images per `generate` call.
        max_samples (`int`, *optional*): evaluate only the first this many rows.
        train_dataset (`datasets.Dataset`, *optional*): the training split; its most common answer per question is
            scored as the majority-answer baseline (`majority_baseline/…`), the bar a model must clear.
        meta (`dict`, *optional*): `metrics.json`'s `meta` fields (`model`, `dataset`, `split`, `seed`, or others).
        ablation (`bool`, *optional*, defaults to `True`): also answer with blank and noise images (`ablation/…`,
            `meta.image_ablation`).
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals.
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap and of the noise images.
        generation_kwargs: passed to `generate` (`max_new_tokens`, `num_beams`).

    Returns:
        `dict[str, float]`: the metrics (`strict/closed_accuracy`, …); intervals, subgroups and the verdict are in
        `metrics.json`.

    Raises:
        `ValueError`: a captioning model, or a split without question/answer items.
    """
    from radtune.common.vqa_evaluation import score_vqa, vqa_items

    if not captioner.vqa:
        raise ValueError("evaluate_blip_vqa needs a BLIP VQA model; this one captions (use evaluate_captions)")
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    items = vqa_items(undecoded_images(dataset, image_column), image_column)
    images, questions = [item.image for item in items], [item.question for item in items]
    generate = partial(generate_texts, captioner, images, questions, batch_size=batch_size, seed=seed,
                       **generation_kwargs)  # fmt: skip
    predictions = generate()
    ablated = {kind: generate(ablation=kind) for kind in ABLATIONS} if ablation else None
    train_items = (
        vqa_items(undecoded_images(train_dataset, image_column), image_column) if train_dataset is not None else None
    )
    report = score_vqa(items, predictions, train_items=train_items, ablated=ablated, n_resamples=n_resamples,
                       seed=seed)  # fmt: skip
    report.write(out_dir, **{"seed": seed, **(meta or {})})
    return report.metrics
