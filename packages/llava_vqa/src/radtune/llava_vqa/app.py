"""The LLaVA model in `radtune app` (the `vqa` entry of the `radtune.app` group): loaded once with
`radtune.llava_vqa.inference.load_vqa_model`, answering with `generate_answers` as evaluation and
`radtune vqa predict` do."""

from __future__ import annotations

from pathlib import Path


def app_model(folder: Path, info: dict, device: str | None = None):
    """`AppModel` with `answer(image, question)`: greedy, at most the run's `max_new_tokens` (else evaluation's 32)."""
    from radtune.common.app import AppModel
    from radtune.llava_vqa.evaluation import MAX_NEW_TOKENS
    from radtune.llava_vqa.inference import generate_answers, load_vqa_model

    model, processor = load_vqa_model(folder, device=device)
    max_new_tokens = int(info.get("max_new_tokens") or MAX_NEW_TOKENS)

    def answer(image, question: str) -> str:
        [text] = generate_answers(model, processor, [image], [question], max_new_tokens=max_new_tokens,
                                  progress=False)  # fmt: skip
        return text

    notes = [f"greedy decoding, at most {max_new_tokens} new tokens (as the run's evaluation)"]
    return AppModel(task="vqa", name=str(folder), answer=answer, notes=notes)
