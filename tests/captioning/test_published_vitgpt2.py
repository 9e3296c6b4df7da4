"""ViT-GPT2 captioning against the published files of nlpconnect/vit-gpt2-image-captioning, gpt2 and
google/vit-base-patch16-224-in21k (tests/fixtures/, see its README).

GPT-2 has one special token, `<|endoftext|>` (id 50256, the last of its 50,257 ids), which is its BOS, EOS and unknown
token; gpt2 itself publishes no pad token (its `tokenizer_config.json` is `{"model_max_length": 1024}`, its
`generation_config.json` names BOS and EOS 50256 only), while nlpconnect's `special_tokens_map.json` makes
`<|endoftext|>` the pad token too. The tiny models keep the 50,257-token vocabulary and id 50256; the tiny tokenizer is
word-level (GPT-2's `vocab.json`/`merges.txt` are not kept) with the published special tokens. Both image processors
are the published `preprocessor_config.json` files, unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parents[1] / "fixtures"
CAPTIONER = FIXTURES / "vit-gpt2-image-captioning"
SPECIAL_TOKENS = json.loads((CAPTIONER / "special_tokens_map.json").read_text())
CAPTIONER_PREPROCESSOR = json.loads((CAPTIONER / "preprocessor_config.json").read_text())
VIT_PREPROCESSOR = json.loads((FIXTURES / "vit-base-patch16-224-in21k" / "preprocessor_config.json").read_text())
GPT2_GENERATION = json.loads((FIXTURES / "gpt2" / "generation_config.json").read_text())
GPT2_TOKENIZER = json.loads((FIXTURES / "gpt2" / "tokenizer_config.json").read_text())
WORDS = ["no", "acute", "cardiopulmonary", "process", "small", "left", "pleural", "effusion", "."]
EOT = 50256  # <|endoftext|>
VOCAB_SIZE = 50257


def word_ids(*words: str) -> list[int]:
    return [WORDS.index(word) for word in words]


def gpt2_tokenizer(**special_tokens):
    """A word-level stand-in for GPT-2's tokenizer: `WORDS` first, fillers, `<|endoftext|>` at 50256; like GPT-2's,
    it adds no special token around a text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(WORDS)}
    vocab.update({f"filler{i}": i for i in range(len(WORDS), EOT)})
    vocab["<|endoftext|>"] = EOT
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=GPT2_TOKENIZER["model_max_length"],
                                   **special_tokens)  # fmt: skip


def tiny_vit_config():
    from transformers import ViTConfig

    # The published 224-pixel, 16-pixel-patch input; only the widths and depths shrunk.
    return ViTConfig(image_size=224, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64)  # fmt: skip


def tiny_gpt2_config(**kwargs):
    from transformers import GPT2Config

    ids = {"bos_token_id": GPT2_GENERATION["bos_token_id"], "eos_token_id": GPT2_GENERATION["eos_token_id"]}
    return GPT2Config(vocab_size=VOCAB_SIZE, n_positions=64, n_embd=32, n_layer=2, n_head=4, **ids, **kwargs)


@pytest.fixture(scope="module")
def published_captioner(tmp_path_factory) -> Path:
    """A folder like nlpconnect's: a ViT encoder and a GPT-2 decoder with 50256 as BOS, EOS and decoder start (as its
    config's decoder says), its special tokens and its image processor."""
    import torch
    from transformers import VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    folder = tmp_path_factory.mktemp("published-vit-gpt2")
    decoder = tiny_gpt2_config(add_cross_attention=True, is_decoder=True, decoder_start_token_id=EOT)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(tiny_vit_config(), decoder)
    config.bos_token_id = EOT  # the published top-level value; decoder start and pad are left for radtune to set
    torch.manual_seed(0)
    VisionEncoderDecoderModel(config=config).save_pretrained(folder)
    gpt2_tokenizer(**SPECIAL_TOKENS).save_pretrained(folder)
    shutil.copy(CAPTIONER / "preprocessor_config.json", folder / "preprocessor_config.json")
    return folder


@pytest.fixture(scope="module")
def published_parts(tmp_path_factory) -> tuple[Path, Path]:
    """(encoder folder, decoder folder) like google/vit-base-patch16-224-in21k and gpt2, for `--encoder/--decoder`."""
    import torch
    from transformers import GPT2LMHeadModel, ViTModel

    root = tmp_path_factory.mktemp("published-parts")
    torch.manual_seed(0)
    ViTModel(tiny_vit_config(), add_pooling_layer=False).save_pretrained(root / "vit")
    shutil.copy(FIXTURES / "vit-base-patch16-224-in21k" / "preprocessor_config.json", root / "vit")
    GPT2LMHeadModel(tiny_gpt2_config()).save_pretrained(root / "gpt2")
    eot = "<|endoftext|>"
    gpt2_tokenizer(bos_token=eot, eos_token=eot, unk_token=eot).save_pretrained(root / "gpt2")  # no pad, as gpt2
    return root / "vit", root / "gpt2"


def _build(model_path: str | None = None, parts: tuple[Path, Path] | None = None, output_dir: Path | None = None):
    from trl import ModelConfig

    from radtune.captioning.train import CaptioningArguments, build_vit_gpt2

    encoder, decoder = parts or (None, None)
    script_args = CaptioningArguments(dataset_name="unused", encoder=encoder and str(encoder),
                                      decoder=decoder and str(decoder))  # fmt: skip
    return build_vit_gpt2(script_args, ModelConfig(model_name_or_path=model_path), output_dir)


