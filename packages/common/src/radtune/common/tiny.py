"""Tiny, randomly initialised models with real processors, for smoke tests that cost seconds, not GPU hours.

Every kind is the architecture radtune trains at full size, shrunk through its config (2 layers, hidden size 32,
32-px images, 8-px patches) the way transformers' own model tests do, with a tokenizer trained on the given
texts (or on a built-in radiology corpus). `build_tiny(kind, out_dir)` saves with `save_pretrained`, so the
folder loads back with the usual `from_pretrained` / `AutoProcessor.from_pretrained` calls.

Each task package builds its own kinds and declares them in the `radtune.tiny` entry-point group, as it declares
its command group in `radtune.commands`:

    [project.entry-points."radtune.tiny"]
    llava = "radtune.llava_vqa.tiny:build_llava"

A builder is `build(texts, out_dir, size, *, option=None, ...)`: it writes a model of size `size` (a `TinySize`)
with a tokenizer trained on `texts` into `out_dir`, and takes its own options as keyword-only arguments (`llava`'s
`vision_tower`); `build_tiny` has seeded torch, dropped empty texts and made the folder. This module keeps what
the builders share (sizes, the corpus, `train_tokenizer`) and never imports a task package. Nothing heavy is
imported at module level: the CLI imports this module for `--help`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "radtune.tiny"
# The kinds radtune's own task packages declare, and the distribution that brings each: only to name what to
# install when one is asked for and missing. The kinds that exist are the installed entry points.
SHIPPED_KINDS = {
    "llava": "radtune-llava-vqa",
    "vit-gpt2": "radtune-captioning",
    "blip-caption": "radtune-captioning",
    "blip-vqa": "radtune-captioning",
    "clip": "radtune-contrastive",
    "dual-encoder": "radtune-contrastive",
    "llava-next": "radtune-llava-vqa",
    "gemma3": "radtune-llava-vqa",
    "idefics3": "radtune-llava-vqa",
}

IMAGE_SIZE = 32
PATCH_SIZE = 8
HIDDEN_SIZE = 32
NUM_LAYERS = 2
NUM_HEADS = 4
MAX_POSITIONS = 512
VOCAB_SIZE = 2000


@dataclass(frozen=True)
class TinySize:
    """How tiny: image side and hidden size (defaults: 32 px, 32), with 8-px patches, 2 layers and 4 heads."""

    image_size: int = IMAGE_SIZE
    hidden_size: int = HIDDEN_SIZE

    def __post_init__(self):
        if self.image_size < PATCH_SIZE or self.image_size % PATCH_SIZE:
            raise ValueError(f"image_size must be a positive multiple of {PATCH_SIZE}, got {self.image_size}")
        if self.hidden_size < NUM_HEADS or self.hidden_size % NUM_HEADS:
            raise ValueError(f"hidden_size must be a positive multiple of {NUM_HEADS}, got {self.hidden_size}")

    @property
    def intermediate_size(self) -> int:
        return 2 * self.hidden_size

    def vision_kwargs(self) -> dict:
        """The keyword arguments of a ViT-style vision config (CLIP, BLIP, ViT) of this size."""
        return dict(
            hidden_size=self.hidden_size, intermediate_size=self.intermediate_size, num_hidden_layers=NUM_LAYERS,
            num_attention_heads=NUM_HEADS, image_size=self.image_size, patch_size=PATCH_SIZE,
        )  # fmt: skip


def clip_image_processor(size: TinySize):
    """CLIP's image processor (resize the shortest edge, centre-crop) for `size.image_size` images."""
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size}, crop_size={"height": size.image_size, "width": size.image_size}
    )


