"""`radtune clip …`: zero-shot and retrieve write sane files where they should, with the run's recorded columns, and
fail shortly on a label typo or a run without a model; train builds the right launch command; recipes parse."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.common.cli_options import read_command_config
from radtune.contrastive.cli import clip
from radtune.contrastive.evaluation import label_matrix, prompts, resolve_labels, retrieval_ci, zero_shot_probabilities

RECIPES = Path(__file__).parents[2] / "packages" / "contrastive" / "recipes"


def run(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(args) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code not in (0, None) and isinstance(result.exception, SystemExit), result.exception
    return result.output


def file_hashes(folder: Path) -> dict:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}  # fmt: skip


@pytest.fixture
def clip_run(tiny_model, tmp_path):
    """A run folder as `radtune.contrastive.train` leaves it: the model, its results and a `run_info.json` saying it
    trained on the impressions, truncated to 64 tokens."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_model("clip"), run_dir)
    (run_dir / "metrics.json").write_text('{"metrics": {"i2t/recall@5": 0.5}}\n')
    (run_dir / "evaluation_results.csv").write_text("id,prediction,references\n")
    (run_dir / "run_info.json").write_text(json.dumps({"task": "contrastive", "architecture": "clip",
                                                      "text_column": "impression", "image_column": "image",
                                                      "max_text_length": 64}))  # fmt: skip
    return run_dir


def test_clip_group_is_registered():
    assert "zero-shot" in run(["clip", "--help"]).output
    for command in ("train", "zero-shot", "retrieve"):
        assert "Example" in run(["clip", command, "--help"]).output
    for command in ("zero-shot", "retrieve"):  # the evaluation commands' shared vocabulary
        help_text = run(["clip", command, "--help"]).output
        assert all(flag in help_text for flag in ("--model", "--dataset", "--split", "--out", "--n-resamples"))
    assert "--text-column" in run(["clip", "retrieve", "--help"]).output


