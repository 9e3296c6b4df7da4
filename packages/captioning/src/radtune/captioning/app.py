"""Captioners and BLIP VQA models in `radtune app` (the `captioning` and `blip-vqa` entries of the `radtune.app`
group): loaded once with `radtune.captioning.modeling.load_captioner`, generating with its `Captioner.generate`,
as evaluation and `radtune caption predict` do."""

from __future__ import annotations

from pathlib import Path


def app_model(folder: Path, info: dict, device: str | None = None):
    """`AppModel` with `caption(image)` for a captioner, `answer(image, question)` for a BLIP VQA model."""
    from radtune.captioning.modeling import load_captioner
    from radtune.common.app import AppModel

    captioner = load_captioner(folder, device=device)
    settings = ", ".join(f"{name} {value}" for name, value in captioner.generation_kwargs.items())
    notes = [f"{captioner.architecture}, generating with {settings} (as the run's evaluation)"]
    if captioner.vqa:

        def answer(image, question: str) -> str:
            return captioner.generate([image], questions=[question])[0]

        return AppModel(task=info.get("task") or "blip-vqa", name=str(folder), answer=answer, notes=notes)

    def caption(image) -> str:
        return captioner.generate([image])[0]

    return AppModel(task=info.get("task") or "captioning", name=str(folder), caption=caption, notes=notes)
