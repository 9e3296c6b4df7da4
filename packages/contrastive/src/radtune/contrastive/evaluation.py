"""Zero-shot classification and cross-modal retrieval with a contrastive model.

Zero-shot follows CheXzero: for each class a positive prompt set ("{class}", "there is {class}", …) and a negative
one ("no {class}", "there is no {class}", …); each set's text features are averaged over its templates (prompt
ensembling) and re-normalised; the probability of the class is the softmax over the image's scaled similarity to
the positive and to the negative prompt. Per-class AUC, macro and micro AUC come from
`radtune.common.metrics.classification`, Recall@K and median rank from `radtune.common.metrics.retrieval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from radtune.contrastive.modeling import ContrastiveProcessor, encode_images, encode_texts

NIH_CLASSES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)  # fmt: skip
CHEXPERT_CLASSES = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion",
    "Lung Opacity", "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices",
)  # fmt: skip
LABEL_SETS = {"nih": NIH_CLASSES, "chexpert": CHEXPERT_CLASSES}

# How reports name a class where the label's own name reads badly in a sentence.
CLASS_PHRASES = {
    "effusion": "pleural effusion",
    "pleural other": "pleural abnormality",
    "infiltration": "infiltrate",
}
# Written like report sentences (sentence case, the finding after a space): tokenizers that keep case and
# leading spaces (byte-level BPE) otherwise see other tokens than the reports taught them.
POSITIVE_TEMPLATES = ("There is {}.", "Findings consistent with {}.", "Chest radiograph showing {}.", "Evidence of {}.")
NEGATIVE_TEMPLATES = ("No {}.", "There is no {}.", "No evidence of {}.", "Chest radiograph showing no {}.")


def normalise_label(name: str) -> str:
    """`"Pleural_Thickening"` → `"pleural thickening"`: how labels are compared across datasets."""
    return " ".join(str(name).replace("_", " ").lower().split())


def resolve_labels(spec: str | Sequence[str]) -> list[str]:
    """`"nih"`, `"chexpert"` or a comma-separated list (or a sequence) of class names."""
    if isinstance(spec, str):
        if spec.lower() in LABEL_SETS:
            return list(LABEL_SETS[spec.lower()])
        spec = spec.split(",")
    names = [name.strip() for name in spec if name.strip()]
    if not names:
        raise ValueError("no class names given")
    return names


def class_phrase(name: str) -> str:
    label = normalise_label(name)
    return CLASS_PHRASES.get(label, label)


# Report sentences that join the templated prompts of a class (keyed by its phrase) where reports word a finding
# otherwise than the templates do: a pleural finding with its size and side ("Small right pneumothorax."), a lung
# finding with its lobe, a normal heart as "Heart size is normal." (far more common in MIMIC-CXR than "No
# cardiomegaly."), no nodule or mass as "The lungs are clear." (reports rarely write "No nodule."). Chosen on a
# development split, never a test split: on the demo's tiny CLIP they raise the macro AUC on the NIH-layout
# phantoms' train split by 0.03 (effusion and consolidation most), and did so on each of the four CLIP variants tried.
_SIDES = ("right", "left")
_LOBES = tuple(f"{side} {level} lobe" for side in _SIDES for level in ("upper", "lower"))
EXTRA_PROMPTS = {
    "cardiomegaly": (
        ("The heart is enlarged.", "The heart size is enlarged."),
        ("Heart size is normal.", "The heart size is within normal limits.", "Normal heart size."),
    ),
    "pleural effusion": (
        tuple(f"{size} {side} pleural effusion." for size in ("Small", "Moderate") for side in _SIDES)
        + ("Bilateral pleural effusions.",),
        (),
    ),
    "pneumothorax": (tuple(f"{size} {side} pneumothorax." for size in ("Small", "Large") for side in _SIDES), ()),
    "nodule": (tuple(f"A nodule is seen in the {lobe}." for lobe in _LOBES), ("The lungs are clear.",)),
    "mass": ((), ("The lungs are clear.",)),
    "consolidation": (tuple(f"{lobe.capitalize()} consolidation." for lobe in _LOBES), ()),
}


def prompts(name: str) -> tuple[list[str], list[str]]:
    """The positive and negative prompts of a class."""
    phrase = class_phrase(name)
    positive, negative = EXTRA_PROMPTS.get(phrase, ((), ()))
    return ([t.format(phrase) for t in POSITIVE_TEMPLATES] + list(positive),
            [t.format(phrase) for t in NEGATIVE_TEMPLATES] + list(negative))  # fmt: skip


def label_matrix(rows_labels: Sequence[Sequence[str] | str | None], class_names: Sequence[str]) -> np.ndarray:
    """`(n, c)` 0/1 matrix: does each row's label list (or `|`-joined string) hold each class?"""
    wanted = [normalise_label(name) for name in class_names]
    matrix = np.zeros((len(rows_labels), len(class_names)))
    for i, labels in enumerate(rows_labels):
        if labels is None:
            labels = []
        elif isinstance(labels, str):
            labels = labels.split("|")
        present = {normalise_label(label) for label in labels}
        matrix[i] = [name in present for name in wanted]
    return matrix


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def embed_images(model, processor: ContrastiveProcessor, images: Sequence, batch_size: int = 32, desc: str = "images") -> torch.Tensor:
    """L2-normalised features of `images` (anything `load_image` opens), on the CPU."""
    from tqdm.auto import tqdm

    from radtune.common.images import load_image

    device, out = _device(model), []
    for start in tqdm(range(0, len(images), batch_size), desc=f"encoding {desc}", unit="batch"):
        batch = [load_image(image, mode="RGB") for image in images[start : start + batch_size]]
        pixels = processor.image_processor(images=batch, return_tensors="pt")["pixel_values"].to(device)
        out.append(encode_images(model, pixels).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def embed_texts(
    model, processor: ContrastiveProcessor, texts: Sequence[str], batch_size: int = 64, max_length: int = 77,
    desc: str = "texts", progress: bool = True,
) -> torch.Tensor:  # fmt: skip
    """L2-normalised features of `texts`, on the CPU."""
    from tqdm.auto import tqdm

    device, out = _device(model), []
    max_length = min(max_length, processor.tokenizer.model_max_length)
    for start in tqdm(range(0, len(texts), batch_size), desc=f"encoding {desc}", unit="batch", disable=not progress):
        tokens = processor.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                     max_length=max_length, return_tensors="pt").to(device)  # fmt: skip
        out.append(encode_texts(model, tokens["input_ids"], tokens.get("attention_mask")).float().cpu())
    return torch.cat(out)


