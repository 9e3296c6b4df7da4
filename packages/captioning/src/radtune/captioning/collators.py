"""Batch collators of the captioning and BLIP VQA trainers, and the image reading they share with inference.

`CaptioningCollator` turns dataset rows (an image and one or more text fields) into a batch for an
image-to-text model: the images go through the model's image processor, the texts are tokenised and padded to
the longest text *of the batch* (not to a fixed `max_length`), and the labels are the padded ids with every
padding position set to -100, so the loss never trains the model to emit padding. Masking follows the attention
mask, not the pad id, so a tokenizer whose pad token is its EOS token (GPT-2) still learns to stop.
`BlipVQACollator` does the same for question/answer rows of `BlipForQuestionAnswering`.

Nothing heavy is imported at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100


def row_text(row: dict, columns: str | Sequence[str]) -> str:
    """The text of `row` in `columns`: one column, or several joined by a space (empty or missing ones skipped).

    Args:
        row (`dict`): a dataset row.
        columns (`str` or `Sequence[str]`): a column name, or column names to join in order
            (e.g. `("findings", "impression")` for a whole report).
    """
    names = [columns] if isinstance(columns, str) else list(columns)
    parts = [str(row[name]).strip() for name in names if row.get(name) is not None]
    return " ".join(part for part in parts if part)


def row_image(row: dict, column: str = "image"):
    """The image value of `row`: the `column` column, else the first of an `images` list column.

    The value is what the dataset holds (a PIL image, or datasets' undecoded `{"bytes", "path"}` when the column
    was cast with `Image(decode=False)`, see `undecoded_images`); `image_pixel_values` opens any of them.
    """
    if column in row and row[column] is not None:
        return row[column]
    if row.get("images"):
        return row["images"][0]
    raise KeyError(f"row has no image: no {column!r} column and no non-empty 'images' column")


def undecoded_images(dataset, column: str = "image"):
    """`dataset` with its `column` Image column left undecoded, so `image_pixel_values` can decode JPEGs at reduced
    scale (`draft`) instead of datasets decoding every image at full size. Other datasets come back unchanged."""
    from datasets import Image

    if isinstance(dataset.features.get(column), Image) and dataset.features[column].decode:
        return dataset.cast_column(column, Image(decode=False))
    return dataset


def _target_side(image_processor) -> int | None:
    # `size` is a dict or a transformers `SizeDict`; both answer `.get`
    size = image_processor.size or {}
    sides = [size.get(key) for key in ("height", "width", "shortest_edge")]
    sides = [side for side in sides if side]
    return max(sides) if sides else None


def open_image(value, side: int | None = None):
    """A PIL image from a PIL image, an undecoded datasets value `{"bytes", "path"}`, bytes, a path or a URL.

    With `side`, a JPEG is decoded by libjpeg at the smallest DCT scale (1/2, 1/4, 1/8) that keeps it at least
    `2 * side` pixels (`Image.draft`): a 2,500-px MIMIC-CXR JPEG meant for a 384-px model decodes several times
    faster. Everything else goes through `radtune.common.images.load_image` (DICOM, 16-bit PNG, …).
    """
    import io
    from pathlib import Path

    from PIL import Image

    from radtune.common.images import ImageLoadError, load_image

    if isinstance(value, Image.Image):
        return load_image(value, mode=None)  # 16-bit and float images become 8-bit grey
    if isinstance(value, dict):  # datasets' undecoded Image value
        value = value.get("bytes") or value["path"]
    if isinstance(value, str | Path) and Path(value).is_file():
        value = Path(value).read_bytes()
    if side and isinstance(value, bytes) and value[:3] == b"\xff\xd8\xff":
        try:
            image = Image.open(io.BytesIO(value))
            image.draft(image.mode, (2 * side, 2 * side))
            image.load()
        except (OSError, ValueError) as error:
            raise ImageLoadError(f"could not decode JPEG image: {error}") from error
        return load_image(image, mode=None)
    return load_image(value, mode=None)


def image_pixel_values(images: Sequence, image_processor):
    """`pixel_values` for a batch of images, the same way in training and in inference.

    Args:
        images (`Sequence`): anything `open_image` opens (PIL images, undecoded dataset values, bytes, paths, URLs).
        image_processor: the model's image processor.

    An image more than twice the processor's target size is first shrunk cheaply: a JPEG at decode time
    (`open_image`), anything else with PIL's box-filter `reduce` in its own mode (a radiograph is grey: one
    channel, not three), to no less than twice the target; the processor then resizes as usual. The result
    differs from resizing the full image by less than JPEG noise, at a fraction of the cost.
    """
    from radtune.common.images import load_image

    side = _target_side(image_processor)
    prepared = []
    for value in images:
        image = open_image(value, side)
        factor = min(image.size) // (2 * side) if side else 0
        if factor >= 2 and image.mode in ("L", "RGB"):
            image = image.reduce(factor)
        prepared.append(load_image(image, mode="RGB"))
    return image_processor(images=prepared, return_tensors="pt")["pixel_values"]


def pad_labels(input_ids, attention_mask):
    """Labels from padded ids: a copy of `input_ids` with every position the attention mask drops set to -100."""
    return input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)


@dataclass
class CaptioningCollator:
    """Collate rows of an image and a caption for `VisionEncoderDecoderModel` or `BlipForConditionalGeneration`.

    Args:
        image_processor: the model's image processor.
        tokenizer: the model's tokenizer (its pad token must be set).
        text_column (`str` or `Sequence[str]`, *optional*, defaults to `"text"`): the caption column, or several
            columns joined by a space (see `row_text`).
        image_column (`str`, *optional*, defaults to `"image"`): the image column (an `images` list column is the
            fallback).
        max_length (`int`, *optional*, defaults to `128`): captions longer than this (in tokens) are truncated.
        append_eos (`bool`, *optional*, defaults to `False`): add the tokenizer's EOS token to every caption, for
            tokenizers that add none themselves (GPT-2): without it the model never learns to stop.
        text_inputs (`bool`, *optional*, defaults to `False`): also return `input_ids` and `attention_mask`
            (BLIP's decoder reads the caption as input and shifts the labels itself); otherwise only
            `pixel_values` and `labels` (a `VisionEncoderDecoderModel` builds its decoder inputs from the labels).
        decoder_start_token_id (`int`, *optional*): written over the first token of `input_ids` and `labels`
            (BLIP generates from `[DEC]`, while its BERT tokenizer starts every text with `[CLS]`).

    Returns (from `__call__`):
        `dict[str, torch.Tensor]`: `pixel_values`, `labels`, and with `text_inputs` `input_ids` and `attention_mask`.
    """

    image_processor: Any
    tokenizer: Any
    text_column: str | Sequence[str] = "text"
    image_column: str = "image"
    max_length: int | None = 128
    append_eos: bool = False
    text_inputs: bool = False
    decoder_start_token_id: int | None = None

    def __post_init__(self):
        if self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set `tokenizer.pad_token` before collating")
        if self.append_eos and self.tokenizer.eos_token is None:
            raise ValueError("append_eos=True but the tokenizer has no EOS token")

    def texts(self, rows: Sequence[dict]) -> list[str]:
        texts = [row_text(row, self.text_column) for row in rows]
        if self.append_eos:
            texts = [text + self.tokenizer.eos_token for text in texts]
        return texts

    def __call__(self, rows: Sequence[dict]) -> dict:
        pixel_values = image_pixel_values([row_image(row, self.image_column) for row in rows], self.image_processor)
        encoded = self.tokenizer(
            self.texts(rows),
            padding="longest",
            padding_side="right",
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
        if self.append_eos and self.max_length is not None:
            # Truncation may have cut the EOS off a long caption: put it back as the last real token.
            lengths = attention_mask.sum(dim=1)
            input_ids[lengths == self.max_length, -1] = self.tokenizer.eos_token_id
        if self.decoder_start_token_id is not None:
            input_ids[:, 0] = self.decoder_start_token_id
        batch = {"pixel_values": pixel_values, "labels": pad_labels(input_ids, attention_mask)}
        if self.text_inputs:
            batch["input_ids"] = input_ids
            batch["attention_mask"] = attention_mask
        return batch


@dataclass
class BlipVQACollator:
    """Collate rows of image, question and answer for `BlipForQuestionAnswering`.

    Returns `pixel_values`, the question as `input_ids`/`attention_mask`, the answer as `decoder_input_ids`/
    `decoder_attention_mask` (first token replaced by the decoder start token), and `labels`: the answer ids with
    padding set to -100 (BLIP would otherwise use the labels as decoder inputs, and -100 is no token id).
    """

    image_processor: Any
    tokenizer: Any
    decoder_start_token_id: int
    image_column: str = "image"
    max_question_length: int = 64
    max_answer_length: int = 32

    def _encode(self, texts: list[str], max_length: int):
        return self.tokenizer(texts, padding="longest", padding_side="right", truncation=True, max_length=max_length,
                              return_tensors="pt")  # fmt: skip

    def __call__(self, rows: Sequence[dict]) -> dict:
        pixel_values = image_pixel_values([row_image(row, self.image_column) for row in rows], self.image_processor)
        questions = self._encode([str(row["question"]) for row in rows], self.max_question_length)
        answers = self._encode([str(row["answer"]) for row in rows], self.max_answer_length)
        answer_ids = answers["input_ids"]
        answer_ids[:, 0] = self.decoder_start_token_id
        return {
            "pixel_values": pixel_values,
            "input_ids": questions["input_ids"],
            "attention_mask": questions["attention_mask"],
            "decoder_input_ids": answer_ids,
            "decoder_attention_mask": answers["attention_mask"],
            "labels": pad_labels(answer_ids, answers["attention_mask"]),
        }
