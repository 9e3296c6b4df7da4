"""The build: every layout end to end, splits, duplicates, atomic output, the card, the phantom marker, and the
`build` / `info` / `push` commands. Bad input, killed builds and Hub faults are in `test_bad_input.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from dataprep_layouts import (
    make_chexpert_plus,
    make_imagefolder_csv,
    make_mimic,
    make_nih,
    make_pathvqa,
    make_roco_original,
    make_rocov2,
    make_slake,
    make_vqa_rad,
    write_text,
)
from datasets import load_from_disk
from PIL import Image

from radtune.dataprep import build as build_module
from radtune.dataprep import image_pass
from radtune.dataprep.build import build_dataset
from radtune.dataprep.build_cli import build as build_command
from radtune.dataprep.build_cli import info as info_command
from radtune.dataprep.card import parse_card_metadata

LAYOUTS = {
    "rocov2": (make_rocov2, {"train": 2, "validation": 2, "test": 2}),
    "roco": (make_roco_original, {"train": 3, "validation": 1, "test": 1}),
    "mimic-cxr": (make_mimic, {"train": 3, "validation": 1, "test": 1}),
    "chexpert-plus": (make_chexpert_plus, {"train": 3, "validation": 1}),
    "nih": (make_nih, None),
    "vqa-rad": (make_vqa_rad, {"train": 2, "test": 2}),
    "slake": (make_slake, {"train": 2, "validation": 1, "test": 1}),
    "pathvqa": (make_pathvqa, {"train": 4, "validation": 2, "test": 2}),
    "imagefolder-csv": (make_imagefolder_csv, None),
}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".building-" in p.name]


@pytest.mark.parametrize("source", sorted(LAYOUTS))
def test_every_layout_builds(tmp_path, source):
    maker, expected = LAYOUTS[source]
    root = maker(tmp_path / "src")
    report = build_dataset(source, root, tmp_path / "out", max_skip_fraction=0.25, max_side=12)
    dataset = load_from_disk(str(tmp_path / "out"))
    if expected:
        assert {name: len(split) for name, split in dataset.items()} == expected
    first = next(iter(dataset.values()))[0]
    assert isinstance(first["image"], Image.Image) and first["image"].mode in ("L", "RGB")
    assert max(first["image"].size) <= 12
    assert first["source"] == source and first["license"]
    assert "split" not in first and "image_path" not in first and "skip_reason" not in first
    assert report["status"] == "ok" and (tmp_path / "out" / "build_report.json").is_file()
    assert leftovers(tmp_path) == []


def test_report_sources_have_report_columns(tmp_path):
    build_dataset("mimic-cxr", make_mimic(tmp_path / "src"), tmp_path / "out")
    train = load_from_disk(str(tmp_path / "out"))["train"]
    assert {"text", "findings", "impression", "labels", "patient_id", "study_id", "view"} <= set(train.column_names)
    assert "question" not in train.column_names  # columns no record fills are dropped
    assert train[0]["impression"] == "No acute cardiopulmonary process."


def test_nih_patient_level_split_and_mode_normalisation(tmp_path):
    build_dataset("nih", make_nih(tmp_path / "src", kaggle=True), tmp_path / "out")
    dataset = load_from_disk(str(tmp_path / "out"))
    patients = {name: set(split["patient_id"]) for name, split in dataset.items()}
    assert patients["test"] == {"5", "6"}  # test_list.txt, by patient
    assert not (patients["train"] & patients.get("validation", set()))
    modes = {image.mode for split in dataset.values() for image in split["image"]}
    assert modes == {"L"}  # the RGBA image became L


def test_mimic_dicom_original_builds(tmp_path):
    build_dataset("mimic-cxr", make_mimic(tmp_path / "src", dicom=True), tmp_path / "out", max_side=64)
    image = load_from_disk(str(tmp_path / "out"))["train"][0]["image"]
    assert image.format == "PNG" and image.mode == "L" and image.size == (64, 64)


def test_num_proc_two_gives_the_same_dataset(tmp_path):
    root = make_nih(tmp_path / "src")
    build_dataset("nih", root, tmp_path / "one", num_proc=1)
    build_dataset("nih", root, tmp_path / "two", num_proc=2)
    one, two = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    assert {k: v["id"] for k, v in one.items()} == {k: v["id"] for k, v in two.items()}


def test_progress_bar_counts_the_images_of_every_process(tmp_path, capsys):
    report = build_dataset("nih", make_nih(tmp_path / "src"), tmp_path / "out", num_proc=2)
    total = report["records_read"]
    err = capsys.readouterr().err
    assert "Decoding images" in err and f"{total}/{total}" in err


def test_duplicate_whose_first_copy_another_process_decoded_is_dropped(tmp_path):
    # num_proc=2 splits the 12 records into 0-5 and 6-11: 9, 10 and 11 repeat 1, 2 and 3 from the other range.
    root = make_imagefolder_csv(tmp_path / "src", rows=[(f"img/{n}.png", f"caption {n}", f"P{n}") for n in range(12)])
    for n in (9, 10, 11):
        (root / "img" / f"{n}.png").write_bytes((root / "img" / f"{n - 8}.png").read_bytes())
    one = build_dataset("imagefolder-csv", root, tmp_path / "one", num_proc=1)
    two = build_dataset("imagefolder-csv", root, tmp_path / "two", num_proc=2)
    assert {d["id"]: d["duplicate_of"] for d in two["duplicates"]} == {
        "img/9.png": "img/1.png", "img/10.png": "img/2.png", "img/11.png": "img/3.png"
    }
    assert two["duplicates"] == one["duplicates"] and two["splits"] == one["splits"] and two["kept"] == 9
    loaded_one, loaded_two = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    assert {k: v["id"] for k, v in loaded_two.items()} == {k: v["id"] for k, v in loaded_one.items()}
    assert sorted(i for split in loaded_two.values() for i in split["id"]) == sorted(f"img/{n}.png" for n in range(9))


def test_shards_roll_over_past_the_shard_size_and_keep_the_order(tmp_path, monkeypatch):
    rows = [(f"img/{n}.png", f"caption {n}", "P1") for n in range(10)]  # one patient: one split
    root = make_imagefolder_csv(tmp_path / "src", rows=rows)
    build_dataset("imagefolder-csv", root, tmp_path / "whole")
    monkeypatch.setattr(build_module, "_max_shard_bytes", lambda: 1)  # every row starts a new shard
    build_dataset("imagefolder-csv", root, tmp_path / "sharded", num_proc=2)
    (split,) = load_from_disk(str(tmp_path / "whole")).keys()
    files = sorted(p.name for p in (tmp_path / "sharded" / split).glob("*.arrow"))
    assert files == [f"data-{n:05d}-of-00010.arrow" for n in range(10)]
    whole, sharded = load_from_disk(str(tmp_path / "whole"))[split], load_from_disk(str(tmp_path / "sharded"))[split]
    assert sharded["id"] == whole["id"] == [f"img/{n}.png" for n in range(10)]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(sharded["image"], whole["image"], strict=True))


# Splits and duplicates ------------------------------------------------------------------------------------------


def test_hash_split_keeps_patients_together(tmp_path):
    rows = [(f"img/{n}.png", f"caption {n}", f"P{n // 4}") for n in range(80)]
    make_imagefolder_csv(tmp_path / "src", rows=rows)
    build_dataset("imagefolder-csv", tmp_path / "src", tmp_path / "out", ratios=(0.6, 0.2, 0.2))
    dataset = load_from_disk(str(tmp_path / "out"))
    assert set(dataset) == {"train", "validation", "test"}
    seen = {}
    for name, split in dataset.items():
        for patient in split["patient_id"]:
            assert seen.setdefault(patient, name) == name


def test_exact_duplicate_images_are_dropped_and_counted(tmp_path):
    root = make_imagefolder_csv(tmp_path / "src")
    (root / "img" / "5.png").write_bytes((root / "img" / "1.png").read_bytes())
    # The same pixels in another format are the same image too.
    Image.open(root / "img" / "1.png").save(root / "img" / "6.png", format="PNG", compress_level=9)
    report = build_dataset("imagefolder-csv", root, tmp_path / "out")
    assert report["duplicates_dropped"] == 2 and report["kept"] == 7
    assert {d["id"] for d in report["duplicates"]} == {"img/5.png", "img/6.png"}
    assert all(d["duplicate_of"] == "img/1.png" for d in report["duplicates"])


def test_vqa_questions_on_one_image_are_not_duplicates(tmp_path):
    report = build_dataset("pathvqa", make_pathvqa(tmp_path / "src"), tmp_path / "out")
    assert report["duplicates_dropped"] == 0 and report["kept"] == 8


# Atomic output --------------------------------------------------------------------------------------------------


def test_failure_mid_build_leaves_no_output(tmp_path, monkeypatch):
    root = make_nih(tmp_path / "src")

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr("radtune.dataprep.card.render_card", explode)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_dataset("nih", root, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_failed_rebuild_keeps_the_previous_dataset(tmp_path, monkeypatch):
    root = make_nih(tmp_path / "src")
    build_dataset("nih", root, tmp_path / "out")
    before = sorted(p.name for p in (tmp_path / "out").iterdir())

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(image_pass, "_prepare_batch", explode)
    with pytest.raises(Exception, match="simulated crash"):
        build_dataset("nih", root, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before
    with pytest.raises(FileExistsError):
        build_dataset("nih", root, tmp_path / "out")


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_failure_in_a_worker_process_fails_the_build_and_leaves_nothing(tmp_path, monkeypatch, how):
    root = make_nih(tmp_path / "src")
    build_dataset("nih", root, tmp_path / "out")
    before = sorted(p.name for p in (tmp_path / "out").iterdir())
    parent = os.getpid()
    prepare = image_pass._prepare_batch

    def explode_in_worker(*args, **kwargs):
        if os.getpid() != parent:
            if how == "dies":
                os._exit(3)
            raise RuntimeError("simulated crash in a worker")
        return prepare(*args, **kwargs)

    monkeypatch.setattr(image_pass, "_prepare_batch", explode_in_worker)
    expected = RuntimeError if how == "raises" else BrokenProcessPool
    with pytest.raises(expected, match="simulated crash in a worker" if how == "raises" else None):
        build_dataset("nih", root, tmp_path / "out", num_proc=2, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == before and leftovers(tmp_path) == []


# The card and the phantom marker --------------------------------------------------------------------------------


def test_card_yaml_and_body(tmp_path):
    build_dataset("mimic-cxr", make_mimic(tmp_path / "src"), tmp_path / "out", command="radtune data build x")
    card = (tmp_path / "out" / "README.md").read_text()
    metadata = parse_card_metadata(card)
    assert metadata["license"] == "other"
    assert metadata["license_name"] == "physionet-credentialed-health-data-license-1.5.0"
    assert "image-to-text" in metadata["task_categories"] and "medical" in metadata["tags"]
    assert metadata["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "validation", "path": "data/validation-*"},
        {"split": "test", "path": "data/test-*"}]}]
    assert "## Data use agreement" in card and "PhysioNet" in card
    assert "| train | 3 |" in card and "radtune data build x" in card and "@article{johnson2019mimiccxr" in card


def test_own_data_licence_reaches_rows_and_card(tmp_path):
    root = make_imagefolder_csv(tmp_path / "src")
    build_dataset("imagefolder-csv", root, tmp_path / "out", reader_options={"license": "cc-by-4.0"})
    assert set(load_from_disk(str(tmp_path / "out"))["train"]["license"]) == {"cc-by-4.0"}
    assert parse_card_metadata((tmp_path / "out" / "README.md").read_text())["license"] == "cc-by-4.0"


def test_open_source_card_has_no_notice(tmp_path):
    build_dataset("nih", make_nih(tmp_path / "src"), tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert parse_card_metadata(card)["license"] == "cc0-1.0" and "Data use agreement" not in card


@pytest.mark.parametrize("source,maker", [("mimic-cxr", make_mimic), ("chexpert-plus", make_chexpert_plus)])
def test_phantom_marker_makes_source_phantom_cc0_without_notice(tmp_path, source, maker):
    root = maker(tmp_path / "src")
    marker = {"generator": "radtune.dataprep.phantoms", "version": "0.1.0", "seed": 0, "arguments": {},
              "source": "phantom", "license": "CC0-1.0", "credentialed": False}
    write_text(root / "PHANTOM.json", json.dumps(marker))
    report = build_dataset(source, root, tmp_path / "out")
    assert report["source"] == "phantom" and report["phantom"]["seed"] == 0
    dataset = load_from_disk(str(tmp_path / "out"))
    assert set(dataset["train"]["source"]) == {"phantom"} and set(dataset["train"]["license"]) == {"cc0-1.0"}
    card = (tmp_path / "out" / "README.md").read_text()
    metadata = parse_card_metadata(card)
    assert metadata["license"] == "cc0-1.0" and "license_name" not in metadata
    assert "Data use agreement" not in card and "PhysioNet" not in card and "research use agreement" not in card


# Commands -------------------------------------------------------------------------------------------------------


def test_build_and_info_commands(tmp_path):
    root = make_rocov2(tmp_path / "src")
    result = CliRunner().invoke(
        build_command, ["rocov2", str(root), str(tmp_path / "out"), "--max-side", "8", "--num-proc", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "train=2" in result.output
    report = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert report["command"].startswith("radtune data build rocov2 ") and "--max-side 8" in report["command"]
    result = CliRunner().invoke(info_command, [str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "train: 2 rows" in result.output and "image: Image(" in result.output
    assert "<image RGB 8x8>" in result.output and "source=rocov2" in result.output
    result = CliRunner().invoke(info_command, [str(tmp_path / "src")])
    assert result.exit_code != 0 and "not a dataset folder" in result.output


PUSH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from datasets import load_dataset, load_from_disk
    from huggingface_hub import DatasetCard, HfApi
    from click.testing import CliRunner
    from radtune.dataprep.build_cli import build, info, push

    src, out, result_path = sys.argv[1:4]
    user = HfApi().whoami()["name"]
    results = {}
    run = CliRunner().invoke(build, ["nih", src, out, "--push-to-hub", f"{user}/nih-private"])
    results["build_push"] = {"exit_code": run.exit_code, "output": run.output}
    run = CliRunner().invoke(push, [out, f"{user}/nih-public", "--public"])
    results["push_public"] = {"exit_code": run.exit_code, "output": run.output}
    api = HfApi()
    results["private"] = api.repo_info(f"{user}/nih-private", repo_type="dataset").private
    results["public"] = api.repo_info(f"{user}/nih-public", repo_type="dataset").private
    loaded = load_dataset(f"{user}/nih-private")
    local = load_from_disk(out)
    results["splits"] = {name: len(split) for name, split in loaded.items()}
    results["same_pixels"] = all(
        list(a["image"].getdata()) == list(b["image"].getdata()) and a["id"] == b["id"]
        for name in local for a, b in zip(local[name], loaded[name])
    )
    card = DatasetCard.load(f"{user}/nih-private", repo_type="dataset")
    card.validate(repo_type="dataset")
    results["card"] = card.data.to_dict()
    results["card_text"] = card.text
    run = CliRunner().invoke(info, [f"{user}/nih-private"])
    results["info"] = {"exit_code": run.exit_code, "output": run.output}
    open(result_path, "w").write(json.dumps(results))
    """
)


