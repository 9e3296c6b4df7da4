"""Load a trained VQA model (a run folder, an adapter or a full model of any family in `radtune.llava_vqa.families`:
LLaVA-1.5, LLaVA-NeXT, Gemma 3 / MedGemma, Idefics3 / SmolVLM) and answer questions about images, in batches.

Shared by the end-of-training evaluation, `radtune vqa evaluate`, `radtune vqa predict` and `radtune vqa merge`,
so every path formats prompts exactly as training did (the processor's chat template, `add_generation_prompt`)
and loads the base model as training did (the base model and quantisation `run_info.json` recorded).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path


def resolve(repo_or_path: str | Path) -> Path:
    """A local folder for `repo_or_path` (downloaded from the Hub when it is not a local path)."""
    from radtune.common.hub import resolve_model_path

    return resolve_model_path(str(repo_or_path))


def ensure_training_chat_template(processor) -> str | None:
    """Give `processor` radtune's training template of its family when its own cannot train and answer as the
    family's checkpoints were trained.

    A template without `{% generation %}` markers cannot keep the loss to the answers (Gemma 3, Idefics3 / SmolVLM
    and LLaVA-NeXT publish none); one whose mark leaves out the end-of-turn token never teaches the model to stop
    (llava-hf's llava-1.5-7b/13b-hf template marks the answer without its `</s>`); a LLaVA template that writes its
    own BOS gives two with the tokenizer's (see `radtune.llava_vqa.chat_template.chat_template_problems`). Each is
    replaced by the family's template (`radtune.llava_vqa.families.Family.chat_template`), which renders the same
    prompt and answer text with the answer and its end-of-turn token marked, with a one-line notice saying what
    changed and why.

    Returns:
        `str` or `None`: the notice printed, `None` when the template was kept.

    Raises:
        `ValueError`: a processor of a family radtune does not train.
    """
    from radtune.llava_vqa.chat_template import chat_template_problems
    from radtune.llava_vqa.families import family_of_processor

    family = family_of_processor(processor)
    problems = chat_template_problems(processor)
    if not problems:
        return None
    source = processor.tokenizer.name_or_path or "the processor"
    end_of_turn = family.end_of_turn or processor.tokenizer.eos_token
    bos = "written by the template" if family.template_writes_bos else "from the tokenizer"
    notice = (f"notice: the chat template of {source} {'; it '.join(problems)}; radtune uses its {family.title} "
              f"template instead (the same prompt and answer text, {end_of_turn} inside the answer's mark, the BOS "
              f"{bos})")  # fmt: skip
    processor.chat_template = family.chat_template
    processor.tokenizer.chat_template = family.chat_template
    print(notice)
    return notice


def quantization_config(quantization: Mapping | None):
    """The bitsandbytes config of a recorded quantisation (`run_info.json`'s `quantization`), built as training
    built it: TRL's `get_quantization_config` on a `ModelConfig` with those settings (`None`: no quantisation)."""
    if not quantization:
        return None
    from trl import ModelConfig, get_quantization_config

    names = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage",
             "dtype")  # fmt: skip
    return get_quantization_config(ModelConfig(**{name: quantization[name] for name in names if name in quantization}))


def default_quantization() -> dict:
    """The quantisation `--load-in-4bit` means when the run recorded none: training's QLoRA defaults."""
    from radtune.common.run import quantization_info
    from radtune.llava_vqa.train import LlavaModelConfig

    return quantization_info(LlavaModelConfig(load_in_4bit=True))


def load_vqa_model(
    model: str | Path,
    base_model: str | Path | None = None,
    dtype: str | None = None,
    load_in_4bit: bool | None = None,
    device: str | None = None,
):
    """Load a LoRA adapter on its base model, or a full (merged) model, with its processor, as the run trained it.

    The run's `run_info.json` (`radtune.common.run.read_run_info`: a checkpoint's is its run's) supplies the base model, the weights
    dtype and the quantisation; arguments given here override it.

    Args:
        model (`str` or `Path`): a run folder, an adapter or model folder, or a Hub repo id of either.
        base_model (`str` or `Path`, *optional*): an adapter's base model; defaults to the recorded `base_model`,
            then the adapter's `base_model_name_or_path`.
        dtype (`str`, *optional*): torch dtype name of the weights; defaults to the recorded `dtype`, else `"auto"`.
        load_in_4bit (`bool`, *optional*): quantise the base model with bitsandbytes; defaults to the recorded
            quantisation (a QLoRA run loads as it trained). `True` on a run that recorded none uses training's
            QLoRA settings (nf4, double quantisation).
        device (`str`, *optional*): `"cuda"`, `"cpu"`, …; defaults to CUDA when available.

    Returns:
        `(model, processor)` with the model in eval mode.

    Raises:
        `ValueError`: a run folder with only checkpoints (the message names them).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from radtune.common.hub import require_model_files
    from radtune.common.run import read_run_info

    folder = resolve(model)
    require_model_files(folder)
    info = read_run_info(folder)
    adapter_config = folder / "adapter_config.json"
    is_adapter = adapter_config.is_file()
    if is_adapter:
        base_model = base_model or info.get("base_model") or json.loads(adapter_config.read_text())[
            "base_model_name_or_path"]  # fmt: skip
        base_folder = resolve(base_model)
    else:
        base_folder = folder
    quantization = info.get("quantization")
    if load_in_4bit is False:
        quantization = None
    elif load_in_4bit and not (quantization or {}).get("load_in_4bit"):
        quantization = default_quantization()
    if quantization and dtype not in (None, "auto"):
        quantization = {**quantization, "dtype": dtype}  # training computes in the weights' dtype
    dtype = dtype or info.get("dtype") or "auto"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    config = quantization_config(quantization)
    if config is not None and is_adapter and not info.get("quantization"):
        # An adapter trained on unquantised weights saved its `modules_to_save` (e.g. the projector) unquantised:
        # keep them out of the 4-bit quantisation, or peft cannot load them (it asks for the weights' `absmax`).
        saved = json.loads(adapter_config.read_text()).get("modules_to_save") or []
        if saved:  # transformers matches these from the module path's start: any prefix, then the saved name
            skip = [rf"(?:.*\.)?{re.escape(name)}" for name in saved]
            config.llm_int8_skip_modules = [*(config.llm_int8_skip_modules or ["lm_head"]), *skip]
    if config is not None:
        kwargs["quantization_config"] = config
        kwargs["device_map"] = {"": device}  # quantised weights load straight onto the device
    loaded = AutoModelForImageTextToText.from_pretrained(base_folder, **kwargs)
    if is_adapter:
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(loaded, folder)
    if config is None:
        loaded.to(device)
    # Training saves the processor (with its training chat template) beside the adapter: prefer it.
    saved_processor = any((folder / name).is_file() for name in ("processor_config.json", "tokenizer_config.json"))
    processor = AutoProcessor.from_pretrained(folder if saved_processor else base_folder)
    ensure_training_chat_template(processor)
    loaded.eval()
    return loaded, processor


def inference_prompt(processor, question: str) -> str:
    """The prompt of one image and `question` through the processor's chat template with the generation prompt, as
    each family's documented usage renders it: `USER: <image>\\n{question} ASSISTANT:` (LLaVA-1.5),
    `[INST] <image>\\n{question} [/INST]` (LLaVA-NeXT), `<bos><start_of_turn>user\\n<start_of_image>{question}
    <end_of_turn>\\n<start_of_turn>model\\n` (Gemma 3), `<|im_start|>User:<image>{question}<end_of_utterance>\\n
    Assistant:` (SmolVLM). The BOS comes from the template where it writes one, else from the processor."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def generate_answers(
    model,
    processor,
    images: Sequence,
    questions: Sequence[str],
    batch_size: int = 8,
    max_new_tokens: int = 32,
    progress: bool = True,
) -> list[str]:
    """Greedy answers for (image, question) pairs, batched with left padding: each prompt is `inference_prompt`
    with one BOS, and generation stops at the model's end-of-turn token (`generation_config.eos_token_id`: `</s>`,
    Gemma's `<end_of_turn>`, SmolVLM's `<end_of_utterance>`) or `max_new_tokens`. The family's extra inputs
    (Gemma 3's `token_type_ids`, LLaVA-NeXT's `image_sizes`, Idefics3's `pixel_attention_mask`) go to `generate`
    as the processor returns them.

    Args:
        images (`Sequence`): PIL images (or anything `radtune.common.images.load_image` opens).
        questions (`Sequence[str]`): one question per image.
        batch_size (`int`, *optional*, defaults to `8`): pairs per generation call.
        max_new_tokens (`int`, *optional*, defaults to `32`): longest answer.
        progress (`bool`, *optional*, defaults to `True`): show a progress bar.

    Returns:
        `list[str]`: the decoded answers, stripped.
    """
    import torch
    from tqdm.auto import tqdm

    from radtune.common.images import load_image

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    tokenizer = processor.tokenizer
    original_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        starts = range(0, len(questions), batch_size)
        for start in tqdm(starts, desc="generating answers", unit="batch", disable=not progress):
            batch_images = [load_image(image) for image in images[start : start + batch_size]]
            prompts = [inference_prompt(processor, question) for question in questions[start : start + batch_size]]
            # llava-hf's usage: the tokenizer's defaults add the BOS (unless a template already wrote one).
            add_bos = not (tokenizer.bos_token and prompts[0].startswith(tokenizer.bos_token))
            # One list of images per prompt (Gemma 3's and Idefics3's processors need it for batches).
            inputs = processor(images=[[image] for image in batch_images], text=prompts, return_tensors="pt",
                               padding=True, add_special_tokens=add_bos).to(device)  # fmt: skip
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.inference_mode():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = original_side
    return answers
