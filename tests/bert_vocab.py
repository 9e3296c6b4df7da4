"""Tiny BERT WordPiece vocabularies that keep a published checkpoint's special-token ids (BLIP's text side and
BioBERT both use BERT-base's): `[PAD]` 0, `[unused0-98]` 1-99, `[UNK]` 100, `[CLS]` 101, `[SEP]` 102, `[MASK]` 103,
then the test's words from id 104."""

from __future__ import annotations

from collections.abc import Sequence

SPECIALS = ["[PAD]", *[f"[unused{i}]" for i in range(99)], "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FIRST_WORD_ID = len(SPECIALS)  # 104
PAD, UNK, CLS, SEP = 0, 100, 101, 102


def bert_vocab(words: Sequence[str], size: int | None = None) -> list[str]:
    """The vocabulary: BERT's special tokens, `words`, then fillers up to `size` tokens (so that ids added after it,
    like BLIP's `[DEC]` at 30522, land where the published tokenizer has them)."""
    vocab = [*SPECIALS, *words]
    return vocab + [f"[filler{i}]" for i in range((size or 0) - len(vocab))]


def word_ids(words: Sequence[str], *chosen: str) -> list[int]:
    """The ids of `chosen` in a vocabulary made by `bert_vocab(words)`."""
    return [FIRST_WORD_ID + list(words).index(word) for word in chosen]
