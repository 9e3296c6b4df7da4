"""End-to-end: each architecture trains a few steps through `main([...])` in-process on generated data, then the
saved model (or adapter) evaluates and predicts through the CLI, reading what the run recorded and leaving its files
as they were."""

from __future__ import annotations

import json
import math

import pytest
import torch
from captioning_data import make_image
from click.testing import CliRunner

from radtune.common.config import parse_args_and_config
from radtune.common.config import run_main as run_module

pytestmark = pytest.mark.slow

FAST = ["--use_cpu", "--report_to", "none", "--dataloader_num_workers", "0", "--per_device_train_batch_size", "4",
        "--logging_steps", "1", "--max_new_tokens", "6", "--meteor", "false", "--learning_rate", "5e-3"]  # fmt: skip


def run_main(module, args):
    return run_module(module.main, module.make_parser, args)


def saved_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _train(tmp_path_factory, tiny_model, caption_dataset, architecture, peft, extra=()):
    from radtune.captioning import train

    kind = {"vit-gpt2": "vit-gpt2", "blip": "blip-caption"}[architecture]
    out = tmp_path_factory.mktemp(f"run-{architecture}-{'lora' if peft else 'full'}")
    args = ["--architecture", architecture, "--model_name_or_path", str(tiny_model(kind)), "--dataset_name", str(caption_dataset),
            "--output_dir", str(out), "--max_steps", "3", "--eval_strategy", "no", *FAST, *extra]  # fmt: skip
    if peft:
        args += ["--use_peft", "--lora_r", "4", "--lora_alpha", "8"]
    trainer = run_main(train, args)
    return trainer, out


@pytest.fixture(scope="module")
def vitgpt2_lora(tmp_path_factory, tiny_model, caption_dataset):
    # evaluates during training too, to run the streamed generation metrics (radtune.common.generation_eval)
    return _train(tmp_path_factory, tiny_model, caption_dataset, "vit-gpt2", True,
                  ["--text_column", "report", "--eval_strategy", "steps", "--eval_steps", "3"])  # fmt: skip


@pytest.fixture(scope="module")
def blip_full(tmp_path_factory, tiny_model, caption_dataset):
    return _train(tmp_path_factory, tiny_model, caption_dataset, "blip", False,
                  ["--text_column", "impression", "--eval_ablation", "false"])  # fmt: skip


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
    assert metrics["meta"]["task"] == "captioning" and metrics["meta"]["text_column"] == "report"
    assert metrics["meta"]["image_ablation"]["metric"] == "cider"  # the final evaluation's ablation is on by default
    assert {"ablation/blank/cider", "ablation/noise/cider"} <= set(metrics["metrics"])
    info = json.loads((out / "run_info.json").read_text())
    assert info["task"] == "captioning" and info["architecture"] == "vit-gpt2" and info["use_peft"] is True
    assert info["text_column"] == "report" and info["image_column"] == "image"
    assert info["base_model"] == str(tiny_model("vit-gpt2"))
    assert info["max_new_tokens"] == 6 and info["num_beams"] == 1
    test_results = json.loads((out / "test_results.json").read_text())
    assert test_results["cider"] == pytest.approx(metrics["metrics"]["cider"])  # printed and saved by the trainer


def test_blip_full_fine_tuning_changes_weights(blip_full, tiny_model):
    trainer, out = blip_full
    assert all(math.isfinite(loss) for loss in _losses(trainer))
    before, after = saved_weights(tiny_model("blip-caption")), saved_weights(out)
    changed = [key for key in before if key in after and not torch.equal(before[key], after[key])]
    assert any(key.startswith("text_decoder.") for key in changed)
    assert any(key.startswith("vision_model.") for key in changed)
    rows = (out / "evaluation_results.csv").read_text().splitlines()
    assert rows[0] == "id,prediction,references" and len(rows) == 5  # header + 4 test rows
    assert "image_ablation" not in json.loads((out / "metrics.json").read_text())["meta"]  # --eval_ablation false


@pytest.mark.parametrize("architecture,peft", [("vit-gpt2", False), ("blip", True)])
def test_other_architecture_and_mode_combinations_train(tmp_path_factory, tiny_model, caption_dataset, architecture,
                                                        peft):  # fmt: skip
    extra = ["--max_steps", "2", "--eval_after_training", "false", "--train_fraction", "0.5"]
    trainer, out = _train(tmp_path_factory, tiny_model, caption_dataset, architecture, peft, extra)
    assert all(math.isfinite(loss) for loss in _losses(trainer))
    assert trainer.state.global_step == 2
    assert len(trainer.train_dataset) == 8  # half of the 16 training rows
    assert not (out / "metrics.json").exists()  # no final evaluation
    if peft:
        _assert_lora_only_changed(trainer, tiny_model("blip-caption"))


