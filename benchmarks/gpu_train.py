"""Training throughput and memory of radtune's full-size models on one GPU: LLaVA-1.5 and LLaVA-NeXT (LoRA / QLoRA /
full), BLIP and ViT-GPT2 captioning, CLIP.

    python benchmarks/gpu_train.py --arch llava-1.5-7b --mode qlora                 # r=64, batch 4, checkpointing
    python benchmarks/gpu_train.py --arch llava-1.5-7b --mode qlora --no-double-quant --json runs/llava-qlora.json
    python benchmarks/gpu_train.py --arch llava-1.5-7b --mode lora --no-gradient-checkpointing --batch-size 8
    python benchmarks/gpu_train.py --arch llava-1.5-13b --mode qlora --attn eager
    python benchmarks/gpu_train.py --arch llava-next-7b --mode qlora                # llava-v1.6-mistral-7b-hf
    python benchmarks/gpu_train.py --arch blip-base --mode full
    python benchmarks/gpu_train.py --arch vit-gpt2 --mode lora
    python benchmarks/gpu_train.py --arch clip-b32 --batch-size 256
    python benchmarks/gpu_train.py --arch llava-1.5-7b --mode lora --scale tiny      # CPU smoke test, seconds

The model is built from the published configuration written out below (layers, hidden size, heads, vocabulary,
image and patch size) with random weights (bf16 on a GPU, fp32 on the CPU); nothing is downloaded. QLoRA quantises
those weights in memory at load (`from_pretrained(None, state_dict=…, quantization_config=…)`), so no checkpoint is
written. The tokenizer is one radtune trains on its radiology corpus (`radtune.common.tiny.train_tokenizer`); its
vocabulary is small, so a text splits into more tokens than with the real one (LLaVA: ~34 text tokens a row, by a
rough count half again what Llama's tokenizer gives, beside 576 exact image tokens); the embedding tables have the
published size. LLaVA's processor is llava-hf's published one (`tests/fixtures/llava-1.5-7b-hf`: tokenizer config with
`<image>` 32000 and `<pad>` 32001, image processor, chat template repaired as training repairs it) around that
vocabulary (`llava_processor`). LLaVA-NeXT's config is llava-hf/llava-v1.6-mistral-7b-hf's published `config.json`
(`tests/fixtures/llava-next`); its processor has the special tokens and published chat template of `radtune tiny
llava-next` around the published tiling (`image_grid_pinpoints`; `llava_next_processor`): a square 1024-px image
becomes a 2x2 grid of 336-px tiles plus the whole image, 5 tiles through the vision tower and 2928 image tokens
(576 + 48 x 48 + 48 row newlines) in the sequence.

It trains on synthetic rows in the layout radtune's exporters write (JPEG radiograph-like images of
`--source-image-side` pixels; LLaVA: `messages` + `images` with questions and answer lengths drawn from the
statistics of `radtune data qa --generator rules`, see `QA_QUESTIONS`; captions: 5-60 words) through radtune's own
model set-up (LoRA targets, QLoRA config, chat template), collator and trainer (`SFTTrainer`, `GenerationTrainer`,
`ContrastiveTrainer`) with `trainer.train()`, with DataLoader workers (`--workers`, default 4 on a GPU, as the
captioning and CLIP recipes use; LLaVA's recipes leave 0, which `--workers 0` measures), and times every step
(synchronising the GPU at each boundary):

    data       end of the previous step -> start of the forward (DataLoader, collator, copy to the device)
    forward    the trainer's `compute_loss`
    backward   `accelerator.backward` (with the recomputation of gradient checkpointing)
    optimizer  gradient clipping, `optimizer.step`, scheduler, `zero_grad`

tokens/s counts the tokens of the text sequence: for LLaVA the language model's, its 576 image tokens included.
Then it repeats the steps as a *model-only* step: the same trainer's `training_step` + optimizer on batches collated
beforehand and already on the device, and prints the ratio of the two step times (the data path is not the
bottleneck when it is close to 1). Warm-up steps are left out; times are means over the timed steps.

Model FLOPs utilisation = model FLOPs per step / step time / the card's peak dense bf16 FLOP/s (`PEAK_TFLOPS`,
or `--peak-tflops`). Model FLOPs count matrix multiplies by their weights, per group of parameters and the tokens
that group multiplies (LLaVA: vision tower x 577 patch tokens per image, projector x 576, language model x the
sequence, LLaVA-NeXT the same per tile; BLIP / ViT-GPT2: the cross-attention key/value weights x the image tokens):

    FLOPs per token = 2*N (forward) + 2*N (activation gradients) + 2*N_trainable (weight gradients)

with N the group's parameters (embeddings included, 4-bit weights counted unpacked); the activation-gradient term
is left out for a group with nothing trainable in it (a frozen vision tower at the input needs no backward pass).
Attention scores (the T^2 terms), recomputation by gradient checkpointing, QLoRA's dequantisation and any backward
pass through frozen towers are not counted, so MFU is the useful fraction of the card, not its busy fraction.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# --- The published configurations --------------------------------------------------------------------------------
# llava-hf/llava-1.5-7b-hf and -13b-hf: CLIP ViT-L/14-336 + Llama-2 (vocabulary 32000 + <image> + <pad> + padding
# to 32064), two-layer GELU projector, features of the second-to-last vision layer without the CLS token.
CLIP_VIT_L_14_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                         image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu")  # fmt: skip
LLAMA_2_7B = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5,
                  hidden_act="silu")  # fmt: skip
LLAMA_2_13B = {**LLAMA_2_7B, "hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40,
               "num_attention_heads": 40, "num_key_value_heads": 40}  # fmt: skip
LLAVA_1_5 = dict(projector_hidden_act="gelu", vision_feature_layer=-2, vision_feature_select_strategy="default")
# Its tokenizer config, image processor and chat template, as published (see the folder's README).
LLAVA_PUBLISHED = REPO / "tests" / "fixtures" / "llava-1.5-7b-hf"
LLAVA_TOKENIZER_VOCAB = 32000  # the published vocabulary before <image> (32000) and <pad> (32001)
# llava-hf/llava-v1.6-mistral-7b-hf (LLaVA-NeXT): CLIP ViT-L/14-336 on tiles chosen by `image_grid_pinpoints` +
# Mistral-7B-Instruct-v0.2, its `config.json` as published (see the folder's README); the vision config is read here
# for the image side, the whole file by `model_config`.
LLAVA_NEXT_PUBLISHED = REPO / "tests" / "fixtures" / "llava-next"
_LLAVA_NEXT_CONFIG = json.loads((LLAVA_NEXT_PUBLISHED / "config.json").read_text())
LLAVA_NEXT_VISION = {key: _LLAVA_NEXT_CONFIG["vision_config"][key] for key in
                     ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size",
                      "patch_size", "projection_dim")}  # fmt: skip
LLAVA_NEXT_TEXT = _LLAVA_NEXT_CONFIG["text_config"]  # Mistral-7B's defaults for what it leaves out (32 layers, 4096)
# Salesforce/blip-image-captioning-base: ViT-B/16 at 384 px + a BERT-base decoder with cross-attention.
BLIP_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=384, patch_size=16, layer_norm_eps=1e-5)  # fmt: skip
BLIP_TEXT = dict(vocab_size=30524, hidden_size=768, encoder_hidden_size=768, intermediate_size=3072,
                 num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512)  # fmt: skip
# nlpconnect/vit-gpt2-image-captioning: ViT-B/16 at 224 px + GPT-2 (124M) with cross-attention.
VIT_B_16 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=16)  # fmt: skip
GPT2_124M = dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024, add_cross_attention=True)
# openai/clip-vit-base-patch32.
CLIP_B32_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                       image_size=224, patch_size=32, projection_dim=512)  # fmt: skip
CLIP_B32_TEXT = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                     num_attention_heads=8, max_position_embeddings=77, projection_dim=512)  # fmt: skip

ARCHS = {
    "llava-1.5-7b": {"family": "llava", "vision": CLIP_VIT_L_14_336, "text": LLAMA_2_7B, "batch_size": 4},
    "llava-1.5-13b": {"family": "llava", "vision": CLIP_VIT_L_14_336, "text": LLAMA_2_13B, "batch_size": 4},
    "llava-next-7b": {"family": "llava-next", "vision": LLAVA_NEXT_VISION, "text": LLAVA_NEXT_TEXT, "batch_size": 4},
    "blip-base": {"family": "blip", "vision": BLIP_VISION, "text": BLIP_TEXT, "batch_size": 16},
    "vit-gpt2": {"family": "vit-gpt2", "vision": VIT_B_16, "text": GPT2_124M, "batch_size": 16},
    "clip-b32": {"family": "clip", "vision": CLIP_B32_VISION, "text": CLIP_B32_TEXT, "batch_size": 128},
}
# The modes radtune trains each family with (QLoRA exists for LLaVA only; radtune trains CLIP fully).
MODES = {"llava": ("qlora", "lora", "full"), "llava-next": ("qlora", "lora", "full"), "blip": ("lora", "full"),
         "vit-gpt2": ("lora", "full"), "clip": ("full",)}  # fmt: skip

# `--scale tiny` keeps every config's structure and shrinks it (images: four patches a side).
TINY = {"num_hidden_layers": 2, "n_layer": 2, "hidden_size": 32, "n_embd": 32, "encoder_hidden_size": 32,
        "num_attention_heads": 4, "n_head": 4, "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 64,
        "projection_dim": 32}  # fmt: skip
TINY_VOCAB = 2000

# Statistics of `radtune data qa --generator rules` (707 training rows from 300 phantom reports): each question with
# its count, and the answers' length in words with its count (median 1 word: "Yes.", "Left."; the open "main
# findings" answers run to 26 words).
QA_QUESTIONS = (
    ("What are the main findings?", 238), ("Is the heart enlarged?", 62), ("Is there a pleural effusion?", 52),
    ("How severe is the cardiomegaly?", 44), ("Which side is the consolidation on?", 34),
    ("Which side is the lesion on?", 32), ("Where is the consolidation?", 31), ("Is there a pneumothorax?", 30),
    ("Which side is the pleural effusion on?", 29), ("Are the heart and lungs normal?", 26),
    ("How large is the pleural effusion?", 24), ("Where is the lesion?", 22), ("Are there any abnormal findings?", 20),
    ("Is there consolidation?", 18), ("What support devices are present?", 16),
    ("Which side is the pneumothorax on?", 15), ("How large is the pneumothorax?", 14),
)  # fmt: skip
QA_ANSWER_WORDS = ((1, 390), (2, 26), (3, 33), (4, 96), (5, 54), (6, 12), (7, 12), (8, 8), (9, 10), (10, 7), (11, 13),
                   (12, 9), (13, 10), (14, 4), (15, 5), (16, 2), (18, 9), (19, 1), (20, 1), (21, 1), (22, 1), (23, 1),
                   (25, 1), (26, 1))  # fmt: skip
SHORT_ANSWERS = ("Yes.", "No.", "Left.", "Right.", "Small.", "Mild.")

# Peak dense bf16 tensor-core TFLOP/s by device name (first match wins; no sparsity).
PEAK_TFLOPS = (
    (r"H100.*PCIe", 756.0),
    (r"H100|H200|GH200", 989.4),
    (r"A100", 312.0),
    (r"\bL4\b", 121.0),
    (r"RTX 4090", 165.2),
)
MFU_FORMULA = (
    "FLOPs/token = 2N (forward) + 2N (activation gradients; 0 for a group with nothing trainable) + 2N_trainable "
    "(weight gradients), summed over parameter groups x the tokens each multiplies; attention scores, "
    "recomputation and dequantisation not counted"
)


def peak_tflops(device_name: str) -> float | None:
    """The card's peak dense bf16 TFLOP/s from `PEAK_TFLOPS`, or None for a device not in the table."""
    for pattern, tflops in PEAK_TFLOPS:
        if re.search(pattern, device_name):
            return tflops
    return None