@pytest.mark.slow
def test_push_to_local_hub_loads_back(tmp_path, hub_server):
    root = make_nih(tmp_path / "src")
    script = tmp_path / "push.py"
    script.write_text(PUSH_SCRIPT)
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home")}
    result_path = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(script), str(root), str(tmp_path / "out"), str(result_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(result_path.read_text())
    assert results["build_push"]["exit_code"] == 0, results["build_push"]["output"]
    assert results["push_public"]["exit_code"] == 0, results["push_public"]["output"]
    assert results["private"] is True and results["public"] is False
    local = load_from_disk(str(tmp_path / "out"))
    assert results["splits"] == {name: len(split) for name, split in local.items()}
    assert results["same_pixels"] is True
    assert results["card"]["license"] == "cc0-1.0" and results["card"]["configs"][0]["config_name"] == "default"
    assert "dataset_info" in results["card"]  # push_to_hub merged its metadata into our card
    assert "## Splits" in results["card_text"]
    assert results["info"]["exit_code"] == 0, results["info"]["output"]
    assert "train: " in results["info"]["output"] and "image: Image(" in results["info"]["output"]
    yaml.safe_dump(results["card"])


@pytest.mark.parametrize("layout", ["mimic-cxr", "chexpert-plus", "nih"])
def test_generated_phantom_layouts_build_with_the_real_readers(tmp_path, layout):
    phantoms = pytest.importorskip("radtune.dataprep.phantoms")
    root = phantoms.generate_phantoms(tmp_path / "src", n=24, layout=layout, image_size=32, seed=0, workers=1)
    report = build_dataset(layout, root, tmp_path / "out", max_skip_fraction=0.0)
    assert report["source"] == "phantom" and report["skipped_total"] == 0 and report["kept"] >= 24
    dataset = load_from_disk(str(tmp_path / "out"))
    first = next(iter(dataset.values()))
    assert set(first["source"]) == {"phantom"} and set(first["license"]) == {"cc0-1.0"}
    assert first[0]["image"].size == (32, 32) and first[0]["labels"] is not None
    if layout != "nih":
        assert all(first["text"])
    card = (tmp_path / "out" / "README.md").read_text()
    assert parse_card_metadata(card)["license"] == "cc0-1.0" and "Data use agreement" not in card


def test_commands_are_registered_under_radtune_data(tmp_path):
    from radtune.common.cli import cli

    build_dataset("nih", make_nih(tmp_path / "src"), tmp_path / "out")
    result = CliRunner().invoke(cli, ["data", "info", str(tmp_path / "out"), "--examples", "1"])
    assert result.exit_code == 0, result.output
    assert "test: 4 rows" in result.output
    for command in ("build", "info", "push"):
        assert CliRunner().invoke(cli, ["data", command, "--help"]).exit_code == 0
