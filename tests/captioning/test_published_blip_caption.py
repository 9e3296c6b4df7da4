"""BLIP captioning against Salesforce/blip-image-captioning-base's published files (tests/fixtures/, see its README).

The model is built from the published `config.json` with only the sizes shrunk: the vocabulary size (30,524) and every
special-token id stay (`[PAD]` 0, `[UNK]` 100, `[CLS]` 101, `[SEP]` 102, `[MASK]` 103, BLIP's `[DEC]` 30522 and `[ENC]`
30523), and the image processor is the published `preprocessor_config.json`, copied unchanged. The tokenizer's own files
were not found, so the tiny one is a BERT `vocab.txt` with those ids and a few words. radtune's training loader,
collator and captioner are then held to what the files say.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bert_vocab import CLS, FIRST_WORD_ID, PAD, SEP, bert_vocab
from bert_vocab import word_ids as _word_ids

FIXTURE = Path(__file__).parents[1] / "fixtures" / "blip-image-captioning-base"
PUBLISHED = json.loads((FIXTURE / "config.json").read_text())
PREPROCESSOR = json.loads((FIXTURE / "preprocessor_config.json").read_text())
WORDS = ["no", "acute", "cardiopulmonary", "process", "small", "left", "pleural", "effusion", "."]
DEC = 30522


def word_ids(*words: str) -> list[int]:
    return _word_ids(WORDS, *words)


@pytest.fixture(scope="module")
def published_blip(tmp_path_factory) -> Path:
    """A folder like the published checkpoint: its config with the sizes shrunk, its image processor unchanged."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration

    folder = tmp_path_factory.mktemp("published-blip")
    vocab = bert_vocab(WORDS, size=PUBLISHED["text_config"]["bos_token_id"])
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[DEC]", "[ENC]"]})  # ids 30522, 30523
    assert tokenizer.convert_tokens_to_ids(["[DEC]", "[SEP]", "[PAD]"]) == [DEC, SEP, PAD]
    tokenizer.save_pretrained(folder)

    config = BlipConfig.from_pretrained(FIXTURE)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    for key, value in small.items():
        setattr(config.text_config, key, value)
        setattr(config.vision_config, key, value)
    config.text_config.encoder_hidden_size = 32
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(folder)
    shutil.copy(FIXTURE / "preprocessor_config.json", folder / "preprocessor_config.json")
    return folder


def test_the_tiny_model_keeps_the_published_vocabulary_and_ids(published_blip):
    config = json.loads((published_blip / "config.json").read_text())
    for key in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id"):
        assert config["text_config"][key] == PUBLISHED["text_config"][key], key
    assert config["vision_config"]["image_size"] == PUBLISHED["vision_config"]["image_size"] == 384


def test_training_and_inference_use_the_published_image_processing(published_blip):
    """A uniform grey image comes out of radtune's collator and captioner as (v / 255 - mean) / std at 384 × 384,
    with the published mean and std (CLIP's), worked out here from the file."""
    import numpy as np
    import torch
    from PIL import Image
    from trl import ModelConfig

    from radtune.captioning.collators import CaptioningCollator, image_pixel_values
    from radtune.captioning.modeling import load_captioner
    from radtune.captioning.train import build_blip

    model, tokenizer, image_processor = build_blip(ModelConfig(model_name_or_path=str(published_blip)))
    image = Image.fromarray(np.full((500, 640, 3), 128, dtype=np.uint8))
    expected = torch.tensor(
        [
            (128 / 255 - mean) / std
            for mean, std in zip(PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"], strict=True)
        ]
    )
    collator = CaptioningCollator(image_processor, tokenizer, text_inputs=True, decoder_start_token_id=DEC)
    train_pixels = collator([{"image": image, "text": "no acute cardiopulmonary process."}])["pixel_values"]
    captioner = load_captioner(published_blip, device="cpu")
    inference_pixels = image_pixel_values([image], captioner.image_processor)
    for pixels in (train_pixels, inference_pixels):
        assert tuple(pixels.shape) == (1, 3, PREPROCESSOR["size"], PREPROCESSOR["size"])
        per_channel = pixels[0].flatten(1)
        assert torch.allclose(per_channel, expected[:, None].expand_as(per_channel), atol=1e-4)


def test_training_targets_are_the_caption_and_sep_only(published_blip):
    """Labels: `[DEC]` (the decoder start, which BLIP's shifted loss never predicts), the caption's tokens, `[SEP]`,
    then -100: no `[CLS]`, no padding. Changing the `[DEC]` label leaves the loss alone; changing `[SEP]`'s does not."""
    import torch
    from PIL import Image
    from trl import ModelConfig

    from radtune.captioning.collators import CaptioningCollator
    from radtune.captioning.train import build_blip

    model, tokenizer, image_processor = build_blip(ModelConfig(model_name_or_path=str(published_blip)))
    # As radtune.captioning.train.build_trainer builds it for architecture blip.
    collator = CaptioningCollator(image_processor, tokenizer, text_inputs=True, append_eos=False,
                                  decoder_start_token_id=model.config.text_config.bos_token_id)  # fmt: skip
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    batch = collator([{"image": image, "text": "No acute cardiopulmonary process."},
                      {"image": image, "text": "Small effusion."}])  # fmt: skip
    caption = word_ids("no", "acute", "cardiopulmonary", "process", ".")
    short = word_ids("small", "effusion", ".")
    assert batch["labels"].tolist() == [[DEC, *caption, SEP], [DEC, *short, SEP, -100, -100]]
    assert batch["input_ids"].tolist() == [[DEC, *caption, SEP], [DEC, *short, SEP, PAD, PAD]]
    assert CLS not in batch["input_ids"]

    model.eval()
    with torch.no_grad():
        loss = model(**batch).loss
        first_changed = {**batch, "labels": batch["labels"].clone()}
        first_changed["labels"][:, 0] = FIRST_WORD_ID
        sep_changed = {**batch, "labels": batch["labels"].clone()}
        sep_changed["labels"][0, 6] = FIRST_WORD_ID
        assert model(**first_changed).loss == pytest.approx(loss.item(), abs=1e-6)
        assert model(**sep_changed).loss.item() != pytest.approx(loss.item(), abs=1e-4)


def test_generation_starts_from_dec_and_stops_at_sep(published_blip, tmp_path):
    """With `[SEP]` made the likeliest next token, radtune's captioner generates `[DEC] [SEP]` and stops: an empty
    caption, not `max_new_tokens` tokens."""
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration

    from radtune.captioning.modeling import load_captioner

    folder = tmp_path / "stops"
    shutil.copytree(published_blip, folder)
    model = BlipForConditionalGeneration.from_pretrained(folder)
    with torch.no_grad():
        model.text_decoder.cls.predictions.decoder.bias[SEP] = 1e4
    model.save_pretrained(folder)

    captioner = load_captioner(folder, device="cpu")
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    pixel_values = captioner.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        generated = captioner.model.generate(pixel_values=pixel_values, max_new_tokens=8)
    assert generated.tolist() == [[DEC, SEP]]
    assert captioner.generate([image], max_new_tokens=8) == [""]
