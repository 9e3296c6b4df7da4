"""`evaluate` modules shipped with radtune, loadable offline by path.

`evaluate.load("bleu")` fetches its script from the Hub, which fails offline; these modules live in the
installed package instead:

    import evaluate
    from radtune.common.evaluate_modules import module_path

    captioning = evaluate.load(module_path("radtune_captioning"))
    captioning.compute(predictions=["no effusion"], references=[["no pleural effusion"]])

Modules: `radtune_captioning` (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D), `radtune_vqa` (strict and llava_med
families; pass `answer_types=`), `radtune_clinical` (label-based F1 of generated reports).
"""

from __future__ import annotations

from pathlib import Path

MODULES = ("radtune_captioning", "radtune_vqa", "radtune_clinical")


def module_path(name: str) -> str:
    """The path of a shipped `evaluate` module script, for `evaluate.load(path)`."""
    if name not in MODULES:
        raise ValueError(f"unknown evaluate module {name!r}; choose from {', '.join(MODULES)}")
    return str(Path(__file__).parent / name / f"{name}.py")
