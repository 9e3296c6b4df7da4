"""The tiny captioners (`radtune tiny vit-gpt2|blip-caption|blip-vqa`): each loads with plain transformers code,
runs, trains a LoRA adapter, and the captioners generate."""

from __future__ import annotations

import pytest
from PIL import Image

# LoRA targets per kind, as a user would write them for the full-size model.
LORA_TARGETS = {"vit-gpt2": ["c_attn"], "blip-caption": ["query", "value"], "blip-vqa": ["query", "value"]}


def _images(n=2):
    return [Image.new("RGB", (40 + 8 * i, 36), color=(30 * i, 90, 160)) for i in range(n)]


def _load_and_batch(kind, folder):
    """Load `folder` with the Auto/plain classes a user would use; return (model, loss_fn)."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    if kind == "vit-gpt2":
        from transformers import VisionEncoderDecoderModel

        model = VisionEncoderDecoderModel.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        pixels = AutoImageProcessor.from_pretrained(folder)(_images(), return_tensors="pt").pixel_values
        labels = tokenizer(["No pleural effusion.", "Mild cardiomegaly."], padding=True, return_tensors="pt").input_ids
        return model, lambda m: m(pixel_values=pixels, labels=labels).loss
    from transformers import BlipForConditionalGeneration, BlipForQuestionAnswering

    model = (BlipForQuestionAnswering if kind == "blip-vqa" else BlipForConditionalGeneration).from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder)
    if kind == "blip-vqa":
        batch = processor(images=_images(), text=["Is there a nodule?"] * 2, return_tensors="pt")
        batch["labels"] = processor.tokenizer(["yes", "no"], return_tensors="pt", padding=True).input_ids
    else:
        batch = processor(images=_images(), text=["Small left effusion.", "Normal chest."], return_tensors="pt",
                          padding=True)  # fmt: skip
        batch["labels"] = batch["input_ids"].clone()
    return model, lambda m: m(**batch).loss


@pytest.mark.parametrize("kind", sorted(LORA_TARGETS))
def test_tiny_captioner_loads_runs_and_a_lora_step_changes_only_the_adapter(kind, tiny_model, lora_step):
    model, loss_fn = _load_and_batch(kind, tiny_model(kind))
    lora_step(model, loss_fn, LORA_TARGETS[kind])


@pytest.mark.parametrize("kind", ["vit-gpt2", "blip-caption"])
def test_tiny_captioners_generate_from_the_decoder_start(kind, tiny_model):
    from transformers import AutoImageProcessor, AutoProcessor

    folder = tiny_model(kind)
    if kind == "vit-gpt2":
        from transformers import VisionEncoderDecoderModel

        model = VisionEncoderDecoderModel.from_pretrained(folder)
        pixels = AutoImageProcessor.from_pretrained(folder)(_images(1), return_tensors="pt").pixel_values
        output = model.generate(pixel_values=pixels, max_new_tokens=4, do_sample=False)
        assert output[0, 0] == model.config.decoder_start_token_id
    else:
        from transformers import BlipForConditionalGeneration

        model = BlipForConditionalGeneration.from_pretrained(folder)
        pixels = AutoProcessor.from_pretrained(folder)(images=_images(1), return_tensors="pt").pixel_values
        output = model.generate(pixel_values=pixels, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > 1  # more than the decoder start token
