"""The one LLaVA VQA evaluator: generate the answers (and, with the ablation, the answers without the image), score
them with common's VQA scorer, write `evaluation_results.csv` + `metrics.json`.

The trainer's final evaluation (into the run's `output_dir`) and `radtune vqa evaluate` (into a new
`<model>/eval-vqa-<split>` folder) both call `evaluate_vqa` with the defaults below, so the same model on the same
split gives the same numbers either way.
"""

from __future__ import annotations

from pathlib import Path

# The defaults of the trainer's final evaluation and of `radtune vqa evaluate`.
BATCH_SIZE = 8
MAX_NEW_TOKENS = 32
N_RESAMPLES = 1000


def evaluate_vqa(
    model,
    processor,
    dataset,
    out_dir: str | Path,
    *,
    train_dataset=None,
    ablation: bool = True,
    batch_size: int = BATCH_SIZE,
    max_new_tokens: int = MAX_NEW_TOKENS,
    max_samples: int | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    image_column: str = "image",
    meta: dict | None = None,
    progress: bool = True,
) -> dict:
    """Answer every question of `dataset`, score the answers, and write `evaluation_results.csv` + `metrics.json`.

    Args:
        model, processor: from `radtune.llava_vqa.inference.load_vqa_model` (or a trainer's model).
        dataset (`datasets.Dataset`): a QA split (radtune's export format: `messages` + `images`, or
            `question`/`answer` rows).
        out_dir (`str` or `Path`): where the two files go (created).
        train_dataset (`datasets.Dataset`, *optional*): the training split; its majority answers are scored beside
            the model under `majority_baseline/…`.
        ablation (`bool`, *optional*, defaults to `True`): also answer with blank and noise images; their metrics
            go under `ablation/<kind>/…` and `metrics.json`'s `meta.image_ablation` says whether the model ignores
            the image (its real-image interval reaches the blank or noise score).
        batch_size (`int`, *optional*, defaults to `8`): questions per generation call.
        max_new_tokens (`int`, *optional*, defaults to `32`): longest answer.
        max_samples (`int`, *optional*): evaluate the first N rows only.
        n_resamples (`int`, *optional*, defaults to `1000`): bootstrap resamples for the intervals.
        seed (`int`, *optional*, defaults to `0`): seed of the bootstrap and of the noise images.
        image_column (`str`, *optional*, defaults to `"image"`): the image column, else the first of `images`.
        meta (`dict`, *optional*): run facts for `metrics.json` (`model`, `dataset`, `split`, `base_model`, …).
        progress (`bool`, *optional*, defaults to `True`): show progress bars.

    Returns:
        `dict`: what `metrics.json` holds: `metrics` (`strict/…`, `llava_med/…`, counts, baseline, ablations), `ci`
        (bootstrap intervals), `meta` and `subgroups` (see `radtune.common.vqa_evaluation.score_vqa`).
    """
    from radtune.common.images import IMAGE_ABLATIONS, ablated_images
    from radtune.common.vqa_evaluation import score_vqa, vqa_items
    from radtune.llava_vqa import inference

    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    items = vqa_items(dataset, image_column)
    if not items:
        raise ValueError("the evaluation split holds no question/answer items")
    images, questions = [item.image for item in items], [item.question for item in items]

    def answer(pictures) -> list[str]:
        return inference.generate_answers(model, processor, pictures, questions, batch_size=batch_size,
                                          max_new_tokens=max_new_tokens, progress=progress)  # fmt: skip

    predictions = answer(images)
    ablated = {kind: answer(ablated_images(images, kind, seed)) for kind in IMAGE_ABLATIONS} if ablation else None
    train_items = vqa_items(train_dataset, image_column) if train_dataset is not None else None
    report = score_vqa(items, predictions, train_items=train_items, ablated=ablated, n_resamples=n_resamples,
                       seed=seed)  # fmt: skip
    return report.write(out_dir, **{"seed": seed, **(meta or {})})