def scaled(config: dict, scale: str) -> dict:
    """`config` as published (`full`) or shrunk (`tiny`): the `TINY` sizes, images of 4x4 patches."""
    if scale == "full":
        return dict(config)
    tiny = {key: TINY.get(key, value) for key, value in config.items()}
    if "patch_size" in config:
        tiny["image_size"] = 4 * config["patch_size"]
    return tiny


def image_tokens(vision: dict) -> int:
    """Patch tokens of one image (without the CLS token)."""
    return (vision["image_size"] // vision["patch_size"]) ** 2


def ensure_radtune_importable() -> None:
    """Run from a checkout without `pip install`: put the packages' sources on the path."""
    try:
        import radtune.common  # noqa: F401
    except ModuleNotFoundError:
        sys.path[:0] = [str(path) for path in sorted(REPO.glob("packages/*/src"))]


# --- Synthetic data --------------------------------------------------------------------------------------------------
def jpeg_images(count: int, side: int, seed: int = 0) -> list[bytes]:
    """`count` distinct grey radiograph-like JPEGs (smooth anatomy plus noise), `side` pixels square."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    body = 120 * np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.5) / 0.45) ** 2))
    images = []
    for _ in range(count):
        a, b = rng.uniform(2, 9, size=2)
        pixels = body + 40 * np.sin(a * x * np.pi) * np.cos(b * y * np.pi) + rng.normal(0, 8, body.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(buffer, format="JPEG", quality=92)
        images.append(buffer.getvalue())
    return images


def corpus_text(rng, words: list[str], length: int) -> str:
    """`length` consecutive words of the corpus as a sentence."""
    start = int(rng.integers(0, len(words) - length))
    text = " ".join(words[start : start + length]).rstrip(".")
    return text[:1].upper() + text[1:] + "."


def qa_rows(n: int, images: list[bytes], seed: int = 0) -> dict:
    """Columns of `n` rows in radtune's QA export layout (`messages`, `images`), drawn from the exporter's statistics."""
    import numpy as np

    from radtune.common.tiny import builtin_corpus

    rng = np.random.default_rng(seed)
    words = " ".join(builtin_corpus()).split()
    questions, question_counts = zip(*QA_QUESTIONS, strict=True)
    lengths, length_counts = zip(*QA_ANSWER_WORDS, strict=True)
    question_p = np.array(question_counts) / sum(question_counts)
    length_p = np.array(length_counts) / sum(length_counts)
    messages = []
    for _ in range(n):
        question = questions[rng.choice(len(questions), p=question_p)]
        length = int(lengths[rng.choice(len(lengths), p=length_p)])
        answer = str(rng.choice(SHORT_ANSWERS)) if length == 1 else corpus_text(rng, words, length)
        messages.append([
            {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": question}]},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ])  # fmt: skip
    return {"messages": messages, "images": [[{"bytes": images[i % len(images)], "path": None}] for i in range(n)]}


def caption_rows(n: int, images: list[bytes], seed: int = 0) -> dict:
    """Columns of `n` image-caption rows (`image`, `text`), captions of 5-60 words (ROCO-like, as in
    benchmarks/caption_train_speed.py)."""
    import numpy as np

    from radtune.common.tiny import builtin_corpus

    rng = np.random.default_rng(seed)
    words = " ".join(builtin_corpus()).split()
    texts = [corpus_text(rng, words, int(np.clip(rng.lognormal(2.7, 0.6), 5, 60))) for _ in range(n)]
    return {"image": [{"bytes": images[i % len(images)], "path": None} for i in range(n)], "text": texts}


# --- Models, collators and trainers, the way radtune's training entry points build them ---------------------------
MODEL_CLASSES = {"llava": "LlavaForConditionalGeneration", "llava-next": "LlavaNextForConditionalGeneration",
                 "blip": "BlipForConditionalGeneration",
                 "vit-gpt2": "VisionEncoderDecoderModel", "clip": "CLIPModel"}  # fmt: skip
TOKENIZER_STYLES = {"llava": "llama", "blip": "bert", "vit-gpt2": "gpt2", "clip": "clip"}


@dataclass
class Group:
    """Parameters that multiply the same tokens: the first group whose `pattern` is found in a parameter's name."""

    name: str
    pattern: str
    tokens: Any  # batch -> number of tokens these parameters multiply
    params: int = 0
    trainable: int = 0
    params_4bit: int = 0

    @property
    def flops_per_token(self) -> int:
        return 2 * self.params + (2 * self.params if self.trainable else 0) + 2 * self.trainable


@dataclass
class Setup:
    trainer: Any
    groups: list[Group]
    sequence_group: str  # the group whose tokens are "the tokens" of tokens/s
    notes: list[str] = field(default_factory=list)


def text_tokens(batch) -> int:
    """Real (not padding) tokens of the text sequence."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int((batch["labels"] != -100).sum())


def per_image(count: int):
    """`count` tokens per image, or per tile where `pixel_values` holds tiles (LLaVA-NeXT: batch x tiles x 3 x H x W;
    the synthetic images are all square, so no tile is padding)."""
    return lambda batch: math.prod(batch["pixel_values"].shape[:-3]) * count


def llava_processor(arch: str, scale: str, folder: str | Path):
    """LLaVA's processor from llava-hf's published files (`LLAVA_PUBLISHED`): its tokenizer config, special tokens
    and their ids, image processor and chat template, with a vocabulary trained on radtune's radiology corpus (at
    most the published 32000; `TINY_VOCAB` at --scale tiny) and the image side of `arch` at `scale`; the template is
    then repaired exactly as `radtune.llava_vqa.train` repairs it (`ensure_training_chat_template`)."""
    from transformers import AutoProcessor

    from radtune.common.tiny import builtin_corpus
    from radtune.llava_vqa.inference import ensure_training_chat_template
    from radtune.llava_vqa.tiny import save_published_processor

    vision = scaled(ARCHS[arch]["vision"], scale)
    vocab = LLAVA_TOKENIZER_VOCAB if scale == "full" else TINY_VOCAB
    saved = save_published_processor(LLAVA_PUBLISHED, Path(folder) / "llava-processor", builtin_corpus(),
                                     image_size=vision["image_size"], patch_size=vision["patch_size"],
                                     vocab_size=vocab)  # fmt: skip
    processor = AutoProcessor.from_pretrained(saved)
    ensure_training_chat_template(processor)
    return processor


def llava_next_pinpoints(scale: str) -> list[list[int]]:
    """The published `image_grid_pinpoints` (tile grids in pixels), shrunk at --scale tiny with the tile side."""
    side, published = scaled(LLAVA_NEXT_VISION, scale)["image_size"], LLAVA_NEXT_VISION["image_size"]
    return [[height * side // published, width * side // published]
            for height, width in _LLAVA_NEXT_CONFIG["image_grid_pinpoints"]]  # fmt: skip


def llava_next_processor(arch: str, scale: str, folder: str | Path):
    """LLaVA-NeXT's processor: the special tokens (`<unk>`, `<s>`, `</s>`, `<image>`, `<pad>`), tokenizer and published
    chat template of `radtune tiny llava-next` (`radtune.llava_vqa.tiny.build_llava_next`: Mistral-style, trained on
    radtune's radiology corpus), around the published tiling: tiles of the vision tower's side on the grids of
    `image_grid_pinpoints` plus the whole image (shrunk together at --scale tiny); the template is then repaired
    exactly as `radtune.llava_vqa.train` repairs it (`ensure_training_chat_template`)."""
    from transformers import AutoProcessor, LlavaNextImageProcessorPil, LlavaNextProcessor

    from radtune.common.tiny import TinySize, builtin_corpus
    from radtune.llava_vqa.inference import ensure_training_chat_template
    from radtune.llava_vqa.tiny import build_llava_next

    vision = scaled(ARCHS[arch]["vision"], scale)
    side = vision["image_size"]
    tiny = Path(folder) / "llava-next-tiny"
    build_llava_next(builtin_corpus(), tiny, TinySize())
    family = AutoProcessor.from_pretrained(tiny)
    image_processor = LlavaNextImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                                 image_grid_pinpoints=llava_next_pinpoints(scale))  # fmt: skip
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=family.tokenizer, patch_size=vision["patch_size"],
        vision_feature_select_strategy=_LLAVA_NEXT_CONFIG["vision_feature_select_strategy"],
        num_additional_image_tokens=1, chat_template=family.chat_template, image_token="<image>",
    )  # fmt: skip
    ensure_training_chat_template(processor)
    return processor


def make_tokenizer(arch: str, scale: str):
    """A tokenizer in the style of the arch's own, trained on radtune's radiology corpus (at most the published
    vocabulary; `TINY_VOCAB` at --scale tiny); LLaVA's is `llava_processor`'s."""
    from radtune.common.tiny import builtin_corpus, train_tokenizer

    spec = ARCHS[arch]
    text = spec["text"]
    if spec["family"] in LLAVA_PROCESSORS:
        with tempfile.TemporaryDirectory(prefix="radtune-llava-processor-") as folder:
            return LLAVA_PROCESSORS[spec["family"]](arch, scale, folder).tokenizer
    vocab = text["vocab_size"] if scale == "full" else TINY_VOCAB
    max_length = text.get("max_position_embeddings") or text["n_positions"]
    tokenizer = train_tokenizer(builtin_corpus(), TOKENIZER_STYLES[spec["family"]], vocab_size=vocab,
                                model_max_length=max_length)  # fmt: skip
    if len(tokenizer) > text["vocab_size"]:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than {arch}'s vocabulary")
    return tokenizer


def model_config(arch: str, scale: str, tokenizer):
    """The transformers config of `arch` at `scale` (at --scale tiny, the vocabulary is the tokenizer's)."""
    import transformers as tf

    spec = ARCHS[arch]
    family = spec["family"]
    if family == "llava-next":
        return llava_next_config(scale, tokenizer)
    vision, text = scaled(spec["vision"], scale), scaled(spec["text"], scale)
    if scale == "tiny":
        text["vocab_size"] = len(tokenizer)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    if family == "llava":
        return tf.LlavaConfig(
            vision_config=tf.CLIPVisionConfig(**vision), text_config=tf.LlamaConfig(**text, **ids),
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=image_tokens(vision),
            **LLAVA_1_5,
        )  # fmt: skip
    if family == "blip":
        # BLIP ends a caption with [SEP] and starts decoding from its [DEC] (bos) token.
        text_config = tf.BlipTextConfig(**text, **{**ids, "eos_token_id": tokenizer.sep_token_id},
                                        sep_token_id=tokenizer.sep_token_id)  # fmt: skip
        return tf.BlipConfig(text_config=text_config.to_dict(), vision_config=tf.BlipVisionConfig(**vision).to_dict())
    if family == "vit-gpt2":
        decoder = tf.GPT2Config(**text, is_decoder=True, **ids)
        config = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(tf.ViTConfig(**vision), decoder)
        config.decoder_start_token_id = tokenizer.bos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id
        return config
    return tf.CLIPConfig(text_config=tf.CLIPTextConfig(**text, **ids).to_dict(),
                         vision_config=tf.CLIPVisionConfig(**vision).to_dict(), projection_dim=text["projection_dim"])  # fmt: skip


def llava_next_config(scale: str, tokenizer):
    """llava-v1.6-mistral-7b-hf's published config (`LLAVA_NEXT_PUBLISHED`), shrunk at --scale tiny as `scaled`
    shrinks the others (with its pinpoints and vocabulary), with the tokenizer's special-token ids."""
    import transformers as tf

    config = tf.LlavaNextConfig.from_pretrained(LLAVA_NEXT_PUBLISHED)
    text, vision = config.text_config, config.vision_config
    if scale == "tiny":
        for sub in (text, vision):
            for key, value in TINY.items():
                if key in sub.to_dict():
                    setattr(sub, key, value)
        vision.image_size = scaled(LLAVA_NEXT_VISION, scale)["image_size"]
        text.vocab_size = len(tokenizer)
        config.image_grid_pinpoints = llava_next_pinpoints(scale)
        config.image_seq_length = image_tokens(vision.to_dict())
    text.bos_token_id, text.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    text.pad_token_id = config.pad_token_id = tokenizer.pad_token_id
    config.image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    return config


def build_random(arch: str, config, dtype: str, device: str, attn_implementation: str):
    """A model of `config` with random weights in `dtype` ("bf16" or "fp32"), initialised directly on `device`."""
    import torch
    import transformers

    model_class = getattr(transformers, MODEL_CLASSES[ARCHS[arch]["family"]])
    torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    with torch.device(device):
        model = model_class._from_config(config, dtype=torch_dtype, attn_implementation=attn_implementation)
    return model.to(device)


def training_kwargs(args, output_dir: str, cuda: bool) -> dict:
    """TrainingArguments shared by every family: one micro-batch per step, no logging, saving or evaluation."""
    return dict(
        output_dir=output_dir, max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, activation_checkpointing=args.gradient_checkpointing,
        lr_scheduler_type="constant", warmup_steps=0, logging_steps=10**6, save_strategy="no", eval_strategy="no",
        report_to="none", disable_tqdm=True, use_cpu=not cuda, bf16=args.dtype == "bf16", fp16=False,
        dataloader_num_workers=args.workers, dataloader_persistent_workers=args.workers > 0,
        dataloader_pin_memory=cuda, seed=args.seed,
    )  # fmt: skip


def build_llava(args, images: list[bytes], output_dir: str, cuda: bool) -> Setup:
    """LLaVA-1.5 or LLaVA-NeXT through `radtune.llava_vqa.train`: the family's LoRA targets, QLoRA config, the
    processor (`LLAVA_PROCESSORS`) with its chat template repaired as training repairs it, and `VQASFTTrainer`
    (one BOS first in every batch)."""
    import transformers
    from datasets import Dataset, Features, Image, List, Value
    from trl import get_quantization_config

    from radtune.llava_vqa.train import LlavaModelConfig, LlavaSFTConfig, ScriptArguments, device_map, lora_config
    from radtune.llava_vqa.trainer import VQASFTTrainer

    family = ARCHS[args.arch]["family"]
    processor = LLAVA_PROCESSORS[family](args.arch, args.scale, output_dir)
    config = model_config(args.arch, args.scale, processor.tokenizer)
    vision = config.vision_config

    # Model, as radtune.llava_vqa.train.build_trainer sets it up
    script_args = ScriptArguments(dataset_name="synthetic")
    model_args = LlavaModelConfig(
        model_name_or_path=f"random {args.arch}", use_peft=args.mode != "full", load_in_4bit=args.mode == "qlora",
        use_bnb_nested_quant=args.double_quant, dtype={"bf16": "bfloat16", "fp32": "float32"}[args.dtype],
        attn_implementation=args.attn, **({"lora_r": args.lora_r} if args.lora_r else {}),
    )  # fmt: skip
    training_args = LlavaSFTConfig(**training_kwargs(args, output_dir, cuda))
    model = build_random(args.arch, config, args.dtype, "cuda" if cuda else "cpu", args.attn)
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None:
        # Quantise the random weights in memory, as loading a checkpoint with this config does.
        state_dict = model.state_dict()
        del model
        model = getattr(transformers, MODEL_CLASSES[family]).from_pretrained(
            None, config=config, state_dict=state_dict, dtype=model_args.dtype, attn_implementation=args.attn,
            quantization_config=quantization_config, device_map=device_map(training_args),
        )  # fmt: skip
        del state_dict
    peft_config = lora_config(script_args, model_args, family) if model_args.use_peft else None
    if peft_config is None:
        model.model.vision_tower.requires_grad_(script_args.train_vision_tower)
        model.model.multi_modal_projector.requires_grad_(script_args.train_projector)

    # Data
    turn = List({"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})})
    features = Features({"messages": turn, "images": List(Image())})
    rows = args.batch_size * (args.warmup + args.steps)
    dataset = Dataset.from_dict(qa_rows(rows, images, seed=args.seed), features=features)
    trainer = VQASFTTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=processor,
                            peft_config=peft_config)  # fmt: skip
    patches = image_tokens(vision.to_dict())
    groups = [
        Group("vision tower", r"vision_tower\.", per_image(patches + 1)),
        Group("projector", r"multi_modal_projector\.", per_image(patches)),
        Group("language model", "", text_tokens),
    ]
    notes = [f"LoRA r={peft_config.r}, alpha={peft_config.lora_alpha}" if peft_config else "full: language model"]
    if args.mode == "qlora":
        notes.append(f"QLoRA nf4, double quantisation {'on' if args.double_quant else 'off'}")
    return Setup(trainer, groups, "language model", notes)


def build_captioning(args, images: list[bytes], output_dir: str, cuda: bool) -> Setup:
    """BLIP or ViT-GPT2 through `radtune.captioning.train`: its LoRA targets, CaptioningCollator and
    GenerationTrainer."""
    from datasets import Dataset, Features, Image, Value
    from transformers import BlipImageProcessor, ViTImageProcessor
    from trl import ModelConfig

    from radtune.captioning.collators import CaptioningCollator, undecoded_images
    from radtune.captioning.modeling import prepare_tokenizer
    from radtune.captioning.train import CaptioningArguments, CaptioningTrainingArguments, lora_config
    from radtune.captioning.trainer import GenerationTrainer

    family = ARCHS[args.arch]["family"]
    tokenizer = prepare_tokenizer(make_tokenizer(args.arch, args.scale))
    config = model_config(args.arch, args.scale, tokenizer)
    model = build_random(args.arch, config, args.dtype, "cuda" if cuda else "cpu", args.attn)
    if family == "blip":
        vision = config.vision_config.to_dict()
        image_processor = BlipImageProcessor(size={"height": vision["image_size"], "width": vision["image_size"]})
        cross_attention = r"crossattention\.self\.(key|value)\."
    else:
        vision = config.encoder.to_dict()
        image_processor = ViTImageProcessor(size={"height": vision["image_size"], "width": vision["image_size"]})
        cross_attention = r"crossattention\.c_attn\."
    image_sequence = image_tokens(vision) + 1  # with the CLS token
    groups = [
        Group("cross-attention key/value", cross_attention, per_image(image_sequence)),
        Group("vision encoder", r"vision_model\." if family == "blip" else r"(^|\.)encoder\.", per_image(image_sequence)),
        Group("text decoder", "", text_tokens),
    ]  # fmt: skip

    # Model, as radtune.captioning.train.main sets it up
    script_args = CaptioningArguments(dataset_name="synthetic",
                                      architecture="blip" if family == "blip" else "vit-gpt2", text_column="text")  # fmt: skip
    model_args = ModelConfig(model_name_or_path=f"random {args.arch}", use_peft=args.mode == "lora",
                             **({"lora_r": args.lora_r} if args.lora_r else {}))  # fmt: skip
    notes = ["full: every weight"]
    if model_args.use_peft:
        from peft import get_peft_model

        peft_config = lora_config(script_args, model_args)
        model = get_peft_model(model, peft_config)
        notes = [f"LoRA r={peft_config.r}, alpha={peft_config.lora_alpha}"]

    # Data
    features = Features({"image": Image(), "text": Value("string")})
    rows = args.batch_size * (args.warmup + args.steps)
    dataset = undecoded_images(Dataset.from_dict(caption_rows(rows, images, seed=args.seed), features=features))
    collator = CaptioningCollator(
        image_processor=image_processor, tokenizer=tokenizer, text_column="text",
        max_length=script_args.max_target_length, append_eos=family == "vit-gpt2", text_inputs=family == "blip",
        decoder_start_token_id=model.config.text_config.bos_token_id if family == "blip" else None,
    )  # fmt: skip
    training_args = CaptioningTrainingArguments(**training_kwargs(args, output_dir, cuda), predict_with_generate=False)
    trainer = GenerationTrainer(model=model, args=training_args, data_collator=collator, train_dataset=dataset,
                                processing_class=tokenizer)  # fmt: skip
    return Setup(trainer, groups, "text decoder", notes)


def build_clip(args, images: list[bytes], output_dir: str, cuda: bool) -> Setup:
    """CLIP through `radtune.contrastive.train`: its augmentation, ContrastiveCollator, InfoNCE loss and
    ContrastiveTrainer."""
    from datasets import Dataset, Features, Image, Value
    from transformers import CLIPImageProcessor

    from radtune.contrastive.data import ContrastiveCollator, pair_transform, with_row_index
    from radtune.contrastive.losses import build_loss
    from radtune.contrastive.modeling import ContrastiveProcessor
    from radtune.contrastive.train import (
        ContrastiveConfig,
        ModelArguments,
        ScriptArguments,
        configure_model,
        training_augment,
    )
    from radtune.contrastive.trainer import ContrastiveTrainer

    tokenizer = make_tokenizer(args.arch, args.scale)
    config = model_config(args.arch, args.scale, tokenizer)
    model = build_random(args.arch, config, args.dtype, "cuda" if cuda else "cpu", args.attn)
    side = config.vision_config.image_size
    image_processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    processor = ContrastiveProcessor(tokenizer=tokenizer, image_processor=image_processor, architecture="clip")

    # Model, as radtune.contrastive.train.build_trainer sets it up
    script_args, model_args = ScriptArguments(dataset_name="synthetic"), ModelArguments(architecture="clip")
    training_args = ContrastiveConfig(**training_kwargs(args, output_dir, cuda))
    configure_model(model, model_args, training_args.loss)

    # Data
    augment = training_augment(training_args)
    features = Features({"image": Image(), "text": Value("string")})
    rows = args.batch_size * (args.warmup + args.steps)
    dataset = Dataset.from_dict(caption_rows(rows, images, seed=args.seed), features=features)
    dataset = with_row_index(dataset).with_transform(pair_transform("image", "text", augment=augment, seed=args.seed))
    max_length = min(script_args.max_text_length, tokenizer.model_max_length)
    collator = ContrastiveCollator(tokenizer, image_processor, max_length=max_length)
    loss = build_loss(training_args.loss, training_args.local_loss, training_args.triplet_margin,
                      training_args.triplet_mining)  # fmt: skip
    trainer = ContrastiveTrainer(model=model, args=training_args, data_collator=collator, train_dataset=dataset,
                                 processing_class=processor, contrastive_loss=loss,
                                 head_learning_rate=training_args.head_learning_rate)  # fmt: skip
    groups = [
        Group("image projection", r"visual_projection\.", per_image(1)),
        Group("text projection", r"text_projection\.", per_image(1)),
        Group("vision", r"vision_model\.", per_image(image_tokens(config.vision_config.to_dict()) + 1)),
        Group("text", "", text_tokens),
    ]
    return Setup(trainer, groups, "text", ["full: both towers, projections and the temperature"])


LLAVA_PROCESSORS = {"llava": llava_processor, "llava-next": llava_next_processor}
BUILDERS = {"llava": build_llava, "llava-next": build_llava, "blip": build_captioning, "vit-gpt2": build_captioning,
            "clip": build_clip}  # fmt: skip


# --- Timing ----------------------------------------------------------------------------------------------------------
class StepClock:
    """Wall-clock marks inside training steps (the GPU synchronised at each), turned into one record per step."""

    def __init__(self, cuda: bool, groups: list[Group]):
        self.cuda, self.groups = cuda, groups
        self.records: list[dict] = []
        self.last: float | None = None
        self.marks: dict = {}

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def begin(self) -> None:
        self.last, self.marks = self.now(), {}

    def forward_start(self, batch) -> None:
        self.marks["tokens"] = {group.name: group.tokens(batch) for group in self.groups}
        self.marks["samples"] = int(batch["pixel_values"].shape[0])
        self.marks["forward_start"] = self.now()

    def mark(self, name: str) -> None:
        self.marks[name] = self.now()

    def end(self) -> None:
        end, marks = self.now(), self.marks
        self.records.append({
            "step": end - self.last,
            "data": marks["forward_start"] - self.last,
            "forward": marks["forward_end"] - marks["forward_start"],
            "backward": marks["backward_end"] - marks["forward_end"],
            "optimizer": end - marks["backward_end"],
            "samples": marks["samples"],
            "tokens": marks["tokens"],
        })  # fmt: skip
        self.last, self.marks = end, {}


def instrument(trainer, clock: StepClock) -> None:
    """Time the trainer's own steps: wrap its `compute_loss` and `accelerator.backward`, and close each step at
    `on_step_end`."""
    from transformers import TrainerCallback

    compute_loss, backward = trainer.compute_loss, trainer.accelerator.backward

    def timed_compute_loss(model, inputs, *args, **kwargs):
        clock.forward_start(inputs)
        loss = compute_loss(model, inputs, *args, **kwargs)
        clock.mark("forward_end")
        return loss

    def timed_backward(loss, **kwargs):
        backward(loss, **kwargs)
        clock.mark("backward_end")

    class StepEnd(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.begin()

        def on_step_end(self, args, state, control, **kwargs):
            clock.end()

    trainer.compute_loss = timed_compute_loss
    trainer.accelerator.backward = timed_backward
    trainer.add_callback(StepEnd())


def model_only_steps(trainer, clock: StepClock, steps: int, distinct_batches: int = 4) -> None:
    """`steps` of the trainer's `training_step` + clipping + optimizer on batches collated and moved beforehand."""
    from itertools import islice

    batches = [trainer._prepare_inputs(batch) for batch in islice(trainer.get_train_dataloader(), distinct_batches)]
    model, args = trainer.model_wrapped, trainer.args
    for index in range(steps):
        batch = dict(batches[index % len(batches)])  # compute_loss may add keys
        clock.begin()
        trainer.training_step(model, batch)
        if args.max_grad_norm:
            trainer.accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        trainer.optimizer.step()
        trainer.control = trainer.callback_handler.on_optimizer_step(args, trainer.state, trainer.control)
        trainer.lr_scheduler.step()
        model.zero_grad()
        clock.end()


def parameter_count(parameter) -> int:
    # bitsandbytes stores a 4-bit weight packed two values a byte; its quant_state keeps the real shape.
    quant_state = getattr(parameter, "quant_state", None)
    return math.prod(quant_state.shape) if quant_state is not None else parameter.numel()


def count_parameters(model, groups: list[Group]) -> None:
    for name, parameter in model.named_parameters():
        group = next(group for group in groups if re.search(group.pattern, name))
        count = parameter_count(parameter)
        group.params += count
        group.trainable += count if parameter.requires_grad else 0
        group.params_4bit += count if getattr(parameter, "quant_state", None) is not None else 0


def summarise(records: list[dict], groups: list[Group], sequence_group: str, peak: float | None) -> dict:
    """Means over the timed steps: times, throughput, model FLOPs and MFU."""
    mean = {key: statistics.fmean(record[key] for record in records) for key in
            ("step", "data", "forward", "backward", "optimizer")}  # fmt: skip
    samples = statistics.fmean(record["samples"] for record in records)
    tokens = {group.name: statistics.fmean(record["tokens"][group.name] for record in records) for group in groups}
    flops = sum(group.flops_per_token * tokens[group.name] for group in groups)
    tflops_per_s = flops / mean["step"] / 1e12
    return {
        **{f"{key}_s": value for key, value in mean.items()},
        "step_s_median": statistics.median(record["step"] for record in records),
        "samples_per_s": samples / mean["step"],
        "tokens_per_s": tokens[sequence_group] / mean["step"],
        "tokens_per_step": tokens,
        "model_flops_per_step": flops,
        "model_tflops_per_s": tflops_per_s,
        "mfu": tflops_per_s / peak if peak else None,
    }


# --- Command line ----------------------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Training throughput, step-time split, peak memory and MFU of radtune's full-size models.",
        epilog="example: python benchmarks/gpu_train.py --arch llava-1.5-7b --mode qlora --json runs/llava.json",
    )
    parser.add_argument("--arch", required=True, choices=sorted(ARCHS), help="model, with its published config")
    parser.add_argument("--mode", choices=["lora", "qlora", "full"],
                        help="default: qlora for LLaVA, lora for BLIP / ViT-GPT2, full for CLIP")  # fmt: skip
    parser.add_argument("--scale", choices=["full", "tiny"], default="full",
                        help="tiny: the same structure shrunk to 2 layers, hidden size 32 (CPU smoke test)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, help="per step (default: 4 LLaVA, 16 BLIP / ViT-GPT2, 128 CLIP; "
                        "2 at --scale tiny)")  # fmt: skip
    parser.add_argument("--steps", type=int, help="timed steps (default 10; 3 at --scale tiny)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3; 1 at --scale tiny)")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--attn", choices=["sdpa", "eager"], help="attention (default: sdpa where transformers has it)")
    parser.add_argument("--double-quant", action=argparse.BooleanOptionalAction, default=True,
                        help="QLoRA double quantisation")  # fmt: skip
    parser.add_argument("--lora-r", type=int, help="LoRA rank (default: radtune's, 64 for LLaVA, 16 captioning)")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], help="weights (default: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--workers", type=int, help="DataLoader workers (default: 4 on a GPU, 0 on the CPU)")
    parser.add_argument("--source-image-side", type=int,
                        help="side of the stored JPEGs (default 1024; twice the model's image side at --scale tiny)")  # fmt: skip
    parser.add_argument("--peak-tflops", type=float, help="the device's peak TFLOP/s (default: PEAK_TFLOPS table)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every number to this file")
    return parser


def resolve_args(parser: argparse.ArgumentParser, args: argparse.Namespace, cuda: bool) -> argparse.Namespace:
    """Fill the defaults that depend on the arch, the scale and the device; reject what radtune does not train."""
    spec = ARCHS[args.arch]
    family, tiny = spec["family"], args.scale == "tiny"
    args.mode = args.mode or MODES[family][0]
    if args.mode not in MODES[family]:
        parser.error(f"--mode {args.mode} is not a way radtune trains {args.arch}; choose from {', '.join(MODES[family])}")
    defaults = {
        "batch_size": 2 if tiny else spec["batch_size"], "steps": 3 if tiny else 10, "warmup": 1 if tiny else 3,
        "lora_r": 8 if tiny else None, "dtype": "bf16" if cuda else "fp32", "workers": 4 if cuda else 0,
        "source_image_side": 2 * scaled(spec["vision"], args.scale)["image_size"] if tiny else 1024,
    }  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("batch_size", "steps", "lora_r", "source_image_side"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.warmup < 0 or args.workers < 0:
        parser.error("--warmup and --workers must be >= 0")
    if args.mode == "qlora":
        from importlib.util import find_spec

        if find_spec("bitsandbytes") is None:
            parser.error("--mode qlora needs bitsandbytes (pip install bitsandbytes)")
    return args


def default_attn(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """SDPA where transformers implements it for the model; eager otherwise (BLIP)."""
    import transformers

    model_class = getattr(transformers, MODEL_CLASSES[ARCHS[args.arch]["family"]])
    if args.attn == "sdpa" and not model_class._supports_sdpa:
        parser.error(f"transformers has no SDPA attention for {model_class.__name__}; use --attn eager")
    return args.attn or ("sdpa" if model_class._supports_sdpa else "eager")


def run(args: argparse.Namespace, cuda: bool) -> dict:
    import torch

    spec = ARCHS[args.arch]
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak, peak_source = None, None  # MFU is a GPU figure
    if cuda:
        peak, peak_source = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (peak_tflops(device_name), "table")
        peak_source = peak_source if peak else None
    torch.manual_seed(args.seed)
    vision = scaled(spec["vision"], args.scale)
    images = jpeg_images(min(64, args.batch_size * (args.warmup + args.steps)), args.source_image_side, args.seed)
    with tempfile.TemporaryDirectory(prefix="radtune-gpu-train-") as output_dir:
        start = time.perf_counter()
        setup = BUILDERS[spec["family"]](args, images, output_dir, cuda)
        build_s = time.perf_counter() - start
        trainer = setup.trainer
        if cuda:
            torch.cuda.empty_cache()  # QLoRA's bf16 copy is gone: its cached blocks must not count as reserved
        count_parameters(trainer.model, setup.groups)
        watched = [p for p in trainer.model.parameters() if p.requires_grad]
        watched = watched[:2] + watched[-2:]
        before = [p.detach().float().cpu().clone() for p in watched]
        if cuda:
            torch.cuda.synchronize()
            loaded_gib = torch.cuda.memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()

        # Train: the full pipeline
        clock = StepClock(cuda, setup.groups)
        instrument(trainer, clock)
        trainer.train()
        pipeline_records = clock.records[args.warmup :]
        changed = any(not torch.equal(b, p.detach().float().cpu()) for b, p in zip(before, watched, strict=True))
        memory = {}
        if cuda:
            memory["pipeline"] = (torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30)
            torch.cuda.reset_peak_memory_stats()

        # Model-only: pre-collated batches already on the device
        clock.records = []
        model_only_steps(trainer, clock, args.warmup + args.steps)
        model_records = clock.records[args.warmup :]
        if cuda:
            memory["model_only"] = (torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30)

    pipeline = summarise(pipeline_records, setup.groups, setup.sequence_group, peak)
    model_only = summarise(model_records, setup.groups, setup.sequence_group, peak)
    for key, section in (("pipeline", pipeline), ("model_only", model_only)):
        section["peak_memory_gib"], section["peak_reserved_gib"] = memory.get(key, (None, None))
    total = sum(group.params for group in setup.groups)
    trainable = sum(group.trainable for group in setup.groups)
    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "datasets"):
        module = sys.modules.get(name)
        versions[name] = getattr(module, "__version__", None) if module else None
    return {
        "arch": args.arch, "mode": args.mode, "scale": args.scale, "device": device_name,
        "dtype": args.dtype, "batch_size": args.batch_size, "gradient_checkpointing": args.gradient_checkpointing,
        "attn_implementation": args.attn,
        "double_quant": args.double_quant if args.mode == "qlora" else None, "setup": setup.notes,
        "workers": args.workers, "warmup_steps": args.warmup, "timed_steps": args.steps,
        "image_size": vision["image_size"], "source_image_side": args.source_image_side,
        "params_total": total, "params_trainable": trainable, "tokens_counted": setup.sequence_group,
        "params_4bit": sum(group.params_4bit for group in setup.groups),
        "groups": [{"name": group.name, "params": group.params, "trainable": group.trainable,
                    "params_4bit": group.params_4bit, "flops_per_token": group.flops_per_token}
                   for group in setup.groups],
        "flops_formula": MFU_FORMULA,
        "peak_tflops": peak, "peak_tflops_source": peak_source,
        "build_s": build_s, "memory_after_load_gib": loaded_gib if cuda else None,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "trainable_params_changed": changed,
        "pipeline": pipeline, "model_only": model_only,
        "pipeline_over_model_only": pipeline["step_s"] / model_only["step_s"],
        "versions": versions,
    }  # fmt: skip


def print_report(result: dict) -> None:
    def ms(value):
        return f"{1000 * value:10.1f}"

    def gib(value):
        return "       n/a" if value is None else f"{value:10.2f}"

    pipeline, model_only = result["pipeline"], result["model_only"]
    share = result["params_trainable"] / result["params_total"]
    print(f"{result['arch']} · {result['mode']} ({'; '.join(result['setup'])}) · scale {result['scale']} · "
          f"batch {result['batch_size']} · checkpointing {'on' if result['gradient_checkpointing'] else 'off'} · "
          f"{result['attn_implementation']} · {result['dtype']} · {result['workers']} workers · "
          f"{result['image_size']}-px images from {result['source_image_side']}-px JPEGs")  # fmt: skip
    peak = f"peak {result['peak_tflops']} TFLOP/s bf16 dense" if result["peak_tflops"] else "peak unknown: MFU n/a"
    print(f"device: {result['device']} ({peak}); mean of {result['timed_steps']} steps after "
          f"{result['warmup_steps']} warm-up")  # fmt: skip
    print(f"parameters: {result['params_total']:,} total, {result['params_trainable']:,} trainable ({share:.2%}); "
          f"{result['params_4bit']:,} stored in 4 bits; "
          f"trainable weights changed: {'yes' if result['trainable_params_changed'] else 'NO'}")  # fmt: skip
    print(f"{'':26}{'pipeline':>10}  {'model only':>10}")
    rows = [("step time (ms)", "step_s"), ("  data", "data_s"), ("  forward", "forward_s"),
            ("  backward", "backward_s"), ("  optimizer", "optimizer_s")]  # fmt: skip
    for label, key in rows:
        print(f"{label:26}{ms(pipeline[key])}  {ms(model_only[key])}")
    print(f"{'samples/s':26}{pipeline['samples_per_s']:10.2f}  {model_only['samples_per_s']:10.2f}")
    label = f"tokens/s ({result['tokens_counted']})"
    print(f"{label:26}{pipeline['tokens_per_s']:10.1f}  {model_only['tokens_per_s']:10.1f}")
    print(f"{'model TFLOP/s':26}{pipeline['model_tflops_per_s']:10.3f}  {model_only['model_tflops_per_s']:10.3f}")
    print(f"{'MFU':26}" + "  ".join("       n/a" if s["mfu"] is None else f"{s['mfu']:10.1%}" for s in (pipeline, model_only)))
    print(f"{'peak memory (GiB)':26}{gib(pipeline['peak_memory_gib'])}  {gib(model_only['peak_memory_gib'])}")
    print(f"{'peak reserved (GiB)':26}{gib(pipeline['peak_reserved_gib'])}  {gib(model_only['peak_reserved_gib'])}")
    if (result["arch"], result["mode"]) == ("llava-1.5-7b", "qlora"):
        print("  goal (H100, r=64, batch 4, checkpointing): peak memory <= 16 GiB")
    if result["memory_after_load_gib"] is None:
        print(f"peak RSS of the process: {result['peak_rss_mib']:.0f} MiB (no GPU)")
    else:
        print(f"GPU memory after building the model: {result['memory_after_load_gib']:.2f} GiB")
    print(f"pipeline step / model-only step: {result['pipeline_over_model_only']:.3f}  (goal <= 1.1)")
    print("FLOPs per token by parameter group (tokens per step):")
    for group in result["groups"]:
        tokens = pipeline["tokens_per_step"][group["name"]]
        print(f"  {group['name']:28} N={group['params']:>14,}  trainable={group['trainable']:>13,}  "
              f"{group['flops_per_token']:>16,} x {tokens:8.0f}")  # fmt: skip
    print(f"  {result['flops_formula']}")


def main(argv=None) -> dict:
    parser = make_parser()
    args = parser.parse_args(argv)
    import torch

    cuda = torch.cuda.is_available()
    args = resolve_args(parser, args, cuda)
    ensure_radtune_importable()
    args.attn = default_attn(parser, args)
    try:
        result = run(args, cuda)
    except ModuleNotFoundError as error:
        sys.exit(f"{error}: this path needs radtune's dependencies (trl, peft, datasets; bitsandbytes for QLoRA). "
                 "Install them, e.g. `pip install -e packages/common -e packages/llava_vqa -e packages/captioning "
                 "-e packages/contrastive bitsandbytes`.")  # fmt: skip
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
