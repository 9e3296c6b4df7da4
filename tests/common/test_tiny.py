"""Common's part of the tiny models: the tokenizer, finding each kind's builder through the `radtune.tiny` entry
points, clear errors for an unknown or uninstalled kind, and the `radtune tiny` command. Each task package tests its
own kinds (tests/<task>/test_*_tiny.py)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import tomllib
from click.testing import CliRunner

import radtune.common.tiny as tiny_module
from radtune.common.cli import cli
from radtune.common.tiny import SHIPPED_KINDS, build_tiny, builtin_corpus, tiny_builder, tiny_kinds, train_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def _listed_kinds(help_text: str) -> dict[str, str]:
    """The "Kinds installed" section of `radtune tiny --help`, as {kind: distribution}."""
    section = help_text.split("Kinds installed:")[1].split("Options:")[0]
    return dict(line.split() for line in section.strip().splitlines())


def test_tokenizer_trains_on_given_texts():
    word = "pneumomediastinum"
    default = train_tokenizer(builtin_corpus(), "llama")
    custom = train_tokenizer([f"There is {word} and {word} again."] * 50, "llama")
    # Byte-level BPE merges the word with its leading space, as it appeared in the training texts.
    assert len(custom(" " + word, add_special_tokens=False).input_ids) == 1
    assert len(default(" " + word, add_special_tokens=False).input_ids) > 1


def test_the_task_packages_entry_points_cover_every_kind_with_one_signature():
    declared = {}
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        for kind, target in project.get("entry-points", {}).get("radtune.tiny", {}).items():
            assert kind not in declared, f"{kind} declared twice"
            declared[kind] = (project["name"], target)
    assert {kind: name for kind, (name, _) in declared.items()} == SHIPPED_KINDS
    assert "radtune-common" not in SHIPPED_KINDS.values()
    # Installed, they are what `tiny_kinds()` finds, and each builder is `build(texts, out_dir, size, *, options)`.
    assert tiny_kinds() == SHIPPED_KINDS
    for kind, (_, target) in declared.items():
        builder = tiny_builder(kind)
        assert f"{builder.__module__}:{builder.__name__}" == target
        parameters = list(inspect.signature(builder).parameters.values())
        assert [p.name for p in parameters[:3]] == ["texts", "out_dir", "size"], kind
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters[3:]), kind


def test_unknown_kind_is_a_one_line_error_listing_the_installed_kinds(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model kind 'gpt5'; choose one of: llava, vit-gpt2, "):
        build_tiny("gpt5", tmp_path / "m")
    result = CliRunner().invoke(cli, ["tiny", "resnet", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unknown tiny model kind 'resnet'; choose one of: " + ", ".join(SHIPPED_KINDS)
    ]
    assert not (tmp_path / "m").exists() and not (tmp_path / "x").exists()


def test_a_kind_whose_package_is_missing_names_the_distribution_to_install(tmp_path, monkeypatch):
    real = tiny_module.entry_points
    monkeypatch.setattr(tiny_module, "entry_points",
                        lambda group: [ep for ep in real(group=group) if ep.dist.name != "radtune-llava-vqa"])  # fmt: skip
    assert "llava" not in tiny_kinds() and "clip" in tiny_kinds()
    with pytest.raises(ValueError, match="'llava' comes with radtune-llava-vqa, which is not installed"):
        build_tiny("llava", tmp_path / "m")
    result = CliRunner().invoke(cli, ["tiny", "llava", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: tiny model kind 'llava' comes with radtune-llava-vqa, which is not installed; "
        "install radtune-llava-vqa to build it"
    ]
    result = CliRunner().invoke(cli, ["tiny", "--help"])
    assert result.exit_code == 0
    assert _listed_kinds(result.output) == {kind: name for kind, name in SHIPPED_KINDS.items()
                                            if name != "radtune-llava-vqa"}  # fmt: skip


def test_tiny_help_lists_the_installed_kinds_without_importing_torch_or_a_task_package(fresh_cli):
    code, output, loaded = fresh_cli("tiny", "--help")
    assert code == 0 and loaded == []
    assert _listed_kinds(output) == SHIPPED_KINDS


def test_tiny_cli_writes_loadable_folder_and_rejects_bad_input(tmp_path):
    from transformers import CLIPModel

    texts = tmp_path / "texts.txt"
    texts.write_text("Small right apical pneumothorax.\nNo pleural effusion.\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "clip"), "--texts", str(texts)])
    assert result.exit_code == 0, result.output
    assert CLIPModel.from_pretrained(tmp_path / "clip").config.projection_dim > 0

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "y"), "--texts", str(empty)])
    assert result.exit_code == 1 and "no non-empty texts" in result.output

    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "bad"), "--image-size", "30"])
    assert result.exit_code == 1 and "multiple of 8" in result.output


def test_tiny_cli_trains_tokenizer_on_a_saved_dataset(tmp_path):
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    word = " pneumomediastinum"
    DatasetDict(
        {"train": Dataset.from_dict({"question": [f"Is there{word}?"] * 40, "answer": ["Yes."] * 40})}
    ).save_to_disk(tmp_path / "qa")
    result = CliRunner().invoke(cli, ["tiny", "vit-gpt2", str(tmp_path / "m"), "--texts", str(tmp_path / "qa")])
    assert result.exit_code == 0, result.output
    assert len(AutoTokenizer.from_pretrained(tmp_path / "m")(word).input_ids) == 1
    (tmp_path / "not-a-dataset").mkdir()
    result = CliRunner().invoke(cli, ["tiny", "clip", str(tmp_path / "x"), "--texts", str(tmp_path / "not-a-dataset")])
    assert result.exit_code == 1 and "neither a text file nor a dataset" in result.output


def test_tiny_cli_trains_tokenizer_on_a_multi_turn_export(tmp_path):
    # `radtune data qa --conversation multi` writes one row an image, its questions and answers as lists.
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    word = " pneumomediastinum"
    rows = {"question": [[f"Is there{word}?", "Is the heart enlarged?"]] * 40, "answer": [["Yes.", "No."]] * 40}
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(tmp_path / "qa")
    result = CliRunner().invoke(cli, ["tiny", "vit-gpt2", str(tmp_path / "m"), "--texts", str(tmp_path / "qa")])
    assert result.exit_code == 0, result.output
    assert len(AutoTokenizer.from_pretrained(tmp_path / "m")(word).input_ids) == 1
