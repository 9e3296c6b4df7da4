"""CLIP against openai/clip-vit-base-patch32's published `config.json` (tests/fixtures/, see its README).

The model is the published config with only the sizes shrunk: the 49,408-token vocabulary, the 77 text positions and
the legacy `eos_token_id` 2 stay. With that value CLIP pools each text at its highest token id, which in CLIP's
vocabulary is `<|endoftext|>` (49407, the last id): the tiny tokenizer keeps `<|startoftext|>` 49406 and
`<|endoftext|>` 49407 and pads with `<|endoftext|>`, its special tokens and `model_max_length` (77) read from the
published `special_tokens_map.json` and `tokenizer_config.json` (CLIP's BPE `vocab.json`/`merges.txt` are not kept:
the tiny tokenizer is word-level). The image processor is the published `preprocessor_config.json`, unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parents[1] / "fixtures" / "clip-vit-base-patch32"
PUBLISHED = json.loads((FIXTURE / "config.json").read_text())
PREPROCESSOR = json.loads((FIXTURE / "preprocessor_config.json").read_text())
TOKENIZER_CONFIG = json.loads((FIXTURE / "tokenizer_config.json").read_text())
SPECIAL_TOKENS = json.loads((FIXTURE / "special_tokens_map.json").read_text())
WORDS = ["no", "acute", "cardiopulmonary", "process", "small", "left", "pleural", "effusion"]
SOT, EOT = 49406, 49407


@pytest.fixture(scope="module")
def published_clip():
    """(model, tokenizer): the published config shrunk, and a word-level tokenizer with CLIP's special ids."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(WORDS)}
    vocab.update({f"filler{i}": i for i in range(len(WORDS), SOT)})
    vocab.update({"<|startoftext|>": SOT, "<|endoftext|>": EOT})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", SOT), ("<|endoftext|>", EOT)]
    )
    special = {key: value if isinstance(value, str) else value["content"] for key, value in SPECIAL_TOKENS.items()}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=TOKENIZER_CONFIG["model_max_length"],
                                        **special)  # fmt: skip

    config = CLIPConfig.from_pretrained(FIXTURE)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    for key, value in small.items():
        setattr(config.text_config, key, value)
        setattr(config.vision_config, key, value)
    config.projection_dim = 16
    torch.manual_seed(0)
    return CLIPModel(config).eval(), tokenizer


def test_the_tiny_model_keeps_the_published_text_settings(published_clip):
    model, _ = published_clip
    text = model.config.text_config
    assert (text.vocab_size, text.max_position_embeddings, text.eos_token_id) == (49408, 77, 2)
    assert text.vocab_size - 1 == EOT, "eos_token_id 2 pools at the highest id: <|endoftext|> must be the last id"


def test_radtune_truncates_texts_to_the_published_positions(published_clip):
    """radtune's default `max_text_length` is the text tower's 77 positions; a long report is cut to 77 tokens and
    keeps its `<|endoftext|>`, and the model runs on the batch."""
    import torch
    from PIL import Image

    from radtune.contrastive.data import ContrastiveCollator
    from radtune.contrastive.modeling import encode_texts
    from radtune.contrastive.train import ScriptArguments

    model, tokenizer = published_clip
    default = next(f.default for f in dataclasses.fields(ScriptArguments) if f.name == "max_text_length")
    assert default == PUBLISHED["text_config"]["max_position_embeddings"]
    collator = ContrastiveCollator(tokenizer, _image_processor(), max_length=min(default, tokenizer.model_max_length))
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    batch = collator([{"image": image, "text": " ".join(WORDS * 20)}, {"image": image, "text": "small effusion"}])
    ids = batch["input_ids"].tolist()
    assert len(ids[0]) == 77 and ids[0][0] == SOT and ids[0][-1] == EOT
    assert ids[1][:4] == [SOT, WORDS.index("small"), WORDS.index("effusion"), EOT]
    with torch.no_grad():
        assert encode_texts(model, batch["input_ids"], batch["attention_mask"]).shape == (2, 16)


def test_text_features_pool_at_end_of_text(published_clip):
    """radtune's text embedding of a right-padded batch is the projection of each row's `<|endoftext|>` state
    (computed here from the hidden states), not of a padding position."""
    import torch
    from PIL import Image

    from radtune.contrastive.data import ContrastiveCollator
    from radtune.contrastive.modeling import encode_texts

    model, tokenizer = published_clip
    image = Image.new("RGB", (64, 64), (90, 90, 90))
    rows = [{"image": image, "text": "no acute cardiopulmonary process"}, {"image": image, "text": "left effusion"}]
    batch = ContrastiveCollator(tokenizer, _image_processor())(rows)
    assert batch["input_ids"][1].tolist() == [SOT, WORDS.index("left"), WORDS.index("effusion"), EOT, EOT, EOT]
    with torch.no_grad():
        got = encode_texts(model, batch["input_ids"], batch["attention_mask"])
        hidden = model.text_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        at_eot = hidden[torch.arange(2), torch.tensor([5, 3])]  # the first <|endoftext|> of each row
        expected = torch.nn.functional.normalize(model.text_projection(at_eot), dim=-1)
    assert torch.allclose(got, expected, atol=1e-5)


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


def test_the_published_tokenizer_settings():
    """CLIP's published tokenizer lower-cases, stops at 77 tokens and uses `<|endoftext|>` as EOS, pad and unknown."""
    assert TOKENIZER_CONFIG["do_lower_case"] is True and TOKENIZER_CONFIG["model_max_length"] == 77
    contents = {key: value if isinstance(value, str) else value["content"] for key, value in SPECIAL_TOKENS.items()}
    assert contents == {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                        "pad_token": "<|endoftext|>"}  # fmt: skip


def test_training_uses_the_published_image_processing(published_clip, tmp_path):
    """A CLIP folder with the published `preprocessor_config.json`, loaded the way `radtune.contrastive.train` loads
    it: a uniform grey 300 × 400 image becomes a 224 × 224 centre crop of (v / 255 - mean) / std, with the published
    mean and std; texts are cut at the published 77 tokens."""
    import numpy as np
    import torch
    from PIL import Image

    from radtune.contrastive.data import ContrastiveCollator
    from radtune.contrastive.train import ModelArguments, ScriptArguments, load_model

    model, tokenizer = published_clip
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text((FIXTURE / "preprocessor_config.json").read_text())
    _, processor = load_model(ModelArguments(architecture="clip", model_name_or_path=str(tmp_path)))
    default = next(f.default for f in dataclasses.fields(ScriptArguments) if f.name == "max_text_length")
    max_length = min(default, processor.tokenizer.model_max_length)  # as build_trainer computes it
    assert max_length == TOKENIZER_CONFIG["model_max_length"] == 77
    collator = ContrastiveCollator(processor.tokenizer, processor.image_processor, max_length=max_length)
    image = Image.fromarray(np.full((300, 400, 3), 128, dtype=np.uint8))
    pixels = collator([{"image": image, "text": "small effusion"}])["pixel_values"]
    side = PREPROCESSOR["crop_size"]
    assert tuple(pixels.shape) == (1, 3, side, side)
    expected = torch.tensor([(128 / 255 - mean) / std for mean, std in
                             zip(PREPROCESSOR["image_mean"], PREPROCESSOR["image_std"], strict=True)])  # fmt: skip
    per_channel = pixels[0].flatten(1)
    assert torch.allclose(per_channel, expected[:, None].expand_as(per_channel), atol=1e-4)