def test_lora_cross_attention_adds_cross_attention_targets(tmp_path_factory, tiny_model, caption_dataset):
    from peft import get_peft_model
    from transformers import VisionEncoderDecoderModel

    from radtune.captioning.train import lora_config, make_parser

    script_args, _, model_args = parse_args_and_config(
        make_parser(), ["--dataset_name", str(caption_dataset), "--use_peft", "--lora_cross_attention"]
    )
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
    # scored by the one VQA scorer: intervals, the training split's majority answers, the image-ablation check
    assert "strict/closed_accuracy" in metrics["ci"] and metrics["meta"]["image_ablation"]["metric"]
    assert metrics["metrics"]["majority_baseline/strict/closed_accuracy"] == 1.0
    header = (out / "evaluation_results.csv").read_text().splitlines()[0]
    assert header == "id,prediction,references,question,answer,answer_type"
    info = json.loads((out / "run_info.json").read_text())
    assert info["task"] == "blip-vqa" and info["architecture"] == "blip" and info["max_new_tokens"] == 6
    assert info["base_model"] == str(tiny_model("blip-vqa"))

    # `radtune caption evaluate` on the run: the same evaluator and defaults, into a new folder beside the run's files
    from radtune.common.cli import cli

    result = CliRunner().invoke(cli, ["caption", "evaluate", "--model", str(out), "--dataset", str(vqa_dataset)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads((out / "eval-caption-test" / "metrics.json").read_text())
    assert evaluated["metrics"] == pytest.approx(metrics["metrics"], nan_ok=True)
    assert evaluated["meta"]["seed"] == metrics["meta"]["seed"] == 42


def test_invalid_arguments_name_the_field(caption_dataset, capsys):
    from radtune.captioning.train import make_parser

    for args, named in ((["--architecture", "gpt4"], "architecture"), (["--text_column", "summary"], "text_column"),
                        (["--train_fraction", "0"], "train_fraction"), (["--encoder", "x"], "encoder"),
                        (["--eval_batch_size", "0"], "eval_batch_size")):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args_and_config(make_parser(), ["--dataset_name", str(caption_dataset), *args])
        assert named in capsys.readouterr().err
    # (--arch, --resume and --hub_private are prefixes of today's names, which argparse accepts as abbreviations)
    for removed in ("--text_field", "--image_field", "--hub_repo_id", "--eval_batch_size_generate"):
        with pytest.raises(SystemExit):
            parse_args_and_config(make_parser(), ["--dataset_name", str(caption_dataset), removed, "x"])
        assert removed in capsys.readouterr().err


def test_a_missing_split_is_a_short_error_naming_the_splits(tmp_path, tiny_model, caption_dataset, capsys):
    from radtune.captioning import train

    with pytest.raises(SystemExit):
        run_main(train, ["--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name", str(caption_dataset),
                         "--output_dir", str(tmp_path), "--dataset_train_split", "nope", *FAST])  # fmt: skip
    err = capsys.readouterr().err
    assert "'nope'" in err and "train, validation, test" in err and "Traceback" not in err


# ---- evaluate / predict through the CLI, on what the trainings above saved ----


def test_evaluate_writes_csv_and_metrics_for_an_adapter(vitgpt2_lora, caption_dataset, tmp_path):
    from radtune.common.cli import cli

    _, out = vitgpt2_lora
    result = CliRunner().invoke(cli, [
        "caption", "evaluate", "--model", str(out), "--dataset", str(caption_dataset), "--split", "test",
        "--out", str(tmp_path), "--text-column", "impression", "--no-meteor", "--batch-size", "3",
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
    common = ["--architecture", "vit-gpt2", "--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name",
              str(caption_dataset), "--output_dir", str(out), "--eval_strategy", "no", "--eval_after_training",
              "false", "--save_strategy", "steps", "--save_steps", "2", *FAST]  # fmt: skip
    run_main(train, [*common, "--max_steps", "2"])
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"resume_marker": 1.0, "step": 2})  # only a resumed run can carry this
    state_file.write_text(json.dumps(state))
    resumed = run_main(train, [*common, "--max_steps", "3", "--resume_from_checkpoint", "last"])
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
        "--architecture", "vit-gpt2", "--encoder", str(parts / "encoder"), "--decoder", str(parts / "decoder"),
        "--dataset_name", str(caption_dataset), "--output_dir", str(out), "--max_steps", "2", "--use_peft",
        "--eval_strategy", "no", "--eval_after_training", "false", *FAST,
    ])  # fmt: skip
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert any("crossattention" in name and "lora_" not in name for name in trainable)  # trained in full
    assert any("lora_" in name for name in trainable)
    info = json.loads((out / "run_info.json").read_text())
    assert info["base_model"] is None and info["encoder"] == str(parts / "encoder")
    captioner = load_captioner(out, device="cpu")  # the run's saved composed base
    assert captioner.architecture == "vit-gpt2" and isinstance(captioner.generate([make_image(0)])[0], str)


