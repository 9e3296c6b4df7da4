"""The dual encoder's text tower against dmis-lab/biobert-v1.1's published files (tests/fixtures/, see its README).

BioBERT v1.1 publishes `{"do_lower_case": false, "model_max_length": 512}` as its `tokenizer_config.json`: it is
cased (it was trained from cased BERT-base; its `config.json` has the cased 28,996-token vocabulary). The tiny tower
folder holds both published files unchanged and a `vocab.txt` with BERT's special-token ids (`[PAD]` 0, `[UNK]` 100,
`[CLS]` 101, `[SEP]` 102, `[MASK]` 103) and a few words in both cases, so lower-casing shows in the ids.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from bert_vocab import CLS, PAD, SEP, UNK, bert_vocab
from bert_vocab import word_ids as _word_ids

FIXTURE = Path(__file__).parents[1] / "fixtures" / "biobert-v1.1"
TOKENIZER_CONFIG = json.loads((FIXTURE / "tokenizer_config.json").read_text())
CONFIG = json.loads((FIXTURE / "config.json").read_text())
WORDS = ["Pleural", "pleural", "Effusion", "effusion", "Small", "small", "."]


def word_ids(*words: str) -> list[int]:
    return _word_ids(WORDS, *words)


@pytest.fixture(scope="module")
def biobert_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("published-biobert")
    shutil.copy(FIXTURE / "config.json", folder / "config.json")
    shutil.copy(FIXTURE / "tokenizer_config.json", folder / "tokenizer_config.json")
    vocab = bert_vocab(WORDS)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return folder


def test_biobert_is_published_cased():
    assert TOKENIZER_CONFIG == {"do_lower_case": False, "model_max_length": 512}
    assert CONFIG["vocab_size"] == 28996 and CONFIG["pad_token_id"] == PAD


def test_radtune_keeps_biobert_cased_with_cls_and_sep(biobert_folder, tmp_path):
    """The tokenizer radtune's dual encoder loads for the text tower does not lower-case (as published), wraps each
    report in `[CLS]` … `[SEP]`, pads with `[PAD]` 0, and truncates at radtune's 77 tokens (under the published 512)."""
    import dataclasses

    from PIL import Image
    from transformers import ConvNextImageProcessor

    from radtune.contrastive.data import ContrastiveCollator
    from radtune.contrastive.modeling import load_processor
    from radtune.contrastive.train import ScriptArguments

    image_folder = tmp_path / "image"
    ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(image_folder)
    processor = load_processor(biobert_folder, image_folder, "dual-encoder")
    tokenizer = processor.tokenizer
    assert tokenizer.model_max_length == TOKENIZER_CONFIG["model_max_length"]
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[PAD]", "[UNK]"]) == [CLS, SEP, PAD, UNK]

    default = next(f.default for f in dataclasses.fields(ScriptArguments) if f.name == "max_text_length")
    # As radtune.contrastive.train.build_trainer builds it.
    collator = ContrastiveCollator(tokenizer, processor.image_processor,
                                   max_length=min(default, tokenizer.model_max_length))  # fmt: skip
    image = Image.new("RGB", (40, 40), (90, 90, 90))
    batch = collator([{"image": image, "text": "Small pleural Effusion."}, {"image": image, "text": "Pleural effusion"},
                      {"image": image, "text": " ".join(["small"] * 200)}])  # fmt: skip
    ids = batch["input_ids"].tolist()
    assert ids[0][:6] == [CLS, *word_ids("Small", "pleural", "Effusion", "."), SEP]
    assert ids[1][:4] == [CLS, *word_ids("Pleural", "effusion"), SEP] and set(ids[1][4:]) == {PAD}
    mask = batch["attention_mask"][1].tolist()
    assert mask[:4] == [1, 1, 1, 1] and set(mask[4:]) == {0}
    assert len(ids[2]) == default == 77 and ids[2][0] == CLS and ids[2][-1] == SEP
