"""LLaVA-NeXT, Gemma 3 / MedGemma and Idefics3 / SmolVLM through radtune's VQA trainer, each as a tiny model
(`radtune tiny llava-next|gemma3|idefics3`) with its family's special tokens and published chat template
(`tests/fixtures/<family>/`, TRL 1.16's copies of the templates the checkpoints ship): the loss holds exactly the
answer and its end-of-turn token, rows start with one BOS, image tokens are never cut, the family's own inputs reach
the model, LoRA adapts only the language model, and a short LoRA run evaluates, predicts on a DICOM and merges into
a model plain transformers loads and generates with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from radtune.common.cli import cli
from radtune.llava_vqa.chat_template import BOSFirstCollator, chat_template_problems
from radtune.llava_vqa.families import FAMILIES
from radtune.llava_vqa.inference import ensure_training_chat_template

FIXTURES = Path(__file__).parents[1] / "fixtures"
KINDS = ["gemma3", "idefics3", "llava-next"]
# The published template each tiny model carries (SmolVLM's for Idefics3: the checkpoint radtune's recipes name).
PUBLISHED = {"gemma3": "gemma3/gemma3.jinja", "idefics3": "idefics3/smolvlm.jinja",
             "llava-next": "llava-next/llava_next.jinja"}  # fmt: skip
# What the loss must hold for the answer "Yes.", written from the published formats: Gemma's `model\n{answer}
# <end_of_turn>`, SmolVLM's `Assistant: {answer}<end_of_utterance>` (the space belongs to the answer's first
# byte-level token), LLaVA-NeXT's `[/INST] {answer}</s>` (the `▁` of `▁Yes` decodes to nothing at the start).
LOSS_TEXT = {"gemma3": "Yes.<end_of_turn>", "idefics3": " Yes.<end_of_utterance>", "llava-next": "Yes.</s>"}
END_OF_TURN = {"gemma3": "<end_of_turn>", "idefics3": "<end_of_utterance>", "llava-next": "</s>"}
# The documented prompt of each family (model cards of google/medgemma-4b-it, HuggingFaceTB/SmolVLM-Instruct,
# llava-hf/llava-v1.6-mistral-7b-hf), for one image and the question "Is there a nodule?".
PROMPT = {
    "gemma3": "<bos><start_of_turn>user\n<start_of_image>Is there a nodule?<end_of_turn>\n<start_of_turn>model\n",
    "idefics3": "<|im_start|>User:<image>Is there a nodule?<end_of_utterance>\nAssistant:",
    "llava-next": "[INST] <image>\nIs there a nodule? [/INST]",
}
QUESTION = "Is there a nodule?"


def _conversation(answer: str | None = "Yes.") -> list[dict]:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _processor(folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def _training_batch(processor, images, max_length=None):
    """A batch as `VQASFTTrainer` builds it: TRL's collator (assistant-only loss) wrapped as the trainer wraps it."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from radtune.llava_vqa.trainer import ImageTokensKeptCollator

    collator = DataCollatorForVisionLanguageModeling(processor=processor, assistant_only_loss=True)
    if max_length is not None:
        collator = ImageTokensKeptCollator(collator, max_length, processor.image_token_ids)
    collator = BOSFirstCollator(collator, processor.tokenizer.bos_token_id)
    return collator([{"messages": _conversation(answer), "images": [image]}
                     for answer, image in zip(["Yes.", "No, there is not."], images, strict=True)])  # fmt: skip


