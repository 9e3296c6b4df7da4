"""Tiny, randomly initialised models with real processors, for smoke tests that cost seconds, not GPU hours.

Every KIND is the architecture radtune trains at full size, shrunk through its config (2 layers, hidden size 32,
32-px images, 8-px patches) the way transformers' own model tests do, with a tokenizer trained on the given
texts (or on a built-in radiology corpus). `build_tiny(kind, out_dir)` saves with `save_pretrained`, so the
folder loads back with the usual `from_pretrained` / `AutoProcessor.from_pretrained` calls.

Nothing heavy is imported at module level: the CLI imports this module for `--help`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from radtune.common.chat_templates import LLAVA_CHAT_TEMPLATE

KINDS = ("llava", "vit-gpt2", "blip-caption", "blip-vqa", "clip", "dual-encoder")

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


def _vision_kwargs(size: TinySize) -> dict:
    return dict(
        hidden_size=size.hidden_size, intermediate_size=size.intermediate_size, num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS, image_size=size.image_size, patch_size=PATCH_SIZE,
    )  # fmt: skip


def _clip_image_processor(size: TinySize):
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": size.image_size}, crop_size={"height": size.image_size, "width": size.image_size}
    )


def _load_vision_tower(path: str | Path, expected):
    """The vision tower (`CLIPVisionModel`) of a CLIP checkpoint at `path` (a whole CLIP model, e.g. one trained
    by `radtune clip train`, or a vision model alone) and its image processor, checked against the `expected`
    `CLIPVisionConfig`: the weights are copied as they are, so every shape must agree."""
    from transformers import AutoConfig, AutoImageProcessor, CLIPModel, CLIPVisionModel

    config = AutoConfig.from_pretrained(path)
    if config.model_type == "clip":
        tower = CLIPModel.from_pretrained(path).vision_model
        vision_config = config.vision_config
    elif config.model_type == "clip_vision_model":
        tower = CLIPVisionModel.from_pretrained(path)
        vision_config = config
    else:
        raise ValueError(f"--vision-tower {path} is a {config.model_type!r} model; expected a CLIP model")
    fields = ("image_size", "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    different = [f"{name} {getattr(vision_config, name)} (tiny LLaVA: {getattr(expected, name)})"
                 for name in fields if getattr(vision_config, name) != getattr(expected, name)]  # fmt: skip
    if different:
        raise ValueError(f"the vision tower at {path} does not fit the tiny LLaVA: {'; '.join(different)}; "
                         "build both with the same --image-size and --hidden-size")  # fmt: skip
    try:
        image_processor = AutoImageProcessor.from_pretrained(path)
    except OSError:
        image_processor = None
    return tower, image_processor


def _build_llava(texts: list[str], out_dir: Path, size: TinySize, vision_tower: str | Path | None = None) -> None:
    from transformers import (
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = train_tokenizer(texts, "llama")
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=2 * size.intermediate_size, num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS, **ids,
    )  # fmt: skip
    # CLIP's vision tower adds one CLS token; the "default" strategy drops it, leaving (32/8)^2 = 16 image tokens.
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_kwargs(size), projection_dim=size.hidden_size),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(size.image_size // PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config = GenerationConfig(**ids, max_new_tokens=32)
    image_processor = _clip_image_processor(size)
    if vision_tower is not None:
        # As LLaVA-1.5 starts from a pretrained CLIP ViT: the tower (and the image processor it was trained with).
        tower, tower_processor = _load_vision_tower(vision_tower, config.vision_config)
        model.model.vision_tower.load_state_dict(tower.state_dict())
        image_processor = tower_processor or image_processor
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
        image_token="<image>",
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def _build_vit_gpt2(texts: list[str], out_dir: Path, size: TinySize) -> None:
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessorPil,
    )

    tokenizer = train_tokenizer(texts, "gpt2")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    encoder = ViTConfig(**_vision_kwargs(size))
    decoder = GPT2Config(
        vocab_size=len(tokenizer), n_embd=size.hidden_size, n_layer=NUM_LAYERS, n_head=NUM_HEADS,
        n_positions=MAX_POSITIONS, add_cross_attention=True, is_decoder=True, **ids,
    )  # fmt: skip
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tokenizer.bos_token_id, max_new_tokens=32, **ids
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    ViTImageProcessorPil(size={"height": size.image_size, "width": size.image_size}).save_pretrained(out_dir)
    # The checkpoint's tokenizer_config names the class; make sure AutoTokenizer reads it back.
    AutoTokenizer.from_pretrained(out_dir)


def _blip_config(tokenizer, size: TinySize):
    from transformers import BlipConfig, BlipTextConfig, BlipVisionConfig

    text_config = BlipTextConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, encoder_hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
        projection_dim=size.hidden_size, num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, sep_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    vision_config = BlipVisionConfig(**_vision_kwargs(size), projection_dim=size.hidden_size)
    return BlipConfig(text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=size.hidden_size)


def _build_blip(texts: list[str], out_dir: Path, vqa: bool, size: TinySize) -> None:
    from transformers import (
        BlipForConditionalGeneration,
        BlipForQuestionAnswering,
        BlipImageProcessorPil,
        BlipProcessor,
        GenerationConfig,
    )

    tokenizer = train_tokenizer(texts, "bert")
    config = _blip_config(tokenizer, size)
    model = (BlipForQuestionAnswering if vqa else BlipForConditionalGeneration)(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id, decoder_start_token_id=tokenizer.bos_token_id, max_new_tokens=32,
    )  # fmt: skip
    image_processor = BlipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    model.save_pretrained(out_dir)
    BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)


def _build_clip(texts: list[str], out_dir: Path, size: TinySize) -> None:
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

    tokenizer = train_tokenizer(texts, "clip", model_max_length=77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=size.intermediate_size, num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS, max_position_embeddings=77, projection_dim=size.hidden_size,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision_config = CLIPVisionConfig(**_vision_kwargs(size), projection_dim=size.hidden_size)
    config = CLIPConfig(
        text_config=text_config.to_dict(), vision_config=vision_config.to_dict(), projection_dim=size.hidden_size
    )
    CLIPModel(config).save_pretrained(out_dir)
    CLIPProcessor(image_processor=_clip_image_processor(size), tokenizer=tokenizer).save_pretrained(out_dir)


def _build_dual_encoder(texts: list[str], out_dir: Path, size: TinySize) -> None:
    from transformers import BertConfig, BertModel, ConvNextImageProcessorPil, ResNetConfig, ResNetModel

    tokenizer = train_tokenizer(texts, "bert")
    text_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden_size, intermediate_size=size.intermediate_size, num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS, max_position_embeddings=MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    BertModel(text_config).save_pretrained(out_dir / "text")
    tokenizer.save_pretrained(out_dir / "text")
    image_config = ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic"
    )
    ResNetModel(image_config).save_pretrained(out_dir / "image")
    ConvNextImageProcessorPil(size={"shortest_edge": size.image_size}, crop_pct=1.0).save_pretrained(out_dir / "image")


def build_tiny(
    kind: str,
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    hidden_size: int = HIDDEN_SIZE,
    vision_tower: str | Path | None = None,
) -> Path:
    """Build and save a tiny model of `kind` with its processor.

    Args:
        kind (`str`): one of `KINDS`.
        out_dir (`str` or `Path`): folder to write (created; existing files are overwritten).
        texts (`Iterable[str]`, *optional*): texts to train the tokenizer on; defaults to `builtin_corpus()`.
        seed (`int`, *optional*, defaults to `0`): seed for the random weights.
        image_size (`int`, *optional*, defaults to `32`): input image side (a multiple of the 8-px patch).
        hidden_size (`int`, *optional*, defaults to `32`): hidden size of every tower (a multiple of 4).
        vision_tower (`str` or `Path`, *optional*): `llava` only: start the vision tower from this CLIP checkpoint
            (a folder written by `radtune clip train`, or a CLIP vision model) instead of random weights, as
            LLaVA starts from a pretrained CLIP; it must have the same image size, patch and hidden sizes.

    Returns:
        `Path`: `out_dir`. For `dual-encoder` it holds `text/` (BERT + tokenizer) and `image/` (ResNet + image
        processor), each loadable with `AutoModel.from_pretrained`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if vision_tower is not None and kind != "llava":
        raise ValueError(f"vision_tower applies to llava only, not {kind!r}")
    import torch

    size = TinySize(image_size=image_size, hidden_size=hidden_size)
    texts = [text for text in (texts if texts is not None else builtin_corpus()) if text.strip()]
    if not texts:
        raise ValueError("no non-empty texts to train the tokenizer on")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if kind == "llava":
        _build_llava(texts, out_dir, size, vision_tower)
    elif kind == "vit-gpt2":
        _build_vit_gpt2(texts, out_dir, size)
    elif kind in ("blip-caption", "blip-vqa"):
        _build_blip(texts, out_dir, vqa=kind == "blip-vqa", size=size)
    elif kind == "clip":
        _build_clip(texts, out_dir, size)
    else:
        _build_dual_encoder(texts, out_dir, size)
    return out_dir