def test_evaluate_reads_the_run_and_leaves_its_files_byte_identical(vitgpt2_lora, caption_dataset):
    from radtune.common.cli import cli
    from radtune.common.metrics.io import read_metrics, read_results

    _, out = vitgpt2_lora
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    args = ["caption", "evaluate", "--model", str(out), "--dataset", str(caption_dataset), "--no-meteor",
            "--no-ablation", "--n-resamples", "50"]  # fmt: skip
    for _ in range(2):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    after = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    new = sorted(str(path.relative_to(out)) for path in set(after) - set(before))
    assert new == sorted(f"{folder}/{name}" for folder in ("eval-caption-test", "eval-caption-test-2")
                         for name in ("evaluation_results.csv", "metrics.json"))  # fmt: skip
    assert all(after[path] == data for path, data in before.items()), "the run's own files changed"
    # the run trained on `report` (findings + impression): that is the reference, not `caption`/`text`
    test = caption_dataset_rows(caption_dataset, "test")
    rows = read_results(out / "eval-caption-test")
    references = [[f"{f} {i}"] for f, i in zip(test["findings"], test["impression"], strict=True)]
    assert [row["references"] for row in rows] == references
    meta = read_metrics(out / "eval-caption-test")["meta"]
    assert meta["text_column"] == "report" and meta["model"] == str(out) and meta["seed"] == 42


def caption_dataset_rows(path, split):
    from radtune.common.datasets_io import load_dataset_any

    return load_dataset_any(path, split=split).remove_columns("image")


def test_a_run_with_only_checkpoints_names_them(tmp_path, caption_dataset):
    from radtune.common.cli import cli

    run = tmp_path / "run"
    for step in (2, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    for command in (["evaluate", "--dataset", str(caption_dataset)], ["predict", "--image", "x.png"]):
        result = CliRunner().invoke(cli, ["caption", command[0], "--model", str(run), *command[1:]])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "checkpoint-2, checkpoint-10" in result.output and f"--model {run / 'checkpoint-10'}" in result.output
    assert not (run / "eval-caption-test").exists() or not any((run / "eval-caption-test").iterdir())


def test_evaluate_refuses_to_write_into_a_run(vitgpt2_lora, caption_dataset):
    from radtune.common.cli import cli

    _, out = vitgpt2_lora
    result = CliRunner().invoke(cli, ["caption", "evaluate", "--model", str(out), "--dataset", str(caption_dataset),
                                      "--out", str(out)])  # fmt: skip
    assert result.exit_code != 0 and "training run's folder" in result.output


def test_build_trainer_is_public_and_seeds_the_lora_initialisation(tmp_path, tiny_model, caption_dataset):
    from radtune.captioning import train

    def lora_a(seed):
        args = ["--model_name_or_path", str(tiny_model("vit-gpt2")), "--dataset_name", str(caption_dataset),
                "--output_dir", str(tmp_path / str(seed)), "--use_peft", "--seed", str(seed), *FAST]  # fmt: skip
        trainer, splits = train.build_trainer(*parse_args_and_config(train.make_parser(), args))
        assert len(splits.train) == 16 and splits.eval_split == "validation" and splits.test_split == "test"
        return {name: p.detach().clone() for name, p in trainer.model.named_parameters() if "lora_A" in name}

    first, again, other = lora_a(1), lora_a(1), lora_a(2)
    assert all(torch.equal(first[name], again[name]) for name in first)  # a run is reproducible
    assert not all(torch.equal(first[name], other[name]) for name in first)