def _image(width=32, height=32):
    return Image.new("RGB", (width, height), (90, 90, 90))


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_family_has_the_published_template_and_real_special_tokens(tiny_model, kind):
    from transformers import AutoModelForImageTextToText

    folder = tiny_model(kind)
    processor = _processor(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert processor.chat_template == (FIXTURES / PUBLISHED[kind]).read_text(encoding="utf-8")  # byte for byte
    rendered = processor.apply_chat_template(_conversation(None), add_generation_prompt=True, tokenize=False)
    assert rendered == PROMPT[kind]
    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN[kind])
    eos = model.generation_config.eos_token_id
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])  # generation stops at the end of the turn
    assert model.config.image_token_id == processor.image_token_ids[0]
    assert "torchvision" not in sys.modules  # the PIL image processors, never the torchvision ones
    if kind == "gemma3":
        assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<bos>", "<eos>", "<pad>")
        assert [tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id] == [0, 1, 2]  # as published
        assert tokenizer.image_token == "<image_soft_token>" and tokenizer.boi_token == "<start_of_image>"
    if kind == "idefics3":
        assert (tokenizer.bos_token, tokenizer.eos_token) == ("<|im_start|>", "<end_of_utterance>")
        assert "<fake_token_around_image>" in tokenizer.get_vocab() and "<global-img>" in tokenizer.get_vocab()


@pytest.mark.parametrize("kind", KINDS)
def test_published_template_is_repaired_and_the_loss_is_the_answer_and_its_end_of_turn(tiny_model, kind):
    processor = _processor(tiny_model(kind))
    assert any("marks no answer" in problem for problem in chat_template_problems(processor))
    notice = ensure_training_chat_template(processor)
    assert notice and FAMILIES[kind].title in notice and END_OF_TURN[kind] in notice
    assert chat_template_problems(processor) == [] and ensure_training_chat_template(processor) is None
    # The repaired template renders the published text, prompt and answer alike.
    published = (FIXTURES / PUBLISHED[kind]).read_text(encoding="utf-8")
    for messages, prompt in ((_conversation(), False), (_conversation(None), True)):
        assert processor.apply_chat_template(messages, add_generation_prompt=prompt, tokenize=False) == (
            processor.apply_chat_template(messages, chat_template=published, add_generation_prompt=prompt,
                                          tokenize=False))  # fmt: skip

    tokenizer = processor.tokenizer
    batch = _training_batch(processor, [_image(), _image(48, 32)])
    first_labels = batch["labels"][0][batch["labels"][0] != -100]
    assert tokenizer.decode(first_labels) == LOSS_TEXT[kind]
    assert first_labels[-1] == tokenizer.convert_tokens_to_ids(END_OF_TURN[kind])
    second_labels = batch["labels"][1][batch["labels"][1] != -100]
    assert tokenizer.decode(second_labels).strip() == "No, there is not." + END_OF_TURN[kind]
    # One BOS at the start of every row, whether the template writes it (Gemma 3, SmolVLM) or the tokenizer adds it.
    assert (batch["input_ids"][:, 0] == tokenizer.bos_token_id).all()
    assert ((batch["input_ids"] == tokenizer.bos_token_id).sum(dim=1) == 1).all()

    # The family's own inputs, checked against the processors' published rules for these sizes.
    image_ids = torch.tensor(processor.image_token_ids)
    if kind == "gemma3":  # 1 on the 4 soft tokens of the image (32 px / 8-px patches pooled 2×2), 0 elsewhere
        assert torch.equal(batch["token_type_ids"].bool(), torch.isin(batch["input_ids"], image_ids))
        assert (batch["token_type_ids"].sum(dim=1) == 4).all()
    if kind == "idefics3":  # 32 px → 64 px longest edge → 2×2 tiles of 32 px + the whole image
        assert batch["pixel_values"].shape[:3] == (2, 5, 3) and batch["pixel_attention_mask"].shape[:2] == (2, 5)
        assert (torch.isin(batch["input_ids"], image_ids).sum(dim=1) == 5 * 4).all()  # 16 patches / 2² each
    if kind == "llava-next":  # image_sizes as given (height, width); tiles: the base image + the chosen grid
        assert batch["image_sizes"].tolist() == [[32, 32], [32, 48]]
        assert batch["pixel_values"].dim() == 5


