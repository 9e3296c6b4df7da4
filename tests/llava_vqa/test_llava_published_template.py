"""LLaVA-1.5 as llava-hf publishes it (tests/fixtures/llava-1.5-7b-hf: config, tokenizer config, chat template,
generation config), with only the sizes and the vocabulary made tiny: radtune repairs the published template with a
notice; training batches start with one BOS and put exactly the answer and its `</s>` in the loss; inference and
plain transformers code build the documented prompt `USER: <image>\\n{question} ASSISTANT:` with one BOS; generation
stops at EOS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from radtune.llava_vqa.chat_template import LLAVA_CHAT_TEMPLATE, chat_template_problems
from radtune.llava_vqa.inference import ensure_training_chat_template, generate_answers, inference_prompt
from radtune.llava_vqa.tiny import build_published_llava

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "llava-1.5-7b-hf"
PUBLISHED_TEMPLATE = json.loads((FIXTURE / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
BOS, EOS, IMAGE, PAD = 1, 2, 32000, 32001  # llava-hf's ids (tokenizer_config.json, config.json)
QUESTION = "Is there a pleural effusion?"


def _image(side=40):
    return Image.new("RGB", (side, 36), color=(90, 120, 160))


def _messages(question=QUESTION, answer=None):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return build_published_llava(FIXTURE, tmp_path_factory.mktemp("llava-1.5-7b-hf-tiny"))


def _processor(folder):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(folder)


def test_the_fixture_holds_what_the_code_depends_on():
    tokenizer_config = json.loads((FIXTURE / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert tokenizer_config["add_bos_token"] is True and tokenizer_config["add_eos_token"] is False
    added = {int(i): token["content"] for i, token in tokenizer_config["added_tokens_decoder"].items()}
    assert added == {0: "<unk>", 1: "<s>", 2: "</s>", IMAGE: "<image>", PAD: "<pad>"}
    assert tokenizer_config["padding_side"] == "left" and tokenizer_config["pad_token"] == "<pad>"
    config = json.loads((FIXTURE / "config.json").read_text(encoding="utf-8"))
    assert (config["image_token_index"], config["pad_token_id"], config["text_config"]["vocab_size"]) == (
        IMAGE, PAD, 32064)  # fmt: skip
    # The published mark holds the answer and a space: no </s>, and nothing writes a BOS.
    assert "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}" in PUBLISHED_TEMPLATE
    assert "eos_token" not in PUBLISHED_TEMPLATE and "bos_token" not in PUBLISHED_TEMPLATE


def test_the_tiny_copy_keeps_the_published_tokenizer(published):
    processor = _processor(published)
    tokenizer = processor.tokenizer
    assert processor.chat_template == PUBLISHED_TEMPLATE
    assert tokenizer.convert_tokens_to_ids(["<s>", "</s>", "<image>", "<pad>"]) == [BOS, EOS, IMAGE, PAD]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (BOS, EOS, PAD)
    assert tokenizer.padding_side == "left"
    ids = tokenizer("Is there an effusion?").input_ids
    assert ids[0] == BOS and ids.count(BOS) == 1 and EOS not in ids  # add_bos_token, not add_eos_token


def test_the_published_template_is_repaired_with_a_one_line_notice(published, capsys):
    processor = _processor(published)
    problems = chat_template_problems(processor)
    assert len(problems) == 1 and "</s> outside the answer's {% generation %} mark" in problems[0]
    notice = ensure_training_chat_template(processor)
    printed = capsys.readouterr().out
    assert printed == notice + "\n" and "\n" not in notice and notice.startswith("notice: ")
    assert "learn to stop" in notice and "LLaVA-1.5 template" in notice
    assert processor.chat_template == LLAVA_CHAT_TEMPLATE == processor.tokenizer.chat_template
    assert chat_template_problems(processor) == [] and ensure_training_chat_template(processor) is None
    # radtune's own template passes as it is; one that writes its own BOS is replaced.
    processor.chat_template = "{{ bos_token }}" + LLAVA_CHAT_TEMPLATE
    assert any("prompts would start with two" in problem for problem in chat_template_problems(processor))


def test_the_inference_prompt_is_the_documented_one_with_one_bos(published):
    """llava-hf's usage: `processor(images=…, text=prompt)` with the tokenizer's defaults, prompt
    `USER: <image>\\n{question} ASSISTANT:`; the repaired template renders the same prompt as the published one."""
    processor = _processor(published)
    documented = f"USER: <image>\n{QUESTION} ASSISTANT:"
    assert inference_prompt(processor, QUESTION) == documented  # the published template
    ensure_training_chat_template(processor)
    assert inference_prompt(processor, QUESTION) == documented  # radtune's
    usage = processor(images=_image(), text=documented, return_tensors="pt")["input_ids"][0].tolist()
    assert usage[0] == BOS and usage.count(BOS) == 1 and usage[-1] != EOS
    # Plain transformers code on a repaired (e.g. merged) model: apply_chat_template, then the processor's defaults.
    rendered = processor.apply_chat_template(_messages(), add_generation_prompt=True)
    plain = processor(images=_image(), text=rendered, return_tensors="pt")["input_ids"][0].tolist()
    with_image = [
        {"role": "user", "content": [{"type": "image", "image": _image()}, {"type": "text", "text": QUESTION}]}
    ]
    tokenized = processor.apply_chat_template(with_image, add_generation_prompt=True, tokenize=True, return_dict=True,
                                              return_tensors="pt")  # fmt: skip
    assert plain == usage and tokenized["input_ids"][0].tolist() == usage


def test_radtune_vqa_answers_from_the_documented_input_and_stops_at_eos(published):
    """`generate_answers` (evaluate, predict, the trainer's generation eval) feeds the model exactly the documented
    usage's input ids, one BOS first (left padding), and generation ends at the published EOS."""
    from transformers import LlavaForConditionalGeneration

    processor = _processor(published)
    ensure_training_chat_template(processor)
    model = LlavaForConditionalGeneration.from_pretrained(published).eval()
    # A head that always says </s>: the answer must end after one token, not run to max_new_tokens.
    hidden = model.config.text_config.hidden_size
    model.lm_head = torch.nn.Linear(hidden, model.config.text_config.vocab_size, bias=True)
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[EOS] = 1.0
    calls = []
    generate = model.generate

    def spy(**inputs):
        output = generate(**inputs)
        calls.append((inputs["input_ids"].clone(), inputs["attention_mask"].clone(), output))
        return output

    model.generate = spy
    questions = [QUESTION, "Is the heart enlarged on this frontal radiograph?"]
    answers = generate_answers(model, processor, [_image(), _image(48)], questions, batch_size=2, max_new_tokens=5,
                               progress=False)  # fmt: skip
    assert answers == ["", ""]
    ((input_ids, attention_mask, output),) = calls
    assert output.shape[1] == input_ids.shape[1] + 1 and (output[:, -1] == EOS).all()
    for row, mask, question in zip(input_ids, attention_mask, questions, strict=True):
        real = row[mask.bool()].tolist()
        documented = processor(images=_image(), text=f"USER: <image>\n{question} ASSISTANT:")["input_ids"][0]
        assert real == list(documented) and real[0] == BOS and real.count(BOS) == 1


def test_training_on_the_published_model_puts_one_bos_first_and_the_answer_and_eos_in_the_loss(
    published, train_args, qa_dataset_dir, tmp_path, capsys
):
    from radtune.llava_vqa.train import build_trainer

    trainer, _ = build_trainer(*train_args(published, qa_dataset_dir, tmp_path, "--max_steps", "1"))
    assert "notice: the chat template of" in capsys.readouterr().out  # the published template, repaired
    processor = trainer.processing_class
    assert processor.chat_template == LLAVA_CHAT_TEMPLATE
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = processor.tokenizer
    answers = {
        tuple(tokenizer(" " + answer, add_special_tokens=False).input_ids + [EOS]) for answer in ("Yes.", "No.")
    }
    for input_ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        real = input_ids[mask.bool()].tolist()
        assert real[0] == BOS and real.count(BOS) == 1  # right padding: the BOS is the first token
        assert IMAGE in real
        kept = labels != -100
        assert torch.equal(labels[kept], input_ids[kept])
        assert tuple(labels[kept].tolist()) in answers  # exactly " Yes.</s>" or " No.</s>": no prompt, no image
    # The prompt part of a row is the inference prompt with its BOS: training and inference see the same tokens.
    first = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    prompt = processor(images=_image(), text="USER: <image>\nIs there a nodule? ASSISTANT:")["input_ids"][0]
    assert first[: len(prompt)] == list(prompt)


def test_radtune_tiny_llava_gives_one_bos_through_plain_transformers(tiny_model):
    """A model radtune trained or merged carries radtune's template: plain `processor(text=apply_chat_template(…))`
    gets one BOS (the template writes none; the tokenizer adds it)."""
    processor = _processor(tiny_model("llava"))
    bos = processor.tokenizer.bos_token_id
    rendered = processor.apply_chat_template(_messages(), add_generation_prompt=True)
    assert rendered == f"USER: <image>\n{QUESTION} ASSISTANT:"
    ids = processor(images=_image(), text=rendered)["input_ids"][0]
    assert ids[0] == bos and list(ids).count(bos) == 1
    full = processor.apply_chat_template(_messages(answer="Yes."))
    assert full == f"USER: <image>\n{QUESTION} ASSISTANT: Yes.</s>"


def test_the_bos_goes_in_front_once():
    """`BOSFirstCollator`: BOS first with attention 1 and label -100, other per-token tensors 0; rows that already
    start with the BOS (a template that writes it) are left as they are."""
    from radtune.llava_vqa.chat_template import BOSFirstCollator

    batch = {"input_ids": torch.tensor([[5, 6, 0], [7, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 0, 0]]),
             "labels": torch.tensor([[-100, 6, -100], [7, -100, -100]]), "token_type_ids": torch.ones(2, 3, dtype=int),
             "pixel_values": torch.zeros(2, 3, 4, 4)}  # fmt: skip
    out = BOSFirstCollator(lambda examples: dict(batch), BOS)([])
    assert out["input_ids"].tolist() == [[BOS, 5, 6, 0], [BOS, 7, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert out["labels"].tolist() == [[-100, -100, 6, -100], [-100, 7, -100, -100]]
    assert out["token_type_ids"].tolist() == [[0, 1, 1, 1], [0, 1, 1, 1]]
    assert out["pixel_values"].shape == (2, 3, 4, 4)
    already = {"input_ids": torch.tensor([[BOS, 5], [BOS, 7]]), "attention_mask": torch.ones(2, 2, dtype=int)}
    assert BOSFirstCollator(lambda examples: dict(already), BOS)([])["input_ids"].tolist() == [[BOS, 5], [BOS, 7]]
