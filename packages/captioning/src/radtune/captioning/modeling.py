"""Load a trained captioner (full model or LoRA adapter, local or on the Hub) and generate with it.

One `Captioner` serves `radtune caption evaluate`, `radtune caption predict`, the final test evaluation of the
training entry points and the benchmarks, so every path decodes exactly the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"
# config.model_type → radtune's architecture name
ARCHITECTURE_BY_MODEL_TYPE = {"vision-encoder-decoder": "vit-gpt2", "blip": "blip"}
# Where `radtune.captioning.train` saves a ViT-GPT2 composed from --encoder and --decoder (an adapter's base).
COMPOSED_BASE = "base_model"


def resolve_model_path(repo_or_path: str | Path) -> Path:
    """A local folder for a model or adapter named by a path or a Hub repo id (downloaded when needed)."""
    from radtune.common.hub import resolve_model_path as resolve

    return resolve(repo_or_path)


@dataclass
class Captioner:
    """A loaded image-to-text model with what it needs to read images and write text.

    Attributes:
        model: `VisionEncoderDecoderModel`, `BlipForConditionalGeneration` or `BlipForQuestionAnswering` (possibly
            wrapped in a `PeftModel`), in eval mode.
        tokenizer: its tokenizer.
        image_processor: its image processor.
        architecture (`str`): `"vit-gpt2"` or `"blip"`.
        vqa (`bool`): a question-answering model (generation reads a question).
        generation_kwargs (`dict`): defaults for `generate` (`max_new_tokens`, `num_beams`).
    """

    model: Any
    tokenizer: Any
    image_processor: Any
    architecture: str
    vqa: bool = False
    generation_kwargs: dict = field(default_factory=lambda: {"max_new_tokens": 64, "num_beams": 1})

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(
        self,
        images: Sequence,
        questions: Sequence[str] | None = None,
        **generation_kwargs,
    ) -> list[str]:
        """Captions (or, for a VQA model, answers to `questions`) for a batch of images.

        Args:
            images (`Sequence`): PIL images, paths, URLs, DICOM files or undecoded dataset values
                (see `radtune.captioning.collators.open_image`).
            questions (`Sequence[str]`, *optional*): one question per image (VQA models only, and required there).
            generation_kwargs: override `self.generation_kwargs` (`max_new_tokens`, `num_beams`, …).
        """
        import torch

        from radtune.captioning.collators import image_pixel_values

        if self.vqa and questions is None:
            raise ValueError("a VQA model needs one question per image")
        pixel_values = image_pixel_values(images, self.image_processor)
        pixel_values = pixel_values.to(self.device, dtype=next(self.model.parameters()).dtype)
        inputs = {"pixel_values": pixel_values}
        if questions is not None:
            encoded = self.tokenizer(list(questions), padding="longest", return_tensors="pt").to(self.device)
            inputs.update(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
        with torch.inference_mode():
            generated = self.model.generate(**inputs, **{**self.generation_kwargs, **generation_kwargs})
        return [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]


def model_class(config) -> type:
    """The transformers class for a captioning/VQA checkpoint's config."""
    import transformers

    if config.model_type == "vision-encoder-decoder":
        return transformers.VisionEncoderDecoderModel
    if config.model_type == "blip":
        architectures = config.architectures or ["BlipForConditionalGeneration"]
        if architectures[0] == "BlipForQuestionAnswering":
            return transformers.BlipForQuestionAnswering
        return transformers.BlipForConditionalGeneration
    raise ValueError(
        f"model type {config.model_type!r} is not a radtune captioning model "
        "(expected a VisionEncoderDecoderModel or a BLIP checkpoint)"
    )


def prepare_tokenizer(tokenizer):
    """Give GPT-2 style tokenizers a pad token (their EOS); captioning never pads on the left."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_processing(*folders: Path):
    """(tokenizer, image_processor) from the first of `folders` that holds them."""
    from transformers import AutoImageProcessor, AutoTokenizer

    errors = []
    for folder in folders:
        try:
            return AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
        except (OSError, ValueError) as error:
            errors.append(f"{folder}: {error}")
    raise OSError("no tokenizer and image processor found in: " + "; ".join(errors))


def load_captioner(
    repo_or_path: str | Path, device: str | None = None, dtype: str | None = None, base_model: str | None = None
) -> Captioner:
    """Load a full model folder, or a LoRA adapter (`adapter_config.json`) on top of its base model.

    Args:
        repo_or_path (`str` or `Path`): a local folder or a Hub repo id, holding a full model or an adapter.
        device (`str`, *optional*): `"cuda"`, `"cpu"`, …; defaults to CUDA when available.
        dtype (`str`, *optional*): `"float16"`, `"bfloat16"` or `"float32"` (default).
        base_model (`str`, *optional*): an adapter's base model (folder or Hub repo id); defaults to the run's
            composed `base_model/` folder when it has one, else the base the adapter names. Ignored for a full model.

    Raises:
        `ValueError`: the folder holds only `checkpoint-*` folders (the message names them and the `--model` that
        evaluates the newest), or no model at all.
    """
    import torch
    from transformers import AutoConfig, GenerationConfig

    from radtune.common.hub import require_model_files

    folder = resolve_model_path(repo_or_path)
    require_model_files(folder)
    adapter_file = folder / ADAPTER_CONFIG
    base_folder = folder
    if adapter_file.is_file():
        if base_model is None and (folder / COMPOSED_BASE / "config.json").is_file():
            base_model = folder / COMPOSED_BASE
        base_folder = resolve_model_path(base_model or json.loads(adapter_file.read_text())["base_model_name_or_path"])
    config = AutoConfig.from_pretrained(base_folder)
    cls = model_class(config)
    torch_dtype = getattr(torch, dtype) if dtype else torch.float32
    model = cls.from_pretrained(base_folder, dtype=torch_dtype)
    if adapter_file.is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, folder)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).eval()
    tokenizer, image_processor = load_processing(folder, base_folder)
    generation_kwargs = {"max_new_tokens": 64, "num_beams": 1}
    try:
        saved = GenerationConfig.from_pretrained(folder)
        generation_kwargs.update(max_new_tokens=saved.max_new_tokens or 64, num_beams=saved.num_beams or 1)
    except OSError:
        pass
    return Captioner(
        model=model,
        tokenizer=prepare_tokenizer(tokenizer),
        image_processor=image_processor,
        architecture=ARCHITECTURE_BY_MODEL_TYPE[config.model_type],
        vqa=cls.__name__ == "BlipForQuestionAnswering",
        generation_kwargs=generation_kwargs,
    )
