"""The vision-language model families `radtune.llava_vqa` trains, and what differs between them.

Every family is an `AutoModelForImageTextToText` checkpoint with an `AutoProcessor`; the trainer, `radtune vqa
evaluate|predict|merge` and the tiny builders look its differences up here: the training chat template (answers and
their end-of-turn token marked with `{% generation %}`), whether that template writes the BOS itself, and the module
names of the language model, the vision encoder and the projector (LoRA targets and what `--train_vision_tower` /
`--train_projector` switch on).

| family | checkpoints | end of turn | BOS |
|---|---|---|---|
| `llava` | llava-hf/llava-1.5-7b-hf, -13b-hf | `</s>` | added by the tokenizer |
| `llava-next` | llava-hf/llava-v1.6-mistral-7b-hf | `</s>` | added by the tokenizer |
| `gemma3` | google/medgemma-4b-it, google/gemma-3-4b-it | `<end_of_turn>` | written by the template |
| `idefics3` | HuggingFaceTB/SmolVLM-Instruct, HuggingFaceM4/Idefics3-8B-Llama3 | `<end_of_utterance>` | written by the template |

Qwen2.5-VL is not among them: its processor cannot be built without torchvision in transformers 5.25.
"""

from __future__ import annotations

from dataclasses import dataclass

from radtune.llava_vqa.chat_template import (
    GEMMA3_CHAT_TEMPLATE,
    IDEFICS3_CHAT_TEMPLATE,
    LLAVA_CHAT_TEMPLATE,
    LLAVA_NEXT_CHAT_TEMPLATE,
)

LORA_LANGUAGE_LAYERS = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"
LORA_VISION_LAYERS = "q_proj|k_proj|v_proj|out_proj|fc1|fc2"


@dataclass(frozen=True)
class Family:
    """One model family.

    Args:
        name (`str`): radtune's name, also the `radtune tiny` kind (`llava`, `llava-next`, `gemma3`, `idefics3`).
        title (`str`): how the README and notices name it.
        model_types (`tuple[str, ...]`): the `config.model_type` values of its checkpoints.
        processor_classes (`tuple[str, ...]`): the class names of its processors.
        checkpoints (`tuple[str, ...]`): the Hub checkpoints of the family radtune's recipes and defaults name.
        chat_template (`str`): radtune's training chat template (see `radtune.llava_vqa.chat_template`).
        end_of_turn (`str`, *optional*): the token that ends an assistant turn (and generation), when it is not the
            tokenizer's EOS.
        template_writes_bos (`bool`): the published template writes the BOS itself (Gemma 3, Idefics3); otherwise
            the tokenizer adds it (LLaVA) and a template that writes one would give two.
        language_model (`str`): module name of the language model under `model.model`.
        vision_tower (`str`): module name of the vision encoder under `model.model`.
        projector (`str`): module name of the vision-to-language projector under `model.model`.
    """

    name: str
    title: str
    model_types: tuple[str, ...]
    processor_classes: tuple[str, ...]
    checkpoints: tuple[str, ...]
    chat_template: str
    end_of_turn: str | None
    template_writes_bos: bool
    language_model: str
    vision_tower: str
    projector: str

    @property
    def language_lora_target(self) -> str:
        """PEFT's `target_modules` regex of the language model's linear layers."""
        return rf".*\.{self.language_model}\..*\.({LORA_LANGUAGE_LAYERS})"

    @property
    def vision_lora_target(self) -> str:
        """PEFT's `target_modules` regex of the vision encoder's attention and MLP layers."""
        return rf".*\.{self.vision_tower}\..*\.({LORA_VISION_LAYERS})"


_LLAVA_MODULES = {"language_model": "language_model", "vision_tower": "vision_tower",
                  "projector": "multi_modal_projector"}  # fmt: skip

FAMILIES = {
    family.name: family
    for family in (
        Family(
            name="llava",
            title="LLaVA-1.5",
            model_types=("llava",),
            processor_classes=("LlavaProcessor",),
            checkpoints=("llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf"),
            chat_template=LLAVA_CHAT_TEMPLATE,
            end_of_turn=None,
            template_writes_bos=False,
            **_LLAVA_MODULES,
        ),
        Family(
            name="llava-next",
            title="LLaVA-NeXT",
            model_types=("llava_next",),
            processor_classes=("LlavaNextProcessor",),
            checkpoints=("llava-hf/llava-v1.6-mistral-7b-hf",),
            chat_template=LLAVA_NEXT_CHAT_TEMPLATE,
            end_of_turn=None,
            template_writes_bos=False,
            **_LLAVA_MODULES,
        ),
        Family(
            name="gemma3",
            title="Gemma 3 / MedGemma",
            model_types=("gemma3",),
            processor_classes=("Gemma3Processor",),
            checkpoints=("google/medgemma-4b-it", "google/gemma-3-4b-it"),
            chat_template=GEMMA3_CHAT_TEMPLATE,
            end_of_turn="<end_of_turn>",
            template_writes_bos=True,
            **_LLAVA_MODULES,
        ),
        Family(
            name="idefics3",
            title="Idefics3 / SmolVLM",
            model_types=("idefics3",),
            processor_classes=("Idefics3Processor",),
            checkpoints=("HuggingFaceTB/SmolVLM-Instruct", "HuggingFaceM4/Idefics3-8B-Llama3"),
            chat_template=IDEFICS3_CHAT_TEMPLATE,
            end_of_turn="<end_of_utterance>",
            template_writes_bos=True,
            language_model="text_model",
            vision_tower="vision_model",
            projector="connector",
        ),
    )
}


def _unsupported(what: str) -> ValueError:
    titles = ", ".join(family.title for family in FAMILIES.values())
    return ValueError(f"{what} is not a family radtune's VQA trainer supports ({titles}); use a checkpoint of one")


def family_of_processor(processor) -> Family:
    """The family of a processor, by its class (`LlavaProcessor` → `llava`, `Gemma3Processor` → `gemma3`, …).

    Raises:
        `ValueError`: a processor of another model.
    """
    name = type(processor).__name__
    for family in FAMILIES.values():
        if name in family.processor_classes:
            return family
    raise _unsupported(f"a {name}")


def family_of_model(model) -> Family:
    """The family of a model (or its config), by `config.model_type`.

    Raises:
        `ValueError`: a model of another architecture.
    """
    config = getattr(model, "config", model)
    for family in FAMILIES.values():
        if config.model_type in family.model_types:
            return family
    raise _unsupported(f"model type {config.model_type!r}")


def family_of_checkpoint(repo_id: str) -> Family:
    """The family of a Hub checkpoint radtune's recipes name (`google/medgemma-4b-it` → `gemma3`, …), without
    downloading anything; its `name` is also the `radtune tiny` kind of that architecture.

    Raises:
        `ValueError`: a checkpoint no family lists (load it and use `family_of_model` instead).
    """
    for family in FAMILIES.values():
        if repo_id in family.checkpoints:
            return family
    raise _unsupported(f"checkpoint {repo_id!r}")