def test_zero_shot_writes_per_class_auc(tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "zs"
    result = run(["clip", "zero-shot", "--model", str(tiny_model("clip")), "--dataset", str(pair_dataset),
                  "--labels", "Cardiomegaly,Effusion,Pneumothorax,Hernia", "--n-resamples", "50", "--out", str(out)])  # fmt: skip
    assert "auc_macro" in result.output and "auc/Hernia" in result.output and "undefined" in result.output
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    for name in ("Cardiomegaly", "Effusion", "Pneumothorax"):
        assert 0.0 <= metrics[f"auc/{name}"] <= 1.0
    # Hernia is a label of the dataset (train split) with no positive in the test split: undefined, not 0.5
    assert metrics["auc/Hernia"] is None and "auc/Hernia" in report["meta"]["undefined"]
    defined = [metrics[f"auc/{name}"] for name in ("Cardiomegaly", "Effusion", "Pneumothorax")]
    assert metrics["auc_macro"] == pytest.approx(sum(defined) / 3)
    assert report["meta"]["n"] == 12 and report["meta"]["task"] == "zero-shot"
    with open(out / "zero_shot_scores.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(0.0 <= float(row["Effusion"]) <= 1.0 for row in rows)
    low, high = report["ci"]["auc_macro"]
    assert low <= metrics["auc_macro"] <= high and "auc/Hernia" not in report["ci"]
    with open(out / "evaluation_results.csv") as handle:
        results = list(csv.DictReader(handle))
    assert len(results) == 12 and list(results[0]) == ["id", "prediction", "references", "labels"]


def test_zero_shot_label_typo_is_a_short_error_listing_the_labels(tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "zs"
    output = fails(["clip", "zero-shot", "--model", str(tiny_model("clip")), "--dataset", str(pair_dataset),
                    "--labels", "Cardiomegaly,Efusion", "--out", str(out)])  # fmt: skip
    assert "'Efusion'" in output and "Effusion, Hernia, No Finding, Pneumothorax" in output
    assert len(output.strip().splitlines()) <= 2 and not out.exists()


def test_retrieve_writes_recall_at_k(tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "ret"
    run(["clip", "retrieve", "--model", str(tiny_model("clip")), "--dataset", str(pair_dataset),
         "--text-column", "findings", "--n-resamples", "50", "--out", str(out)])  # fmt: skip
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    for direction in ("i2t", "t2i"):
        recalls = [metrics[f"{direction}/recall@{k}"] for k in (1, 5, 10)]
        assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls)
        assert 1 <= metrics[f"{direction}/median_rank"] <= 12
        for name in (f"{direction}/recall@5", f"{direction}/median_rank"):
            low, high = report["ci"][name]
            assert low <= metrics[name] <= high
    assert metrics["chance/recall@5"] == pytest.approx(5 / 12)
    assert report["meta"]["text_column"] == "findings" and report["meta"]["max_text_length"] == 77
    with open(out / "evaluation_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(json.loads(row["references"]) for row in rows)


def test_retrieve_on_a_run_uses_its_text_column_and_leaves_its_files_alone(clip_run, pair_dataset):
    before = file_hashes(clip_run)
    args = ["clip", "retrieve", "--model", str(clip_run), "--dataset", str(pair_dataset), "--n-resamples", "0"]
    run(args)
    report = json.loads((clip_run / "eval-retrieval-test" / "metrics.json").read_text())
    assert (report["meta"]["text_column"], report["meta"]["max_text_length"]) == ("impression", 64)
    assert report["meta"]["n"] == 9  # the three empty test impressions are left out, as in training
    run([*args, "--text-column", "findings"])  # told otherwise: another new folder
    second = json.loads((clip_run / "eval-retrieval-test-2" / "metrics.json").read_text())
    assert second["meta"]["text_column"] == "findings" and second["meta"]["n"] == 12
    after = {name: digest for name, digest in file_hashes(clip_run).items() if not name.startswith("eval-")}
    assert after == before
    assert "training run's folder" in fails([*args, "--out", str(clip_run)])


def test_a_run_with_only_checkpoints_is_a_short_error_naming_them(tiny_model, pair_dataset, tmp_path):
    run_dir = tmp_path / "run"
    for step in (5, 10):
        shutil.copytree(tiny_model("clip"), run_dir / f"checkpoint-{step}")
    output = fails(["clip", "retrieve", "--model", str(run_dir), "--dataset", str(pair_dataset)])
    assert "checkpoint-5, checkpoint-10" in output and f"--model {run_dir / 'checkpoint-10'}" in output
    assert len(output.strip().splitlines()) <= 2


def test_retrieval_intervals_resample_queries_against_the_whole_gallery():
    perfect = np.eye(6) + 0.01
    ci = retrieval_ci(perfect, n_resamples=20)
    assert ci["i2t/recall@1"] == pytest.approx((1.0, 1.0)) and ci["t2i/median_rank"] == pytest.approx((1.0, 1.0))
    # Query 0 ranks its own text last (a tie counts against it): recall@1 is 5/6 over all queries.
    mixed = np.eye(6)
    mixed[0] = 1.0
    low, high = retrieval_ci(mixed, n_resamples=200)["i2t/recall@1"]
    assert 0.0 <= low < 5 / 6 <= high <= 1.0


def test_train_passes_arguments_after_the_separator_to_the_training_module():
    cpu = run(["clip", "train", "--cpu", "--num-processes", "2", "--dry-run", "--", "--config", "r.yaml",
               "--max_steps", "5"]).output  # fmt: skip
    assert "torch.distributed.run" in cpu and "--nproc_per_node=2" in cpu
    assert "-m radtune.contrastive.train --config r.yaml --max_steps 5 --use_cpu true" in cpu
    gpu = run(["clip", "train", "--accelerate-config", "multi_gpu", "--dry-run", "--", "--config", "r.yaml"]).output
    assert "accelerate.commands.launch" in gpu and "multi_gpu.yaml" in gpu
    assert "put it after `--`" in fails(["clip", "train", "--dry-run", "--config", "r.yaml"])


# The CheXpert observation each zero-shot class is labelled with in reports.
OBSERVATION_OF = {"Cardiomegaly": "Cardiomegaly", "Effusion": "Pleural Effusion", "Pleural Effusion": "Pleural Effusion",
                  "Pneumothorax": "Pneumothorax", "Nodule": "Lung Lesion", "Mass": "Lung Lesion",
                  "Consolidation": "Consolidation"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(OBSERVATION_OF))
def test_every_prompt_says_what_its_set_claims(name):
    """Each positive prompt reads as the finding and each negative one as its absence to radtune's report labeler:
    a prompt in the wrong set (or one the labeler reads otherwise, e.g. hedged) would pull the classes together."""
    from radtune.common.labeler import label_report

    observation = OBSERVATION_OF[name]
    positive, negative = prompts(name)
    assert len(positive) >= 4 and len(negative) >= 4
    for text in positive:
        assert label_report(text)[observation] == 1.0, text
    for text in negative:
        labels = label_report(text)
        assert labels[observation] in (0.0, None) and labels["No Finding"] == 1.0, text


def test_prompts_labels_and_probabilities():
    positive, negative = prompts("Effusion")
    assert "There is pleural effusion." in positive and "No pleural effusion." in negative
    positive, negative = prompts("Cardiomegaly")  # reports' usual wording of a normal heart joins the templates
    assert "No cardiomegaly." in negative and "Heart size is normal." in negative
    assert "Heart size is normal." not in positive and "There is cardiomegaly." in positive
    assert resolve_labels("nih")[:2] == ["Atelectasis", "Cardiomegaly"] and len(resolve_labels("chexpert")) == 13
    assert resolve_labels(" Mass, Nodule ") == ["Mass", "Nodule"]
    truth = label_matrix([["Pleural_Thickening"], "Effusion|Mass", None], ["pleural thickening", "Effusion"])
    assert truth.tolist() == [[1, 0], [0, 1], [0, 0]]
    import torch

    image = torch.tensor([[1.0, 0.0]])
    prompt = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # positive prompt = the image, negative orthogonal
    p = zero_shot_probabilities(image, prompt, 10.0)
    assert p[0, 0] == pytest.approx(1 / (1 + math.exp(-10.0)))


@pytest.mark.parametrize("recipe", sorted(path.name for path in RECIPES.glob("*.yaml")))
def test_every_recipe_parses(recipe):
    path = RECIPES / recipe
    if recipe == "nih_zero_shot.yaml":
        values = read_command_config(clip.commands["zero-shot"], path)
        assert values["labels"] == "nih" and values["model"] and values["dataset"]
        return
    import torch

    from radtune.common.config import parse_args_and_config
    from radtune.contrastive.train import make_parser

    # GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU.
    overrides = [] if torch.cuda.is_available() else ["--bf16", "false"]
    script_args, training_args, model_args = parse_args_and_config(make_parser(), ["--config", str(path), *overrides])
    assert script_args.dataset_name and training_args.output_dir
    assert training_args.loss in ("infonce", "triplet") and model_args.architecture in ("clip", "dual-encoder")
    assert not training_args.aug_horizontal_flip


def test_recipe_with_an_unknown_key_fails(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\ndataset: d\nlabelz: nih\n")
    import click

    with pytest.raises(click.BadParameter, match="labelz"):
        read_command_config(clip.commands["zero-shot"], bad)
