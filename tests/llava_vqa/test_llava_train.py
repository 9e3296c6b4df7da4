"""LLaVA VQA training with the tiny LLaVA: LoRA, labels, QLoRA, resume, evaluate, predict, merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from radtune.common.cli import cli
from radtune.common.config import parse_args_and_config
from radtune.llava_vqa.train import build_trainer, main, make_parser

RECIPES = Path(__file__).resolve().parents[2] / "packages" / "llava_vqa" / "recipes"


def test_training_changes_only_lora_weights_and_writes_the_run(train_args, tiny_model, qa_dataset_dir, tmp_path):
    trainer, _ = build_trainer(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "2"))
    model = trainer.model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    # LoRA sits on the language model only: the vision tower and the projector are untouched.
    assert not any("vision_tower" in name or "multi_modal_projector" in name for name in trainable)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
    assert changed and changed <= trainable


def test_main_saves_adapter_processor_metrics_and_card(trained, qa_dataset_dir):
    out_dir, results = trained
    adapter = load_file(out_dir / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert any(value.abs().sum() > 0 for key, value in adapter.items() if "lora_B" in key)
    assert (out_dir / "processor_config.json").is_file() or (out_dir / "tokenizer_config.json").is_file()
    assert (out_dir / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "train_loss" in json.loads((out_dir / "train_results.json").read_text())
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["meta"]["task"] == "vqa" and metrics["meta"]["n"] == 8
    assert 0.0 <= metrics["metrics"]["strict/closed_accuracy"] <= 1.0
    assert results["test"]["metrics"]["n_closed"] == 8
    # The training split's majority answers are scored beside the model, on the same questions.
    assert 0.0 <= metrics["metrics"]["majority_baseline/strict/closed_accuracy"] <= 1.0
    low, high = metrics["ci"]["strict/closed_accuracy"]
    assert low <= metrics["metrics"]["strict/closed_accuracy"] <= high
    card = (out_dir / "README.md").read_text()
    assert "library_name: peft" in card and "radiology" in card
    # The final evaluation's numbers are printed and saved as the test metrics, beside the train metrics.
    assert json.loads((out_dir / "test_results.json").read_text())["strict/closed_accuracy"] == pytest.approx(
        metrics["metrics"]["strict/closed_accuracy"]
    )
    # run_info.json records what evaluation needs to load and score the run as it trained.
    info = json.loads((out_dir / "run_info.json").read_text())
    assert info["task"] == "vqa" and info["base_model"] == str(info["processor"]) and info["quantization"] is None
    assert (info["dataset"], info["train_split"], info["test_split"]) == (str(qa_dataset_dir), "train", "test")
    assert (info["use_peft"], info["dtype"], info["max_new_tokens"], info["seed"]) == (True, "float32", 4, 42)
    assert info["chat_template"] == "radtune" and info["image_column"] == "image"


def test_label_mask_covers_only_assistant_tokens(train_args, tiny_model, qa_dataset_dir, tmp_path):
    trainer, _ = build_trainer(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "1"))
    batch = next(iter(trainer.get_train_dataloader()))
    tokenizer = trainer.processing_class.tokenizer
    for labels, input_ids in zip(batch["labels"], batch["input_ids"], strict=True):
        kept = labels[labels != -100].tolist()
        decoded = tokenizer.decode(kept)
        assert decoded in (" Yes.</s>", " No.</s>")
        assert kept == input_ids[labels != -100].tolist()


def test_qlora_trains_a_step_on_cpu(train_args, tiny_model, qa_dataset_dir, tmp_path):
    trainer, _ = build_trainer(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "1", "--load_in_4bit", "true"))  # fmt: skip
    import bitsandbytes as bnb

    assert any(isinstance(module, bnb.nn.Linear4bit) for module in trainer.model.modules())
    lora = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(value, after[name].detach()) for name, value in lora.items())


def test_qlora_run_records_its_quantisation_and_loading_it_quantises_the_base_model_so(
    train_args, tiny_model, qa_dataset_dir, tmp_path
):
    import bitsandbytes as bnb

    from radtune.llava_vqa.inference import load_vqa_model

    run = tmp_path / "qlora"
    main(*train_args(tiny_model("llava"), qa_dataset_dir, run, "--max_steps", "1", "--load_in_4bit", "true",
                     "--eval_after_training", "false"))  # fmt: skip
    info = json.loads((run / "run_info.json").read_text())
    assert info["quantization"] == {"load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4",
                                    "use_bnb_nested_quant": True, "bnb_4bit_quant_storage": None, "dtype": "float32"}  # fmt: skip

    # Loading the run quantises its base model as training did (TRL's config from the recorded settings) …
    model, _ = load_vqa_model(run, device="cpu")
    assert any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
    config = model.get_base_model().config.quantization_config
    assert (config.bnb_4bit_quant_type, config.bnb_4bit_use_double_quant) == ("nf4", True)
    assert config.bnb_4bit_compute_dtype == torch.float32  # the run's dtype, not a hard-coded bf16
    # … unless told otherwise.
    model, _ = load_vqa_model(run, device="cpu", load_in_4bit=False)
    assert not any(isinstance(module, bnb.nn.Linear4bit) for module in model.modules())
    # (No generation here: bitsandbytes' CPU inference path repacks 4-bit weights in blocks of 64 inputs, more than
    # the tiny model's hidden size of 32.)


def test_resume_continues_from_the_saved_step(train_args, tiny_model, qa_dataset_dir, tmp_path):
    from transformers import TrainerCallback

    common = ["--save_strategy", "steps", "--save_steps", "2", "--eval_after_training", "false"]
    main(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "2", *common))
    assert (tmp_path / "checkpoint-2").is_dir()

    class CountSteps(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    trainer, _ = build_trainer(*train_args(tiny_model("llava"), qa_dataset_dir, tmp_path, "--max_steps", "4", *common))
    trainer.add_callback(CountSteps)
    trainer.train(resume_from_checkpoint=True)
    assert CountSteps.steps == [3, 4]  # picked up after step 2, did not start over


def test_evaluate_predict_and_merge_commands(trained, qa_dataset_dir, tmp_path):
    from transformers import LlavaForConditionalGeneration

    out_dir, _ = trained
    runner = CliRunner()
    result = runner.invoke(cli, ["vqa", "evaluate", "--model", str(out_dir), "--dataset", str(qa_dataset_dir),
                                 "--split", "test", "--out", str(tmp_path / "eval"), "--n-resamples", "200"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # Three training steps teach the model nothing about the image: the ablation check must say so.
    verdict = report["meta"]["image_ablation"]
    assert verdict["metric"] == "strict/closed_accuracy"
    assert verdict["ignores_image"] is True and "ignores the image" in result.output
    for kind in ("blank", "noise"):
        assert 0.0 <= report["metrics"][f"ablation/{kind}/strict/closed_accuracy"] <= 1.0
    rows = (tmp_path / "eval" / "evaluation_results.csv").read_text().splitlines()
    assert rows[0].startswith("id,prediction,references,question,answer,answer_type") and len(rows) == 9
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["meta"]["split"] == "test"

    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40), 200).save(image)
    result = runner.invoke(cli, ["vqa", "predict", "--model", str(out_dir), "--image", str(image),
                                 "--question", "Is there a nodule?", "--max-new-tokens", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.strip()

    result = runner.invoke(cli, ["vqa", "predict", "--model", str(out_dir), "--image", str(tmp_path / "no.png"),
                                 "--question", "?"])  # fmt: skip
    assert result.exit_code == 1 and "no.png" in result.output

    merged_dir = tmp_path / "merged"
    result = runner.invoke(cli, ["vqa", "merge", "--model", str(out_dir), "--out", str(merged_dir)])
    assert result.exit_code == 0, result.output
    merged = LlavaForConditionalGeneration.from_pretrained(merged_dir)
    from radtune.llava_vqa.inference import load_vqa_model

    adapted, processor = load_vqa_model(out_dir, device="cpu")
    inputs = processor(images=[Image.new("RGB", (32, 32), 90)], text=["USER: <image>\nIs there a nodule? ASSISTANT:"],
                       return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        expected = adapted(**inputs).logits  # float32, summed in another order: relative to the logits' scale
        torch.testing.assert_close(merged(**inputs).logits, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))

    result = runner.invoke(cli, ["vqa", "merge", "--model", str(merged_dir), "--out", str(tmp_path / "m2")])
    assert result.exit_code == 1 and "not a LoRA adapter" in result.output


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_evaluate_writes_a_new_folder_leaves_the_run_untouched_and_matches_the_final_evaluation(
    trained, qa_dataset_dir
):
    run, results = trained
    before = _file_bytes(run)
    runner = CliRunner()
    command = ["vqa", "evaluate", "--model", str(run), "--dataset", str(qa_dataset_dir), "--split", "test"]

    result = runner.invoke(cli, [*command, "--out", str(run)])
    assert result.exit_code == 1 and "training run's folder" in result.output

    written = []
    for _ in range(2):  # the default output is a new folder each time, never the run's own files
        result = runner.invoke(cli, command)
        assert result.exit_code == 0, result.output
        written.append(Path(result.output.strip().splitlines()[-1].split(" and ")[-1]).parent)
    assert [folder.name for folder in written] == ["eval-vqa-test", "eval-vqa-test-2"]
    assert all(folder.parent == run for folder in written)
    after = _file_bytes(run)
    assert {name: after[name] for name in before} == before  # every file of the run is byte-identical
    assert all(name.startswith(("eval-vqa-test/", "eval-vqa-test-2/")) for name in set(after) - set(before))

    # Same evaluator, same defaults (ablation, baseline from the train split, batch size, the run's
    # max_new_tokens and seed): the same answers and the same numbers as the trainer's final evaluation.
    final, evaluated = (json.loads((folder / "metrics.json").read_text()) for folder in (run, written[0]))
    assert final["metrics"]["n_closed"] == results["test"]["metrics"]["n_closed"] == 8  # what main returned
    assert (written[0] / "evaluation_results.csv").read_text() == (run / "evaluation_results.csv").read_text()
    assert evaluated["metrics"] == final["metrics"] and "ablation/gap" in final["metrics"]
    assert "majority_baseline/strict/closed_accuracy" in final["metrics"]
    assert evaluated["ci"] == final["ci"] and evaluated["subgroups"] == final["subgroups"]
    assert evaluated["meta"]["seed"] == final["meta"]["seed"] == 42
    assert evaluated["meta"]["image_ablation"] == final["meta"]["image_ablation"]


def test_a_run_with_only_checkpoints_names_them_and_its_checkpoint_evaluates(trained, qa_dataset_dir, tmp_path):
    import shutil

    adapter, _ = trained
    run = tmp_path / "run"
    for step in (2, 10):
        checkpoint = run / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(adapter / name, checkpoint / name)
    runner = CliRunner()
    for command in (["evaluate", "--dataset", str(qa_dataset_dir)], ["merge", "--out", str(tmp_path / "merged")],
                    ["predict", "--image", "x.png", "--question", "?"]):  # fmt: skip
        result = runner.invoke(cli, ["vqa", command[0], "--model", str(run), *command[1:]])
        assert result.exit_code == 1, result.output
        assert "only checkpoints (checkpoint-2, checkpoint-10)" in result.output, result.output
        assert f"--model {run / 'checkpoint-10'}" in result.output and "Traceback" not in result.output

    # The checkpoint it names evaluates, with its run's recorded settings (base model, max_new_tokens, seed).
    shutil.copy(adapter / "run_info.json", run / "run_info.json")
    result = runner.invoke(cli, ["vqa", "evaluate", "--model", str(run / "checkpoint-10"), "--dataset",
                                 str(qa_dataset_dir), "--no-ablation", "--n-resamples", "50"])  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "checkpoint-10" / "eval-vqa-test" / "metrics.json").read_text())["meta"]
    recorded = json.loads((adapter / "run_info.json").read_text())
    assert (meta["base_model"], meta["seed"], meta["n"]) == (recorded["base_model"], 42, 8)


def test_recipes_parse():
    for recipe in sorted(RECIPES.glob("*.yaml")):
        # GPU recipes ask for bf16/fp16, which TrainingArguments refuses on a machine without a GPU.
        cpu = ["--bf16", "false", "--fp16", "false", "--use_cpu", "true"]
        script_args, training_args, model_args = parse_args_and_config(make_parser(), ["--config", str(recipe), *cpu])
        assert script_args.dataset_name and model_args.model_name_or_path, recipe.name
        assert training_args.assistant_only_loss and training_args.max_length is None, recipe.name


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_cpu_ddp_run_trains_and_saves_one_adapter(tiny_model, qa_dataset_dir, tmp_path):
    import subprocess
    import sys

    out_dir = tmp_path / "ddp"
    radtune = Path(sys.executable).with_name("radtune")
    command = [
        str(radtune), "vqa", "train", "--cpu", "--num-processes", "2", "--",
        "--config", str(RECIPES / "phantom_cpu.yaml"), "--use_peft", "true", "--model_name_or_path", str(tiny_model("llava")),
        "--dataset_name", str(qa_dataset_dir), "--output_dir", str(out_dir), "--max_steps", "2",
        "--per_device_train_batch_size", "2", "--report_to", "none", "--eval_after_training", "false",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "torch.distributed.run" in completed.stderr  # the launcher printed the command it ran
    run_info = json.loads((out_dir / "run_info.json").read_text())
    assert run_info["num_processes"] == 2 and run_info["world_size_env"] == "2"
    assert json.loads((out_dir / "trainer_state.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in out_dir.glob("adapter_model*.safetensors")) == ["adapter_model.safetensors"]
