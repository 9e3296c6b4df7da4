"""The captioning and BLIP VQA collators: dynamic padding, exact label masking, EOS and decoder-start handling."""

from __future__ import annotations

import pytest
import torch
from captioning_data import make_image

from radtune.captioning.collators import IGNORE_INDEX, CaptioningCollator, row_text

TEXTS = ["No acute process.", "Small left pleural effusion with basal atelectasis and mild cardiomegaly."]


def _processing(folder):
    from transformers import AutoImageProcessor, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)


def test_labels_are_padded_ids_with_exactly_the_padding_masked(tiny_model):
    tokenizer, image_processor = _processing(tiny_model("blip-caption"))
    collator = CaptioningCollator(image_processor, tokenizer, text_inputs=True)
    batch = collator([{"image": make_image(i), "text": text} for i, text in enumerate(TEXTS)])

    expected = [tokenizer(text)["input_ids"] for text in TEXTS]
    longest = max(len(ids) for ids in expected)
    assert batch["input_ids"].shape == (2, longest)  # padded to the batch, not to max_length
    assert batch["pixel_values"].shape[0] == 2
    for row, ids in enumerate(expected):
        n = len(ids)
        assert batch["labels"][row, :n].tolist() == ids
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (longest - n)
        assert batch["input_ids"][row, :n].tolist() == ids
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
    # nothing but padding is masked
    assert torch.equal(batch["labels"] == IGNORE_INDEX, batch["attention_mask"] == 0)


def test_gpt2_style_keeps_eos_label_even_when_pad_is_eos(tiny_model):
    tokenizer, image_processor = _processing(tiny_model("vit-gpt2"))
    tokenizer.pad_token = tokenizer.eos_token  # what nlpconnect/vit-gpt2 ships: no pad token, EOS used instead
    collator = CaptioningCollator(image_processor, tokenizer, append_eos=True)
    batch = collator([{"image": make_image(i), "text": text} for i, text in enumerate(TEXTS)])
    assert set(batch) == {"pixel_values", "labels"}
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        labels = batch["labels"][row].tolist()
        assert labels[: len(ids)] == ids  # the EOS is a label: the model learns to stop
        assert labels[len(ids) :] == [IGNORE_INDEX] * (len(labels) - len(ids))


def test_truncation_keeps_eos_and_decoder_start_replaces_first_token(tiny_model):
    tokenizer, image_processor = _processing(tiny_model("vit-gpt2"))
    collator = CaptioningCollator(image_processor, tokenizer, append_eos=True, max_length=4, decoder_start_token_id=7)
    batch = collator([{"image": make_image(0), "text": TEXTS[1]}])
    labels = batch["labels"][0].tolist()
    assert len(labels) == 4 and labels[-1] == tokenizer.eos_token_id and labels[0] == 7


def test_text_from_several_columns_and_images_list_column(tiny_model):
    assert row_text({"findings": " Clear lungs. ", "impression": None}, ("findings", "impression")) == "Clear lungs."
    assert row_text({"findings": "A.", "impression": "B."}, ("findings", "impression")) == "A. B."
    tokenizer, image_processor = _processing(tiny_model("blip-caption"))
    collator = CaptioningCollator(image_processor, tokenizer, text_column=("findings", "impression"))
    batch = collator([{"images": [make_image(0)], "findings": "Clear lungs.", "impression": "Normal."}])
    assert batch["pixel_values"].shape[0] == 1


def test_tokenizer_without_pad_token_is_an_error(tiny_model):
    tokenizer, image_processor = _processing(tiny_model("vit-gpt2"))
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        CaptioningCollator(image_processor, tokenizer)


def test_large_images_are_shrunk_first_with_nearly_the_same_pixels(tiny_model):
    import numpy as np
    from PIL import Image

    from radtune.captioning.collators import image_pixel_values

    _, image_processor = _processing(tiny_model("blip-caption"))
    y, x = np.mgrid[0:480, 0:400]
    grey = ((np.sin(x / 40) + np.cos(y / 55)) * 60 + 128).astype(np.uint8)  # a smooth radiograph-like image
    image = Image.fromarray(grey, mode="L")
    fast = image_pixel_values([image], image_processor)
    direct = image_processor(images=[image.convert("RGB")], return_tensors="pt")["pixel_values"]
    assert fast.shape == direct.shape == (1, 3, 32, 32)
    assert (fast - direct).abs().mean() < 0.05
    # 16-bit images are scaled to 8 bits, not clipped
    wide = Image.fromarray(grey.astype(np.uint16) * 200)  # mode I;16
    assert image_pixel_values([wide], image_processor).shape == (1, 3, 32, 32)


def test_jpegs_decode_at_reduced_scale_with_nearly_the_same_pixels(tiny_model, tmp_path):
    import io

    import numpy as np
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from radtune.captioning.collators import image_pixel_values, open_image, undecoded_images

    tokenizer, image_processor = _processing(tiny_model("blip-caption"))
    y, x = np.mgrid[0:512, 0:512]
    grey = ((np.sin(x / 50) + np.cos(y / 70)) * 60 + 128).astype(np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(grey, mode="L").save(buffer, format="JPEG", quality=95)
    jpeg = buffer.getvalue()

    opened = open_image({"bytes": jpeg, "path": None}, side=32)
    assert opened.mode == "L" and 64 <= min(opened.size) < 512  # decoded by libjpeg at 1/4 or 1/8 scale
    fast = image_pixel_values([{"bytes": jpeg, "path": None}], image_processor)
    direct = image_processor(images=[PILImage.open(io.BytesIO(jpeg)).convert("RGB")], return_tensors="pt")
    assert (fast - direct["pixel_values"]).abs().mean() < 0.05

    # a dataset cast to undecoded images collates the same as the decoded one
    features = Features({"image": Image(), "text": Value("string")})
    data = Dataset.from_dict({"image": [{"bytes": jpeg, "path": None}], "text": ["Clear lungs."]}, features=features)
    raw = undecoded_images(data)
    assert isinstance(raw[0]["image"], dict) and undecoded_images(raw) is raw
    collator = CaptioningCollator(image_processor, tokenizer)
    from_raw, from_decoded = collator([raw[0]]), collator([data[0]])
    assert (from_raw["pixel_values"] - from_decoded["pixel_values"]).abs().mean() < 0.05
    assert from_raw["labels"].tolist() == from_decoded["labels"].tolist()


def test_blip_vqa_collator_labels_the_answer_only_and_starts_it_with_the_decoder_start(tiny_model):
    from radtune.captioning.collators import BlipVQACollator

    tokenizer, image_processor = _processing(tiny_model("blip-vqa"))
    collator = BlipVQACollator(image_processor, tokenizer, decoder_start_token_id=5)
    rows = [{"image": make_image(0), "question": "Is there an effusion?", "answer": "yes"},
            {"image": make_image(1), "question": "Where?", "answer": "right lower lobe"}]  # fmt: skip
    batch = collator(rows)
    questions = [tokenizer(row["question"])["input_ids"] for row in rows]
    answers = [tokenizer(row["answer"])["input_ids"] for row in rows]
    assert batch["input_ids"][0, : len(questions[0])].tolist() == questions[0]  # the question is the text input
    assert batch["decoder_input_ids"][:, 0].tolist() == [5, 5]
    for row, ids in enumerate(answers):
        labels = batch["labels"][row].tolist()
        assert labels[: len(ids)] == [5, *ids[1:]]
        assert labels[len(ids) :] == [IGNORE_INDEX] * (len(labels) - len(ids))
    assert torch.equal(batch["labels"] == IGNORE_INDEX, batch["decoder_attention_mask"] == 0)
