"""CLIP and dual-encoder models in `radtune app` (the `contrastive` entry of the `radtune.app` group): loaded once
with `radtune.contrastive.modeling.load_contrastive`, scoring labels with the zero-shot evaluation's own functions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# The labels the page starts with: the demo's zero-shot classes (any label can be typed in).
DEFAULT_LABELS = ("Cardiomegaly", "Effusion", "Pneumothorax", "Nodule", "Mass", "Consolidation")


def app_model(folder: Path, info: dict, device: str | None = None):
    """`AppModel` with `classify(image, labels, exclusive)`.

    `exclusive=False` (the default): each label's probability against its absence, from CheXzero-style positive and
    negative prompt ensembles, exactly as `radtune clip zero-shot` scores it (`zero_shot_scores.csv`).
    `exclusive=True`: the labels are used as prompts as typed and compete in one softmax (the scores sum to 1).
    """
    import torch

    from radtune.common.app import AppModel
    from radtune.contrastive.evaluation import (
        class_prompt_features,
        embed_images,
        embed_texts,
        logit_scale_of,
        zero_shot_probabilities,
    )
    from radtune.contrastive.modeling import load_contrastive

    model, processor = load_contrastive(folder)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()

    def classify(image, labels: Sequence[str], exclusive: bool = False) -> dict[str, float]:
        image_features = embed_images(model, processor, [image], desc="image")
        if exclusive:
            text_features = embed_texts(model, processor, list(labels), progress=False)
            logits = logit_scale_of(model) * image_features @ text_features.T
            scores = logits.softmax(dim=-1)[0].tolist()
        else:
            prompts = class_prompt_features(model, processor, labels)
            scores = zero_shot_probabilities(image_features, prompts, logit_scale_of(model))[0].tolist()
        return dict(zip(labels, scores, strict=True))

    notes = ["each label against its absence (prompt ensembles, as `radtune clip zero-shot`), or one softmax over "
             "the labels as typed"]  # fmt: skip
    return AppModel(task="contrastive", name=str(folder), classify=classify, labels=list(DEFAULT_LABELS), notes=notes)