def _expected_pixels(preprocessor: dict, value: int = 128):
    import torch

    mean, std = preprocessor["image_mean"], preprocessor["image_std"]
    return torch.tensor([(value / 255 - m) / s for m, s in zip(mean, std, strict=True)])


def test_the_tiny_tokenizers_keep_the_published_special_tokens(published_captioner, published_parts):
    from transformers import AutoTokenizer

    captioner = AutoTokenizer.from_pretrained(published_captioner)
    assert {key: getattr(captioner, key) for key in SPECIAL_TOKENS} == SPECIAL_TOKENS
    assert captioner.convert_tokens_to_ids("<|endoftext|>") == EOT == VOCAB_SIZE - 1
    gpt2 = AutoTokenizer.from_pretrained(published_parts[1])
    assert gpt2.pad_token is None and gpt2.eos_token_id == gpt2.bos_token_id == EOT


@pytest.mark.parametrize("source", ["captioner", "composed"])
def test_training_and_inference_use_the_published_image_processing(source, published_captioner, published_parts,
                                                                    tmp_path):  # fmt: skip
    """A uniform grey image becomes (v / 255 - 0.5) / 0.5 at 224 × 224, as both published preprocessors say, in the
    training collator and in radtune's captioner."""
    import numpy as np
    import torch
    from PIL import Image

    from radtune.captioning.collators import CaptioningCollator, image_pixel_values
    from radtune.captioning.modeling import load_captioner

    if source == "captioner":
        model, tokenizer, image_processor = _build(str(published_captioner))
        preprocessor, saved = CAPTIONER_PREPROCESSOR, published_captioner
    else:
        model, tokenizer, image_processor = _build(parts=published_parts, output_dir=tmp_path)
        preprocessor, saved = VIT_PREPROCESSOR, tmp_path / "base_model"
    image = Image.fromarray(np.full((300, 400, 3), 128, dtype=np.uint8))
    train_pixels = CaptioningCollator(image_processor, tokenizer, append_eos=True)([{"image": image, "text": "no"}])
    inference_pixels = image_pixel_values([image], load_captioner(saved, device="cpu").image_processor)
    expected = _expected_pixels(preprocessor)
    for pixels in (train_pixels["pixel_values"], inference_pixels):
        assert tuple(pixels.shape) == (1, 3, preprocessor["size"], preprocessor["size"])
        per_channel = pixels[0].flatten(1)
        assert torch.allclose(per_channel, expected[:, None].expand_as(per_channel), atol=1e-4)


@pytest.mark.parametrize("source", ["captioner", "composed"])
def test_labels_are_the_caption_and_one_eos(source, published_captioner, published_parts, tmp_path):
    """GPT-2 adds no special token: radtune appends `<|endoftext|>` once, pads with it (gpt2 has no pad token, so
    radtune makes EOS the pad, as nlpconnect's map does), and the padding positions, not that EOS, are -100. The
    decoder starts from 50256 (nlpconnect's `decoder_start_token_id`, gpt2's BOS), which is never a target."""
    import torch
    from PIL import Image

    from radtune.captioning.collators import CaptioningCollator

    if source == "captioner":
        model, tokenizer, image_processor = _build(str(published_captioner))
    else:
        model, tokenizer, image_processor = _build(parts=published_parts, output_dir=tmp_path)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == EOT
    assert model.config.decoder_start_token_id == EOT and model.config.pad_token_id == EOT
    if source == "captioner":
        assert model.config.decoder.decoder_start_token_id == EOT  # what nlpconnect's decoder config says

    # As radtune.captioning.train.build_trainer builds it for architecture vit-gpt2.
    collator = CaptioningCollator(image_processor, tokenizer, append_eos=True, max_length=128)
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    batch = collator([{"image": image, "text": "no acute cardiopulmonary process."},
                      {"image": image, "text": "small effusion."}])  # fmt: skip
    caption = word_ids("no", "acute", "cardiopulmonary", "process", ".")
    short = word_ids("small", "effusion", ".")
    assert batch["labels"].tolist() == [[*caption, EOT], [*short, EOT, -100, -100]]

    model.eval()
    with torch.no_grad():
        loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
        eos_changed = batch["labels"].clone()
        eos_changed[1, 3] = 0
        assert model(pixel_values=batch["pixel_values"], labels=eos_changed).loss.item() != pytest.approx(loss.item())


def test_generation_starts_from_the_published_start_and_stops_at_eos(published_captioner):
    """With `<|endoftext|>` made the likeliest next token, radtune's captioner generates `50256 50256` (start, EOS)
    and stops: an empty caption, not `max_new_tokens` tokens."""
    import torch
    from PIL import Image

    from radtune.captioning.modeling import load_captioner

    captioner = load_captioner(published_captioner, device="cpu")
    with torch.no_grad():  # GPT-2's head has no bias: make every hidden state score EOS highest
        head = captioner.model.decoder.lm_head
        head.weight.zero_()
        ln = captioner.model.decoder.transformer.ln_f
        ln.weight.zero_()
        ln.bias.fill_(1.0)
        head.weight[EOT] = 1.0
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    pixel_values = captioner.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        generated = captioner.model.generate(pixel_values=pixel_values, max_new_tokens=8)
    assert generated.tolist() == [[EOT, EOT]]
    assert captioner.generate([image], max_new_tokens=8) == [""]