def logit_scale_of(model) -> float:
    return float(min(model.logit_scale.detach().exp().item(), 100.0))


@torch.no_grad()
def class_prompt_features(model, processor: ContrastiveProcessor, class_names: Sequence[str]) -> torch.Tensor:
    """`(c, 2, dim)`: the ensembled positive and negative prompt features of each class."""
    features = []
    for name in class_names:
        pair = []
        for texts in prompts(name):
            mean = embed_texts(model, processor, texts, progress=False).mean(dim=0)
            pair.append(mean / mean.norm())
        features.append(torch.stack(pair))
    return torch.stack(features)


def zero_shot_probabilities(image_features: torch.Tensor, prompt_features: torch.Tensor, logit_scale: float) -> np.ndarray:
    """`(n, c)` probability of each class: softmax over (positive, negative) prompt similarities."""
    logits = logit_scale * torch.einsum("nd,cpd->ncp", image_features, prompt_features)
    return logits.softmax(dim=-1)[..., 0].numpy()


def zero_shot(
    model, processor: ContrastiveProcessor, images: Sequence, labels: Sequence, class_names: Sequence[str],
    batch_size: int = 32,
) -> tuple[dict, np.ndarray, np.ndarray]:  # fmt: skip
    """Zero-shot scores and metrics.

    Returns:
        `(metrics, probabilities, truth)`: metrics as `radtune.common.metrics.classification.multilabel_metrics`
        gives them (`auc/<class>`, `auc_macro`, `auc_micro`, …) plus `undefined`; `(n, c)` arrays.
    """
    from radtune.common.metrics.classification import multilabel_metrics

    model.eval()
    image_features = embed_images(model, processor, images, batch_size)
    probabilities = zero_shot_probabilities(image_features, class_prompt_features(model, processor, class_names),
                                            logit_scale_of(model))  # fmt: skip
    truth = label_matrix(labels, class_names)
    result = multilabel_metrics(truth, probabilities, class_names)
    metrics = {name: value for name, value in result.metrics.items() if name.startswith("auc")}
    return {"metrics": metrics, "undefined": {k: v for k, v in result.undefined.items() if k in metrics}}, probabilities, truth


