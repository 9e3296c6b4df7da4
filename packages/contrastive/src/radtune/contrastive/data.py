"""Image–text pairs for contrastive training: radiograph-safe augmentation and the batch collator.

Augmentation stays small, as radiographs allow: a rotation of a few degrees, a crop that keeps most of the
image, brightness and contrast jitter. No horizontal flip by default: laterality matters (a flipped film shows
dextrocardia and puts a left effusion on the right, while its report still says "left").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageEnhance

from radtune.common.images import load_image


@dataclass
class RadiographAugment:
    """Random, small geometric and intensity changes of a PIL image.

    Args:
        rotation_degrees (`float`, *optional*, defaults to `5.0`): rotate by a uniform angle in ±this.
        crop_min_area (`float`, *optional*, defaults to `0.9`): crop a random region of at least this fraction of
            the area (aspect ratio kept) and resize it back.
        brightness (`float`, *optional*, defaults to `0.1`): multiply brightness by a factor in 1 ± this.
        contrast (`float`, *optional*, defaults to `0.1`): multiply contrast by a factor in 1 ± this.
        horizontal_flip (`bool`, *optional*, defaults to `False`): flip left-right with probability 0.5.
    """

    rotation_degrees: float = 5.0
    crop_min_area: float = 0.9
    brightness: float = 0.1
    contrast: float = 0.1
    horizontal_flip: bool = False

    def __post_init__(self):
        if not 0 < self.crop_min_area <= 1:
            raise ValueError(f"crop_min_area must be in (0, 1], got {self.crop_min_area}")
        for name in ("rotation_degrees", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> Image.Image:
        rng = rng or random
        width, height = image.size
        if self.crop_min_area < 1:
            side = rng.uniform(self.crop_min_area, 1.0) ** 0.5
            crop_w, crop_h = max(1, round(width * side)), max(1, round(height * side))
            left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
            image = image.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.BILINEAR)
        if self.rotation_degrees:
            image = image.rotate(rng.uniform(-self.rotation_degrees, self.rotation_degrees), Image.BILINEAR)
        if self.brightness:
            image = ImageEnhance.Brightness(image).enhance(rng.uniform(1 - self.brightness, 1 + self.brightness))
        if self.contrast:
            image = ImageEnhance.Contrast(image).enhance(rng.uniform(1 - self.contrast, 1 + self.contrast))
        if self.horizontal_flip and rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        return image


def drop_empty_texts(dataset, text_column: str):
    """`dataset` without the rows whose `text_column` is empty or blank (what training and retrieval skip)."""
    return dataset.filter(lambda text: bool(text and str(text).strip()), input_columns=[text_column])


ROW_COLUMN = "__row__"


class PairTransform:
    """A `Dataset.with_transform` function giving `{"image": [PIL RGB], "text": [str]}` batches.

    With `augment`, each row's augmentation draws from its own generator, seeded by `(seed, epoch, row)`: the row
    index comes from the `ROW_COLUMN` column (`with_row_index` adds it) and `epoch` is set by the training loop
    (`AugmentEpochCallback`). The augmentations of a run then depend on nothing but its seed, so a run resumed from
    a checkpoint sees the images the uninterrupted run saw, whichever batches were prepared before the checkpoint.

    Args:
        image_column (`str`), text_column (`str`): the columns read.
        augment (`RadiographAugment`, *optional*): the training images' augmentation; `None` for evaluation.
        seed (`int`, *optional*, defaults to `0`): the run's seed.
    """

    def __init__(self, image_column: str, text_column: str, augment: RadiographAugment | None = None, seed: int = 0):
        self.image_column, self.text_column, self.augment, self.seed = image_column, text_column, augment, seed
        self.epoch = 0

    def __call__(self, batch: dict) -> dict:
        images = [load_image(image, mode="RGB") for image in batch[self.image_column]]
        if self.augment is not None:
            if ROW_COLUMN not in batch:
                raise ValueError(f"augmentation needs the row index column {ROW_COLUMN!r}: see with_row_index")
            images = [self.augment(image, random.Random(f"{self.seed}-{self.epoch}-{row}"))
                      for image, row in zip(images, batch[ROW_COLUMN], strict=True)]  # fmt: skip
        return {"image": images, "text": [str(text) for text in batch[self.text_column]]}


def with_row_index(dataset):
    """`dataset` with its row numbers in a `ROW_COLUMN` column (the key of each row's augmentation)."""
    if ROW_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(ROW_COLUMN)
    return dataset.add_column(ROW_COLUMN, list(range(len(dataset))))


def pair_transform(image_column: str, text_column: str, augment: RadiographAugment | None = None, seed: int = 0):
    """A `PairTransform` (see there); with `augment`, the dataset needs `with_row_index`."""
    return PairTransform(image_column, text_column, augment=augment, seed=seed)


@dataclass
class ContrastiveCollator:
    """Turns rows of `{"image", "text"}` into `pixel_values`, `input_ids`, `attention_mask`."""

    tokenizer: object
    image_processor: object
    max_length: int = 77

    def __call__(self, rows: list[dict]) -> dict:
        pixel_values = self.image_processor(images=[row["image"] for row in rows], return_tensors="pt")["pixel_values"]
        text = self.tokenizer(
            [row["text"] for row in rows], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"pixel_values": pixel_values, "input_ids": text["input_ids"], "attention_mask": text["attention_mask"]}