@pytest.mark.parametrize("kind", KINDS)
def test_max_length_cuts_text_after_the_images_never_the_image_tokens(tiny_model, kind):
    processor = _processor(tiny_model(kind))
    ensure_training_chat_template(processor)
    whole = _training_batch(processor, [_image(), _image()])
    image_ids = torch.tensor(processor.image_token_ids)
    last_image = int(torch.isin(whole["input_ids"][0], image_ids).nonzero().max())
    bos_added = 0 if FAMILIES[kind].template_writes_bos else 1  # BOSFirstCollator puts it after the cut
    with pytest.raises(ValueError, match="--max_length .* would cut the image tokens"):
        _training_batch(processor, [_image(), _image()], max_length=last_image - bos_added)
    cut = _training_batch(processor, [_image(), _image()], max_length=last_image + 2 - bos_added)
    assert cut["input_ids"].shape[1] == last_image + 2
    assert torch.equal(cut["input_ids"], whole["input_ids"][:, : last_image + 2])


@pytest.mark.parametrize("kind", KINDS)
def test_lora_targets_the_language_model_by_default(tiny_model, kind, train_args, qa_dataset_dir, tmp_path):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from radtune.llava_vqa.train import lora_config

    family = FAMILIES[kind]
    names = {}
    for flags in ((), ("--train_vision_tower", "true", "--train_projector", "true")):
        script_args, _, model_args = train_args(tiny_model(kind), qa_dataset_dir, tmp_path, *flags)
        model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_model(kind)),
                               lora_config(script_args, model_args, kind))  # fmt: skip
        names[flags] = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A" in name}
        saved = {
            name for name, parameter in model.named_parameters() if parameter.requires_grad and "lora_" not in name
        }
    default, everything = names.values()
    # 2 layers × (q, k, v, o, gate, up, down) in the language model, nothing elsewhere.
    assert len(default) == 2 * 7 and all(f".{family.language_model}." in name for name in default)
    vision = everything - default
    assert len(vision) == 2 * 6 and all(f".{family.vision_tower}." in name for name in vision)  # q k v out fc1 fc2
    assert saved and all(f".{family.projector}." in name for name in saved)  # trained fully with --train_projector


def test_every_vqa_recipe_names_a_checkpoint_of_a_family_with_a_tiny_kind():
    import yaml

    from radtune.common.tiny import tiny_kinds
    from radtune.llava_vqa.families import family_of_checkpoint

    recipes = sorted((Path(__file__).parents[2] / "packages" / "llava_vqa" / "recipes").glob("*.yaml"))
    named = {recipe.stem: yaml.safe_load(recipe.read_text())["model_name_or_path"] for recipe in recipes}
    kinds = {stem: family_of_checkpoint(model).name for stem, model in named.items() if not model.startswith("runs/")}
    assert {stem: kinds[stem] for stem in ("medgemma_vqa_rad", "medgemma_slake", "smolvlm_slake", "llava_next_vqa_rad",
                                           "vqa_rad", "slake")} == {
        "medgemma_vqa_rad": "gemma3", "medgemma_slake": "gemma3", "smolvlm_slake": "idefics3",
        "llava_next_vqa_rad": "llava-next", "vqa_rad": "llava", "slake": "llava"}  # fmt: skip
    assert set(kinds.values()) <= set(tiny_kinds())
    for stem in ("medgemma_vqa_rad", "medgemma_slake"):  # gated, under Google's terms: the header says so
        header = (recipes[0].parent / f"{stem}.yaml").read_text().split("\nmodel_name_or_path")[0]
        assert "Health AI Developer Foundations" in header and "gated" in header


def test_medgemma_cards_name_the_health_ai_developer_foundations_terms(tmp_path):
    from radtune.common.model_card import build_model_card

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "google/medgemma-4b-it"}))
    card = str(build_model_card(tmp_path, "me/medgemma-vqa-rad", base_model="google/medgemma-4b-it"))
    assert "license_name: health-ai-developer-foundations" in card
    assert "https://developers.google.com/health-ai-developer-foundations/terms" in card.split("---", 2)[2]
    llava = str(build_model_card(tmp_path, "me/llava", base_model="llava-hf/llava-1.5-7b-hf"))
    assert "health-ai-developer-foundations" not in llava


