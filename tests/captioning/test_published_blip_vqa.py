"""BLIP VQA against the published files of Salesforce/blip-vqa-base and the BLIP text ids (tests/fixtures/, see its
README).

blip-vqa-base's `special_tokens_map.json` is BERT's (`[CLS]` 101, `[SEP]` 102, `[PAD]` 0, `[UNK]` 100, `[MASK]` 103):
no BOS, no EOS token. Its `config.json` was not found; the model here is built from blip-image-captioning-base's
published `config.json` (the same BLIP text decoder ids: BOS `[DEC]` 30522 as decoder start, `sep_token_id` 102,
`pad_token_id` 0, vocabulary 30,524) as `BlipForQuestionAnswering`, with only the sizes shrunk. The tokenizer is a tiny
BERT `vocab.txt` with those ids and the published special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bert_vocab import CLS, FIRST_WORD_ID, PAD, SEP, bert_vocab
from bert_vocab import word_ids as _word_ids

FIXTURES = Path(__file__).parents[1] / "fixtures"
SPECIAL_TOKENS = json.loads((FIXTURES / "blip-vqa-base" / "special_tokens_map.json").read_text())
TEXT_CONFIG = json.loads((FIXTURES / "blip-image-captioning-base" / "config.json").read_text())["text_config"]
WORDS = ["is", "there", "a", "pleural", "effusion", "?", "yes", "no", "right", "lower", "lobe"]
DEC = 30522


def word_ids(*words: str) -> list[int]:
    return _word_ids(WORDS, *words)


@pytest.fixture(scope="module")
def published_blip_vqa(tmp_path_factory) -> Path:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor

    folder = tmp_path_factory.mktemp("published-blip-vqa")
    vocab = bert_vocab(WORDS, size=TEXT_CONFIG["bos_token_id"])
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(vocab)}, do_lower_case=True,
                              **SPECIAL_TOKENS)  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": ["[DEC]", "[ENC]"]})  # ids 30522, 30523
    tokenizer.save_pretrained(folder)

    config = BlipConfig.from_pretrained(FIXTURES / "blip-image-captioning-base")
    config.architectures = ["BlipForQuestionAnswering"]
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    for key, value in small.items():
        setattr(config.text_config, key, value)
        setattr(config.vision_config, key, value)
    config.text_config.encoder_hidden_size = 32
    config.vision_config.image_size = 32
    torch.manual_seed(0)
    BlipForQuestionAnswering(config).save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_the_tiny_tokenizer_keeps_the_published_ids(published_blip_vqa):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(published_blip_vqa)
    assert {key: getattr(tokenizer, key) for key in SPECIAL_TOKENS} == SPECIAL_TOKENS
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[PAD]", "[DEC]"]) == [CLS, SEP, PAD, DEC]
    assert (TEXT_CONFIG["bos_token_id"], TEXT_CONFIG["sep_token_id"], TEXT_CONFIG["pad_token_id"]) == (DEC, SEP, PAD)


def test_answer_labels_are_dec_answer_and_sep(published_blip_vqa):
    """radtune's VQA batches: the answer's `[CLS]` becomes `[DEC]` (the decoder start, which BLIP's shifted loss never
    predicts), then the answer, then `[SEP]` (where generation stops), then -100. Changing the `[DEC]` label leaves the
    loss alone; changing `[SEP]`'s does not."""
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, BlipForQuestionAnswering

    from radtune.captioning.collators import BlipVQACollator

    model = BlipForQuestionAnswering.from_pretrained(published_blip_vqa).eval()
    # As radtune.captioning.train_vqa.build_trainer builds it.
    collator = BlipVQACollator(image_processor=AutoImageProcessor.from_pretrained(published_blip_vqa),
                               tokenizer=AutoTokenizer.from_pretrained(published_blip_vqa),
                               decoder_start_token_id=model.config.text_config.bos_token_id)  # fmt: skip
    image = Image.new("RGB", (48, 48), (90, 90, 90))
    batch = collator([{"image": image, "question": "Is there a pleural effusion?", "answer": "right lower lobe"},
                      {"image": image, "question": "Is there a pleural effusion?", "answer": "yes"}])  # fmt: skip
    long, short = word_ids("right", "lower", "lobe"), word_ids("yes")
    assert batch["labels"].tolist() == [[DEC, *long, SEP], [DEC, *short, SEP, -100, -100]]
    assert batch["decoder_input_ids"].tolist() == [[DEC, *long, SEP], [DEC, *short, SEP, PAD, PAD]]
    assert batch["input_ids"][0].tolist() == [CLS, *word_ids("is", "there", "a", "pleural", "effusion", "?"), SEP]

    with torch.no_grad():
        loss = model(**batch).loss
        first_changed = {**batch, "labels": batch["labels"].clone()}
        first_changed["labels"][:, 0] = FIRST_WORD_ID
        sep_changed = {**batch, "labels": batch["labels"].clone()}
        sep_changed["labels"][1, 2] = FIRST_WORD_ID
        assert model(**first_changed).loss.item() == pytest.approx(loss.item(), abs=1e-6)
        assert model(**sep_changed).loss.item() != pytest.approx(loss.item(), abs=1e-4)


def test_generation_starts_from_dec_and_stops_at_sep(published_blip_vqa):
    """With `[SEP]` made the likeliest next token, radtune's VQA model generates `[DEC] [SEP]` and stops: an empty
    answer, not `max_new_tokens` tokens."""
    import torch
    from PIL import Image

    from radtune.captioning.modeling import load_captioner

    captioner = load_captioner(published_blip_vqa, device="cpu")
    assert captioner.vqa
    with torch.no_grad():
        captioner.model.text_decoder.cls.predictions.decoder.bias[SEP] = 1e4
    image = Image.new("RGB", (48, 48), (90, 90, 90))
    pixel_values = captioner.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    question = captioner.tokenizer(["is there a pleural effusion?"], return_tensors="pt")
    with torch.no_grad():
        generated = captioner.model.generate(pixel_values=pixel_values, input_ids=question["input_ids"],
                                             attention_mask=question["attention_mask"], max_new_tokens=8)  # fmt: skip
    assert generated.tolist() == [[DEC, SEP]]
    assert captioner.generate([image], questions=["is there a pleural effusion?"], max_new_tokens=8) == [""]