def retrieve(
    model, processor: ContrastiveProcessor, images: Sequence, captions: Sequence[str], batch_size: int = 32,
    max_length: int = 77,
) -> tuple[dict, np.ndarray]:  # fmt: skip
    """Recall@1/5/10 and median rank, image→text and text→image (text `i` belongs to image `i`).

    Returns:
        `(metrics, similarity)`, with `chance/recall@K` = K / n beside the measured values.
    """
    from radtune.common.metrics.retrieval import RECALL_AT, retrieval_metrics

    model.eval()
    similarity = (embed_images(model, processor, images, batch_size)
                  @ embed_texts(model, processor, captions, max_length=max_length).T).numpy()  # fmt: skip
    metrics = retrieval_metrics(similarity)
    for k in RECALL_AT:
        metrics[f"chance/recall@{k}"] = min(1.0, k / len(captions))
    return metrics, similarity





def zero_shot_ci(probabilities: np.ndarray, truth: np.ndarray, class_names: Sequence[str], n_resamples: int = 1000,
                 seed: int = 0) -> dict[str, tuple[float, float]]:  # fmt: skip
    """Bootstrap 95% intervals (over images) of each defined class's AUC and of the macro AUC (as CheXzero
    reports them)."""
    from radtune.common.metrics.bootstrap import bootstrap_cis
    from radtune.common.metrics.classification import multilabel_metrics

    def statistics(idx):
        return multilabel_metrics(truth[idx], probabilities[idx], class_names).metrics

    full = multilabel_metrics(truth, probabilities, class_names).metrics
    names = [f"auc/{c}" for c in class_names if not math.isnan(full[f"auc/{c}"])] + ["auc_macro"]
    return bootstrap_cis(len(truth), statistics, names, n_resamples=n_resamples, seed=seed)


def zero_shot_rows(ids: Sequence, labels: Sequence, probabilities: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """`evaluation_results.csv` rows: predicted classes (p >= 0.5, `|`-joined), the true evaluated classes as
    references, and the row's own label list."""
    rows = []
    truth = label_matrix(labels, class_names)
    for identifier, row_labels, scores, true in zip(ids, labels, probabilities, truth, strict=True):
        rows.append({
            "id": str(identifier),
            "prediction": "|".join(name for name, p in zip(class_names, scores, strict=True) if p >= 0.5),
            "references": [name for name, t in zip(class_names, true, strict=True) if t] or [""],
            "labels": list(row_labels) if row_labels is not None else [],
        })  # fmt: skip
    return rows


def retrieval_rows(ids: Sequence, captions: Sequence[str], similarity: np.ndarray) -> list[dict]:
    """`evaluation_results.csv` rows: each image's top-ranked text against its own text."""
    best = similarity.argmax(axis=1)
    return [{"id": str(identifier), "prediction": captions[j], "references": [caption], "image_id": str(identifier)}
            for identifier, j, caption in zip(ids, best, captions, strict=True)]  # fmt: skip


def write_outputs(out_dir, metrics: dict, rows: list[dict], *, task: str, model: str, dataset: str, split: str | None,
                  ci: dict | None = None, extra_meta: dict | None = None) -> Path:  # fmt: skip
    """`metrics.json` and `evaluation_results.csv` in `out_dir`, through common's one writer."""
    from pathlib import Path

    from radtune.common.metrics.io import write_metrics, write_results

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_results(out_dir / "evaluation_results.csv", rows)
    return write_metrics(out_dir / "metrics.json", metrics, task=task, model=str(model), dataset=str(dataset),
                         split=split, n=len(rows), ci=ci, extra_meta=extra_meta)  # fmt: skip