@pytest.mark.parametrize("kind", KINDS)
def test_qlora_trains_a_step_on_cpu(tiny_model, kind, train_args, qa_dataset_dir, tmp_path):
    import bitsandbytes as bnb

    from radtune.llava_vqa.train import build_trainer

    args = train_args(tiny_model(kind), qa_dataset_dir, tmp_path, "--max_steps", "1", "--load_in_4bit", "true")
    trainer, _ = build_trainer(*args)
    quantised = [name for name, module in trainer.model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert any(f".{FAMILIES[kind].language_model}." in name for name in quantised)
    lora = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in name for name in lora)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(value, after[name].detach()) for name, value in lora.items())


@pytest.fixture(scope="session")
def family_runs(tiny_model, qa_dataset_dir, train_args, tmp_path_factory):
    """`family_runs(kind)`: one short LoRA run per family (output folder, results, initial adapter weights)."""
    from radtune.llava_vqa.train import main

    runs = {}

    def get(kind):
        if kind not in runs:
            out_dir = tmp_path_factory.mktemp(f"run-{kind}")
            results = main(*train_args(tiny_model(kind), qa_dataset_dir, out_dir, "--use_peft", "true", "--max_steps",
                                       "3", "--eval_ablation", "false", "--max_eval_samples", "4"))  # fmt: skip
            runs[kind] = out_dir, results
        return runs[kind]

    return get


@pytest.mark.parametrize("kind", KINDS)
def test_family_trains_evaluates_predicts_on_a_dicom_and_merges(family_runs, qa_dataset_dir, tiny_model, kind,
                                                                 tmp_path):  # fmt: skip
    from pydicom.data import get_testdata_file
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from radtune.llava_vqa.inference import load_vqa_model

    out_dir, results = family_runs(kind)
    assert torch.isfinite(torch.tensor(results["train"]["train_loss"]))
    info = json.loads((out_dir / "run_info.json").read_text())
    assert info["family"] == kind and info["chat_template"] == "radtune"
    adapter = load_file(out_dir / "adapter_model.safetensors")
    lora_b = [value for name, value in adapter.items() if "lora_B" in name]
    assert lora_b and any(value.abs().sum() > 0 for value in lora_b)  # LoRA's B starts at zero: training moved it
    assert all(f".{FAMILIES[kind].language_model}." in name for name in adapter)
    assert 0.0 <= results["test"]["metrics"]["strict/closed_accuracy"] <= 1.0

    runner = CliRunner()
    result = runner.invoke(cli, ["vqa", "evaluate", "--model", str(out_dir), "--dataset", str(qa_dataset_dir),
                                 "--split", "test", "--out", str(tmp_path / "eval"), "--max-samples", "4",
                                 "--no-ablation", "--n-resamples", "20"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["metrics"]["n_closed"] == 4 and 0.0 <= report["metrics"]["strict/closed_accuracy"] <= 1.0

    result = runner.invoke(cli, ["vqa", "predict", "--model", str(out_dir), "--image", get_testdata_file("CT_small.dcm"),
                                 "--question", QUESTION, "--max-new-tokens", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output

    merged_dir = tmp_path / "merged"
    result = runner.invoke(cli, ["vqa", "merge", "--model", str(out_dir), "--out", str(merged_dir)])
    assert result.exit_code == 0, result.output
    # Plain transformers, the family's documented usage: the chat template, tokenized by the processor.
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    processor = AutoProcessor.from_pretrained(merged_dir)
    messages = [
        {"role": "user", "content": [{"type": "image", "image": _image()}, {"type": "text", "text": QUESTION}]}
    ]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")  # fmt: skip
    assert (inputs["input_ids"][0] == processor.tokenizer.bos_token_id).sum() == 1
    adapted, _ = load_vqa_model(out_dir, device="cpu")
    with torch.no_grad():
        expected = adapted(**inputs).logits
        torch.testing.assert_close(
            merged(**inputs).logits, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max())
        )
        output = merged.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]
