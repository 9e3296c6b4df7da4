"""`radtune clip …`: zero-shot and retrieve write sane files; train builds the right launch command; recipes parse."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from radtune.common.cli import cli
from radtune.contrastive.cli import clip, read_command_config
from radtune.contrastive.evaluation import label_matrix, prompts, resolve_labels, zero_shot_probabilities

RECIPES = Path(__file__).parents[2] / "packages" / "contrastive" / "recipes"


def run(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_clip_group_is_registered():
    assert "zero-shot" in run(["clip", "--help"]).output
    for command in ("train", "zero-shot", "retrieve"):
        assert "Example" in run(["clip", command, "--help"]).output


def test_zero_shot_writes_per_class_auc(tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "zs"
    result = run(["clip", "zero-shot", "--model", str(tiny_model("clip")), "--dataset", str(pair_dataset),
                  "--labels", "Cardiomegaly,Effusion,Pneumothorax,Hernia", "--bootstrap", "50", "--out", str(out)])  # fmt: skip
    assert "macro" in result.output
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    for name in ("Cardiomegaly", "Effusion", "Pneumothorax"):
        assert 0.0 <= metrics[f"auc/{name}"] <= 1.0
    assert metrics["auc/Hernia"] is None and "auc/Hernia" in report["meta"]["undefined"]  # no positive: not 0.5
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


def test_retrieve_writes_recall_at_k(tiny_model, pair_dataset, tmp_path):
    out = tmp_path / "ret"
    run(["clip", "retrieve", "--model", str(tiny_model("clip")), "--dataset", str(pair_dataset),
         "--caption-column", "findings", "--out", str(out)])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    for direction in ("i2t", "t2i"):
        recalls = [metrics[f"{direction}/recall@{k}"] for k in (1, 5, 10)]
        assert all(0.0 <= r <= 1.0 for r in recalls) and recalls == sorted(recalls)
        assert 1 <= metrics[f"{direction}/median_rank"] <= 12
    assert metrics["chance/recall@5"] == pytest.approx(5 / 12)
    with open(out / "evaluation_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and all(json.loads(row["references"]) for row in rows)


def test_train_passes_arguments_through_to_the_launcher():
    result = run(["clip", "train", "--cpu", "--num-processes", "2", "--dry-run", "--config", "r.yaml", "--max_steps", "5"])
    assert "torch.distributed.run" in result.output and "--nproc_per_node=2" in result.output
    assert "-m radtune.contrastive.train --config r.yaml --max_steps 5 --use_cpu true" in result.output
    gpu = run(["clip", "train", "--accelerate-config", "multi_gpu", "--dry-run", "--config", "r.yaml"]).output
    assert "accelerate.commands.launch" in gpu and "multi_gpu.yaml" in gpu


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
        assert values["labels_spec"] == "nih" and values["model_path"] and values["dataset"]
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
