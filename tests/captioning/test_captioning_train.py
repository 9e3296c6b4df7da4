"""End-to-end: each arch trains a few steps through `main([...])` in-process on generated data, then the saved
model (or adapter) evaluates and predicts through the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from captioning_data import make_image
from click.testing import CliRunner

from radtune.common.config import parse_args_and_config

pytestmark = pytest.mark.slow

FAST = ["--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--per_device_train_batch_size", "4",
        "--logging_steps", "1", "--max_new_tokens", "6", "--meteor", "false", "--learning_rate", "5e-3"]  # fmt: skip


def run_main(module, args):
    return module.main(*parse_args_and_config(module.make_parser(), args))


def saved_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _train(tmp_path_factory, tiny_model, caption_dataset, arch, peft, extra=()):
    from radtune.captioning import train

    kind = {"vit-gpt2": "vit-gpt2", "blip": "blip-caption"}[arch]
    out = tmp_path_factory.mktemp(f"run-{arch}-{'lora' if peft else 'full'}")
    args = ["--arch", arch, "--model_name_or_path", str(tiny_model(kind)), "--dataset_name", str(caption_dataset),
            "--output_dir", str(out), "--max_steps", "3", "--eval_strategy", "no", *FAST, *extra]  # fmt: skip
    if peft:
        args += ["--use_peft", "--lora_r", "4", "--lora_alpha", "8"]
    trainer = run_main(train, args)
    return trainer, out


@pytest.fixture(scope="module")
def vitgpt2_lora(tmp_path_factory, tiny_model, caption_dataset):
    # evaluates during training too, to run the streamed generation metrics (radtune.common.generation_eval)
    return _train(tmp_path_factory, tiny_model, caption_dataset, "vit-gpt2", True,
                  ["--text_field", "report", "--eval_strategy", "steps", "--eval_steps", "3"])  # fmt: skip


@pytest.fixture(scope="module")
def blip_full(tmp_path_factory, tiny_model, caption_dataset):
    return _train(tmp_path_factory, tiny_model, caption_dataset, "blip", False, ["--text_field", "impression"])


def _losses(trainer):
    return [row["loss"] for row in trainer.state.log_history if "loss" in row]


def _assert_lora_only_changed(trainer, base_folder):
    model = trainer.accelerator.unwrap_model(trainer.model)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable), trainable
    # LoRA's B matrices start at zero: training moved every one of them
    for name, param in model.named_parameters():
        if "lora_B" in name:
            assert param.detach().abs().sum() > 0, f"{name} did not train"
    base = saved_weights(base_folder)
    state = model.get_base_model().state_dict()
    for key, value in base.items():
        if key in state:
            assert torch.equal(state[key].cpu(), value), f"frozen weight {key} changed"


def test_vit_gpt2_lora_trains_only_adapters(vitgpt2_lora, tiny_model):
    trainer, out = vitgpt2_lora
    losses = _losses(trainer)
    assert losses and all(math.isfinite(loss) for loss in losses)
    _assert_lora_only_changed(trainer, tiny_model("vit-gpt2"))
    targets = {name.split(".lora_")[0] for name, _ in trainer.model.named_parameters() if "lora_A" in name}
    assert targets and all(".crossattention." not in name and ".decoder." in name for name in targets)
    assert (out / "adapter_config.json").is_file() and (out / "preprocessor_config.json").is_file()
    assert (out / "loss_curve.png").is_file() and (out / "README.md").is_file()
    assert any("eval_cider" in row for row in trainer.state.log_history)  # metrics during training
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"bleu_1", "bleu_4", "rouge_l", "cider", "clinical_f1/micro"} <= set(metrics["metrics"])
    assert metrics["meta"]["task"] == "captioning" and metrics["meta"]["text_field"] == "report"


def test_blip_full_fine_tuning_changes_weights(blip_full, tiny_model):
    trainer, out = blip_full
    assert all(math.isfinite(loss) for loss in _losses(trainer))
    before, after = saved_weights(tiny_model("blip-caption")), saved_weights(out)
    changed = [key for key in before if key in after and not torch.equal(before[key], after[key])]
    assert any(key.startswith("text_decoder.") for key in changed)
    assert any(key.startswith("vision_model.") for key in changed)
    rows = (out / "evaluation_results.csv").read_text().splitlines()
    assert rows[0] == "id,prediction,references" and len(rows) == 5  # header + 4 test rows


@pytest.mark.parametrize("arch,peft", [("vit-gpt2", False), ("blip", True)])
def test_other_arch_and_mode_combinations_train(tmp_path_factory, tiny_model, caption_dataset, arch, peft):
    trainer, _ = _train(tmp_path_factory, tiny_model, caption_dataset, arch, peft,
                        ["--max_steps", "2", "--dataset_test_split", "none", "--train_fraction", "0.5"])  # fmt: skip
    assert all(math.isfinite(loss) for loss in _losses(trainer))
    assert trainer.state.global_step == 2
    if peft:
        _assert_lora_only_changed(trainer, tiny_model("blip-caption"))


def test_lora_cross_attention_adds_cross_attention_targets(tmp_path_factory, tiny_model, caption_dataset):
    from peft import get_peft_model
    from transformers import VisionEncoderDecoderModel

    from radtune.captioning.train import lora_config, make_parser

    script_args, _, model_args = parse_args_and_config(make_parser(), ["--use_peft", "--lora_cross_attention"])
    model = get_peft_model(VisionEncoderDecoderModel.from_pretrained(tiny_model("vit-gpt2")),
                           lora_config(script_args, model_args))  # fmt: skip
    names = [name for name, _ in model.named_parameters() if "lora_A" in name]
    assert any(".crossattention.q_attn" in name for name in names)
    assert any(".attn.c_attn" in name for name in names) and any(".mlp.c_proj" in name for name in names)


def test_vqa_trains_lora_and_writes_vqa_metrics(tmp_path_factory, tiny_model, vqa_dataset):
    from radtune.captioning import train_vqa

    out = tmp_path_factory.mktemp("run-vqa")
    trainer = run_main(train_vqa, [
        "--model_name_or_path", str(tiny_model("blip-vqa")), "--dataset_name", str(vqa_dataset),
        "--output_dir", str(out), "--max_steps", "3", "--use_peft", "--lora_r", "4",
        "--dataset_eval_split", "test", "--eval_strategy", "steps", "--eval_steps", "3", *FAST[:-4],
    ])  # fmt: skip
    assert all(math.isfinite(loss) for loss in _losses(trainer))
    _assert_lora_only_changed(trainer, tiny_model("blip-vqa"))
    assert any("eval_strict_closed_accuracy" in row for row in trainer.state.log_history)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["meta"]["task"] == "vqa" and "strict/closed_accuracy" in metrics["metrics"]
    header = (out / "evaluation_results.csv").read_text().splitlines()[0]
    assert header == "id,prediction,references,question,answer,answer_type"


def test_invalid_arguments_name_the_field():
    from radtune.captioning.train import make_parser

    for args, named in ((["--arch", "gpt4"], "arch"), (["--text_field", "summary"], "text_field"),
                        (["--train_fraction", "0"], "train_fraction"), (["--encoder", "x"], "encoder")):  # fmt: skip
        with pytest.raises((SystemExit, ValueError)) as error:
            parse_args_and_config(make_parser(), args)
        assert error.type is SystemExit or named in str(error.value)


# ---- evaluate / predict through the CLI, on what the trainings above saved ----


def test_evaluate_writes_csv_and_metrics_for_an_adapter(vitgpt2_lora, caption_dataset, tmp_path):
    from radtune.common.cli import cli

    _, out = vitgpt2_lora
    result = CliRunner().invoke(cli, [
        "caption", "evaluate", "--model", str(out), "--dataset", str(caption_dataset), "--split", "test",
        "--out", str(tmp_path), "--text-field", "impression", "--no-meteor", "--batch-size", "3",
        "--baseline-caption", "No acute cardiopulmonary process.",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "evaluation_results.csv").read_text().splitlines()
    assert rows[0] == "id,prediction,references" and len(rows) == 5
    assert rows[1].startswith("study-0200,")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["meta"]["split"] == "test" and metrics["meta"]["n"] == 4
    assert set(metrics["metrics"]) >= {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"}
    # The constant caption is scored on the same references, through the same metric code.
    from radtune.common.metrics.captioning import caption_metrics
    from radtune.common.metrics.io import read_results

    references = [row["references"] for row in read_results(tmp_path / "evaluation_results.csv")]
    constant = caption_metrics(["No acute cardiopulmonary process."] * 4, references, meteor=False).metrics
    assert metrics["metrics"]["constant_baseline/cider"] == pytest.approx(constant["cider"])


def test_predict_prints_a_caption_for_a_full_model_and_a_dicom(blip_full, tmp_path):
    from pydicom.data import get_testdata_file

    from radtune.common.cli import cli

    _, out = blip_full
    png = tmp_path / "x.png"
    make_image(3).save(png)
    for image in (str(png), get_testdata_file("CT_small.dcm")):
        result = CliRunner().invoke(cli, ["caption", "predict", "--model", str(out), "--image", image])
        assert result.exit_code == 0, result.output
        assert result.output.strip()


def test_predict_rejects_a_question_for_a_captioner(blip_full, tmp_path):
    from radtune.common.cli import cli

    _, out = blip_full
    png = tmp_path / "x.png"
    make_image(3).save(png)
    result = CliRunner().invoke(
        cli, ["caption", "predict", "--model", str(out), "--image", str(png), "--question", "?"]
    )
    assert result.exit_code != 0 and "VQA model" in result.output


def test_resume_continues_from_the_last_checkpoint(tmp_path_factory, tiny_model, caption_dataset):
    from radtune.captioning import train

    out = tmp_path_factory.mktemp("run-resume")
    common = ["--arch", "vit-gpt2", "--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name",
              str(caption_dataset), "--output_dir", str(out), "--eval_strategy", "no", "--dataset_test_split", "none",
              "--save_strategy", "steps", "--save_steps", "2", *FAST]  # fmt: skip
    run_main(train, [*common, "--max_steps", "2"])
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"resume_marker": 1.0, "step": 2})  # only a resumed run can carry this
    state_file.write_text(json.dumps(state))
    resumed = run_main(train, [*common, "--max_steps", "3", "--resume", "true"])
    assert resumed.state.global_step == 3
    assert any("resume_marker" in row for row in resumed.state.log_history)
    assert [row["step"] for row in resumed.state.log_history if "loss" in row][-1] == 3


def test_vit_gpt2_composed_from_encoder_and_decoder_trains_cross_attention_and_loads(
    tmp_path_factory, tiny_model, caption_dataset
):
    from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

    from radtune.captioning import train
    from radtune.captioning.modeling import load_captioner

    parts = tmp_path_factory.mktemp("parts")
    tiny = VisionEncoderDecoderModel.from_pretrained(tiny_model("vit-gpt2"))
    tiny.encoder.save_pretrained(parts / "encoder")
    AutoImageProcessor.from_pretrained(tiny_model("vit-gpt2")).save_pretrained(parts / "encoder")
    tiny.decoder.config.add_cross_attention = False  # a plain language model, as on the Hub
    tiny.decoder.save_pretrained(parts / "decoder")
    AutoTokenizer.from_pretrained(tiny_model("vit-gpt2")).save_pretrained(parts / "decoder")

    out = tmp_path_factory.mktemp("run-composed")
    trainer = run_main(train, [
        "--arch", "vit-gpt2", "--encoder", str(parts / "encoder"), "--decoder", str(parts / "decoder"),
        "--dataset_name", str(caption_dataset), "--output_dir", str(out), "--max_steps", "2", "--use_peft",
        "--eval_strategy", "no", "--dataset_test_split", "none", *FAST,
    ])  # fmt: skip
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("crossattention" in name and "lora_" not in name for name in trainable)  # trained in full
    assert any("lora_" in name for name in trainable)
    captioner = load_captioner(out, device="cpu")  # the adapter names the saved composed base
    assert captioner.arch == "vit-gpt2" and isinstance(captioner.generate([make_image(0)])[0], str)