def builtin_corpus() -> list[str]:
    """The radiology sentences shipped with radtune, used when no texts are given."""
    text = resources.files("radtune.common").joinpath("data/radiology_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def train_tokenizer(
    texts: Iterable[str],
    style: str,
    vocab_size: int = VOCAB_SIZE,
    model_max_length: int = MAX_POSITIONS,
):
    """Train a small tokenizer on `texts` in the style of a real model's tokenizer.

    Args:
        texts (`Iterable[str]`): training texts.
        style (`str`): `"llama"` (byte-level BPE, `<s>` prepended, `<image>` token), `"gpt2"` (byte-level BPE,
            `<|endoftext|>` as BOS/EOS, separate `<pad>`), `"clip"` (byte-level BPE wrapped in
            `<|startoftext|>`…`<|endoftext|>`), or `"bert"` (lower-cased WordPiece, `[CLS] … [SEP]`, plus
            BLIP's `[DEC]` decoder-start token).
        vocab_size (`int`, *optional*, defaults to `2000`): upper bound on the vocabulary.
        model_max_length (`int`, *optional*, defaults to `512`): longest sequence the model accepts.

    Returns:
        `PreTrainedTokenizerFast`
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if style == "bert":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    else:
        specials = {
            "llama": ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
            "gpt2": ["<|endoftext|>", "<pad>"],
            "clip": ["<|startoftext|>", "<|endoftext|>"],
        }[style]
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
    tokenizer.train_from_iterator(texts, trainer=trainer)

    def token_id(token: str) -> int:
        return tokenizer.token_to_id(token)

    if style == "bert":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[("[CLS]", token_id("[CLS]")), ("[SEP]", token_id("[SEP]"))],
        )  # fmt: skip
        names = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]", "bos_token": "[DEC]"}  # fmt: skip
    elif style == "llama":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", token_id("<s>"))]
        )
        names = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    elif style == "clip":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<|startoftext|> $A <|endoftext|>",
            special_tokens=[("<|startoftext|>", token_id("<|startoftext|>")), ("<|endoftext|>", token_id("<|endoftext|>"))],
        )  # fmt: skip
        names = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                 "unk_token": "<|endoftext|>"}  # fmt: skip
    else:  # gpt2
        names = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                 "pad_token": "<pad>"}  # fmt: skip
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=model_max_length, **names)
    if style == "llama":
        wrapped.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return wrapped


def _entry_points() -> dict[str, EntryPoint]:
    found = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point)
    # radtune's own kinds first, in their usual order, then any other package's, by name.
    order = {kind: index for index, kind in enumerate(SHIPPED_KINDS)}
    return dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def tiny_kinds() -> dict[str, str]:
    """The installed tiny model kinds, each with the distribution that declares it, e.g.
    `{"llava": "radtune-llava-vqa", "clip": "radtune-contrastive", …}` (the `radtune.tiny` entry points)."""
    return {kind: _distribution(entry_point) for kind, entry_point in _entry_points().items()}


def _distribution(entry_point: EntryPoint) -> str:
    return (entry_point.dist.name if entry_point.dist else "?").lower().replace("_", "-")


def tiny_builder(kind: str) -> Callable[..., None]:
    """The builder of `kind`, loaded from its `radtune.tiny` entry point.

    Raises:
        `ValueError`: `kind` is not installed (the message names the distribution that brings it, or the kinds
            that are installed) or its package fails to import.
    """
    installed = _entry_points()
    if kind in installed:
        try:
            return installed[kind].load()
        except ImportError as error:  # the package is there but broken: say which, not a traceback
            distribution = _distribution(installed[kind])
            raise ValueError(f"tiny model kind {kind!r} from {distribution} could not be loaded "
                             f"({installed[kind].value}): {error}") from error  # fmt: skip
    if kind in SHIPPED_KINDS:
        distribution = SHIPPED_KINDS[kind]
        raise ValueError(f"tiny model kind {kind!r} comes with {distribution}, which is not installed; "
                         f"install {distribution} to build it")  # fmt: skip
    raise ValueError(f"unknown tiny model kind {kind!r}; choose one of: {', '.join(installed) or '(none installed)'}")


def build_tiny(
    kind: str,
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    hidden_size: int = HIDDEN_SIZE,
    **options,
) -> Path:
    """Build and save a tiny model of `kind` with its processor.

    Args:
        kind (`str`): one of `tiny_kinds()`.
        out_dir (`str` or `Path`): folder to write (created; existing files are overwritten).
        texts (`Iterable[str]`, *optional*): texts to train the tokenizer on; defaults to `builtin_corpus()`.
        seed (`int`, *optional*, defaults to `0`): seed for the random weights.
        image_size (`int`, *optional*, defaults to `32`): input image side (a multiple of the 8-px patch).
        hidden_size (`int`, *optional*, defaults to `32`): hidden size of every tower (a multiple of 4).
        options: the keyword-only options of the kind's builder (`None` means not given), e.g. `llava`'s
            `vision_tower` (start the vision tower from a CLIP checkpoint, as LLaVA starts from a pretrained CLIP).

    Returns:
        `Path`: `out_dir`.
    """
    builder = tiny_builder(kind)
    options = {name: value for name, value in options.items() if value is not None}
    takes = [name for name, parameter in inspect.signature(builder).parameters.items()
             if parameter.kind is inspect.Parameter.KEYWORD_ONLY]  # fmt: skip
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(f"tiny {kind!r} takes no option {unknown[0]!r} (its options: {', '.join(takes) or 'none'})")
    size = TinySize(image_size=image_size, hidden_size=hidden_size)
    texts = [text for text in (texts if texts is not None else builtin_corpus()) if text.strip()]
    if not texts:
        raise ValueError("no non-empty texts to train the tokenizer on")
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    builder(texts, out_dir, size, **options)
    return out_dir
