"""The three VQA benchmarks (VQA-RAD, SLAKE, PathVQA) and ROCOv2 built as papers use them (issue 18).

- `answer_type` is one schema for every VQA reader: `closed` / `open`, kept where the source gives it, derived where
  it does not (yes/no answers are closed), and the card states the rule.
- An official test split is never altered: a train copy of a test triplet leaves train (reported as leakage),
  repeats inside test are reported, not removed; the card states the split sizes beside the published ones.
- Hub copies (`hf://datasets/OWNER/NAME[@REVISION]`) build with the same guarantees, from the local Hub only.

Expected sizes are the published ones (the Hub copies' cards, SLAKE's English split; see `sources.PUBLISHED_SPLITS`)
or counted by hand from the replica's layout (`dataprep_layouts.vqa_plan`), never read back from the build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dataprep_layouts import make_pathvqa, make_slake, make_vqa_rad
from datasets import load_from_disk

from radtune.dataprep.build import build_dataset, resolve_duplicates

HUB_BUILDS = Path(__file__).with_name("hub_builds.py")

# The published sizes, as their sources state them (not radtune's table): flaviagiammarino/vqa-rad's and
# flaviagiammarino/path-vqa's cards, SLAKE's English questions (OctoMed/SLAKE's card: train+validation 5,972 = 4,919 +
# 1,053, test 1,061).
VQA_RAD_PUBLISHED = {"train": 1_793, "test": 451}
SLAKE_PUBLISHED = {"train": 4_919, "validation": 1_053, "test": 1_061}
PATHVQA_PUBLISHED = {"train": 19_654, "validation": 6_259, "test": 6_719}


def card(folder: Path) -> str:
    return (folder / "README.md").read_text(encoding="utf-8")


# answer_type ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "make", "expected"),
    [
        # make_vqa_rad: qid 1 "no" CLOSED, 2 "2" OPEN (train); 3 "yes" CLOSED, 4 "left frontal" OPEN (test).
        (
            "vqa-rad",
            make_vqa_rad,
            {"train": [("closed", "given"), ("open", "given")], "test": [("closed", "given"), ("open", "given")]},
        ),
        # make_slake, English: "Yes" CLOSED, "Liver" OPEN / "No" CLOSED / "MRI" OPEN.
        (
            "slake",
            make_slake,
            {
                "train": [("closed", "given"), ("open", "given")],
                "validation": [("closed", "given")],
                "test": [("open", "given")],
            },
        ),
        # make_pathvqa has no type: "yes" → closed, "hematoxylin and eosin" → open, on every image.
        (
            "pathvqa",
            make_pathvqa,
            {
                "train": [("closed", "derived"), ("open", "derived")] * 2,
                "validation": [("closed", "derived"), ("open", "derived")],
                "test": [("closed", "derived"), ("open", "derived")],
            },
        ),
    ],
)
def test_every_vqa_reader_writes_lowercase_answer_types_and_says_where_they_come_from(
    tmp_path, source, make, expected
):
    build_dataset(source, make(tmp_path / "src"), tmp_path / "out", max_skip_fraction=0.25)
    dataset = load_from_disk(str(tmp_path / "out"))
    got = {
        name: list(zip(split["answer_type"], split["answer_type_source"], strict=True))
        for name, split in dataset.items()
    }
    assert got == expected
    text = card(tmp_path / "out")
    assert "a question whose answer is `yes` or `no`" in text and "is `closed` and every other question `open`" in text


def test_the_one_vqa_scorer_reads_a_built_dataset_types(tmp_path):
    from radtune.common.vqa_evaluation import score_vqa, vqa_items

    build_dataset("pathvqa", make_pathvqa(tmp_path / "src"), tmp_path / "out")
    items = vqa_items(load_from_disk(str(tmp_path / "out"))["test"])
    assert [item.answer_type for item in items] == ["closed", "open"]
    # Right on the closed question, wrong on the open one: closed accuracy 1, open recall 0 (0 of 3 answer words).
    metrics = score_vqa(items, ["yes", "giemsa"], n_resamples=10).metrics
    assert metrics["strict/closed_accuracy"] == 1.0 and metrics["strict/open_recall"] == 0.0


# Official test splits -------------------------------------------------------------------------------------------


def test_a_train_copy_of_a_test_triplet_leaves_train_and_the_test_split_keeps_every_row(tmp_path):
    # The leaked copy of test question "Is this an MRI?" comes first in the file (qid 1), as on the real VQA-RAD: a
    # first-copy-wins de-duplication would drop the test copy. Renumbered: train qids 2, 3 (6 is "NULL"), test 4, 5.
    root = make_vqa_rad(tmp_path / "src", leaked=1)
    report = build_dataset("vqa-rad", root, tmp_path / "out", max_skip_fraction=0.25)
    dataset = load_from_disk(str(tmp_path / "out"))
    assert dataset["test"]["id"] == ["4", "5"] and dataset["train"]["id"] == ["2", "3"]
    assert dataset["test"]["question"] == ["Is this an MRI?", "Which lobe?"]
    assert report["leakage_dropped"] == 1 and report["duplicates_dropped"] == 0
    (leak,) = report["leakage"]
    assert (leak["id"], leak["split"], leak["duplicate_of"], leak["duplicate_of_split"]) == ("1", "train", "4", "test")
    assert json.loads((tmp_path / "out" / "build_report.json").read_text())["leakage"] == report["leakage"]
    assert "left their own split: 1 (the official test split is never altered)" in card(tmp_path / "out")


def test_duplicates_inside_the_test_split_are_reported_not_removed(tmp_path):
    root = make_vqa_rad(tmp_path / "src", train_repeats=1, test_repeats=1)
    report = build_dataset("vqa-rad", root, tmp_path / "out", max_skip_fraction=0.25)
    dataset = load_from_disk(str(tmp_path / "out"))
    # Test: qids 3, 4 and the repeat of 3 (qid 7); train: 1, 2 (the repeat of 1, qid 6, is dropped; 5 is "NULL").
    assert dataset["test"]["id"] == ["3", "4", "7"] and dataset["train"]["id"] == ["1", "2"]
    assert [(d["id"], d["duplicate_of"]) for d in report["test_duplicates"]] == [("7", "3")]
    assert [(d["id"], d["duplicate_of"]) for d in report["duplicates"]] == [("6", "1")]
    assert report["test_duplicates_kept"] == 1 and report["leakage_dropped"] == 0
    assert "duplicates inside the test split, kept and reported: 1" in card(tmp_path / "out")


def test_num_proc_two_resolves_a_leak_across_process_ranges_the_same_way(tmp_path):
    # 2 processes split the records in two ranges: the leaked train copy is in the first, its test triplet in the
    # second, and the repeat of a train triplet in the second too.
    root = make_pathvqa(tmp_path / "src", leaked=1, train_repeats=1)
    one = build_dataset("pathvqa", root, tmp_path / "one")
    two = build_dataset("pathvqa", root, tmp_path / "two", num_proc=2)
    for report in (one, two):
        assert report["splits"] == {"train": 4, "validation": 2, "test": 2}
        assert [(d["id"], d["duplicate_of"]) for d in report["leakage"]] == [("train_0", "test_0")]
        assert [(d["id"], d["duplicate_of"]) for d in report["duplicates"]] == [("train_5", "train_1")]
    a, b = load_from_disk(str(tmp_path / "one")), load_from_disk(str(tmp_path / "two"))
    assert {k: v["id"] for k, v in a.items()} == {k: v["id"] for k, v in b.items()}


def test_resolve_duplicates_ranks_official_splits_and_keeps_hashed_splits_first_copy_wins():
    keys = ["a", "a", "a", "b", "b", "c", "c", None, "d", "d"]
    splits = ["train", "test", "test", "train", "validation", "validation", "test", "train", "train", "test"]
    official = ["train", "test", "test", "train", "validation", "validation", "test", "train", None, None]
    resolved = resolve_duplicates(keys, splits, official)
    # a: test owns it, 0 leaks, 2 repeats 1 inside test and stays; b: validation outranks train, 3 leaks;
    # c: test outranks validation, 5 leaks; 7 is skipped; d: no official split, first copy (8) wins, 9 is a duplicate.
    assert resolved.keep == [1, 2, 4, 6, 8]
    assert resolved.leaked == [(0, 1), (3, 4), (5, 6)]
    assert resolved.test_repeats == [(2, 1)]
    assert resolved.dropped == [(9, 8)]


# Published split sizes ------------------------------------------------------------------------------------------


def test_vqa_rad_with_the_real_leak_and_repeats_has_exactly_the_published_sizes(tmp_path):
    # As on OSF: 1,797 train questions of which 3 repeat a train triplet and 1 a test triplet, 451 test questions.
    root = make_vqa_rad(tmp_path / "src", rows=VQA_RAD_PUBLISHED, leaked=1, train_repeats=3)
    report = build_dataset("vqa-rad", root, tmp_path / "out")
    assert report["records_read"] == 2_248
    assert report["splits"] == VQA_RAD_PUBLISHED
    assert report["leakage_dropped"] == 1 and report["duplicates_dropped"] == 3
    assert report["published_splits"]["equal"] is True
    text = card(tmp_path / "out")
    assert "| train | 1,793 | 1,793 |" in text and "| test | 451 | 451 |" in text
    assert "Every split has exactly its published size." in text


@pytest.mark.slow
def test_slake_english_has_exactly_the_published_sizes(tmp_path):
    root = make_slake(tmp_path / "src", rows=SLAKE_PUBLISHED, leaked=2)
    report = build_dataset("slake", root, tmp_path / "out")
    assert report["splits"] == SLAKE_PUBLISHED and report["published_splits"]["equal"] is True
    assert report["leakage_dropped"] == 2
    # Both languages: SLAKE's published English sizes no longer apply, and the card shows no comparison.
    report = build_dataset("slake", root, tmp_path / "both", reader_options={"languages": "en,zh"})
    assert report["published_splits"] is None and "| split | rows |\n" in card(tmp_path / "both")


@pytest.mark.slow
def test_pathvqa_has_exactly_the_published_sizes(tmp_path):
    root = make_pathvqa(tmp_path / "src", rows=PATHVQA_PUBLISHED)
    report = build_dataset("pathvqa", root, tmp_path / "out", num_proc=2)
    assert report["splits"] == PATHVQA_PUBLISHED and report["published_splits"]["equal"] is True
    assert len(load_from_disk(str(tmp_path / "out"))["test"]) == 6_719


def test_a_replica_that_differs_from_the_published_sizes_says_so(tmp_path):
    report = build_dataset("pathvqa", make_pathvqa(tmp_path / "src", test_repeats=1), tmp_path / "out")
    assert report["splits"]["test"] == 3 and report["published_splits"]["equal"] is False
    text = card(tmp_path / "out")
    assert "**Not the published sizes.**" in text
    assert "- test: 3 rows, published 6,719" in text and "- train: 4 rows, published 19,654" in text


# Hub copies -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hub(hub_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("hub-builds")
    env = {**os.environ, **hub_server.client_env(tmp_path_factory.mktemp("hub-builds-hf-home"))}
    done = subprocess.run(
        [sys.executable, str(HUB_BUILDS), str(work / "report.json"), str(work)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"hub_builds.py failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    report = json.loads((work / "report.json").read_text())
    report["work"] = work
    return report


def scenario(hub: dict, name: str) -> dict:
    assert "error" not in hub[name], f"scenario {name} raised:\n{hub[name]['error']}"
    return hub[name]


def built(run: dict) -> Path:
    assert run["rc"] == 0 and run["exception"] is None, (run["output"], run["exception"])
    return Path(run["args"][2])


@pytest.mark.slow
def test_a_hub_copy_builds_at_the_pinned_commit_with_its_leak_resolved(hub):
    result = scenario(hub, "vqa_rad")
    folder = built(result["pinned"])
    dataset = load_from_disk(str(folder))
    # v1: train 6 + 1 leaked copy of test_0 (first) + 1 repeat of train_0; test 4 + 1 repeat of test_0.
    assert {name: len(split) for name, split in dataset.items()} == {"train": 6, "test": 5}
    plan = [item for item in result["plan_v1"] if item["split"] == "test"]
    assert dataset["test"]["question"] == [item["question"] for item in plan]
    assert dataset["test"]["answer_type"] == ["closed" if item["closed"] else "open" for item in plan]
    assert set(dataset["test"]["answer_type_source"]) == {"derived"}  # the copy has no type column
    report = json.loads((folder / "build_report.json").read_text())
    assert report["hub"] == {
        "repo_id": f"{hub['user']}/vqa-rad",
        "revision": result["sha_v1"],
        "sha": result["sha_v1"],
    }
    assert report["src_dir"] == f"hf://datasets/{hub['user']}/vqa-rad@{result['sha_v1']}"
    assert (report["leakage_dropped"], report["duplicates_dropped"], report["test_duplicates_kept"]) == (1, 1, 1)
    assert f"at revision `{result['sha_v1']}`" in card(folder) and f"datasets/{hub['user']}/vqa-rad)" in card(folder)


@pytest.mark.slow
def test_a_hub_copy_at_main_resolves_to_its_commit_and_has_the_published_sizes(hub):
    result = scenario(hub, "vqa_rad")
    for run in ("main", "latest"):
        folder = built(result[run])
        report = json.loads((folder / "build_report.json").read_text())
        assert report["hub"]["sha"] == result["sha_v2"]
        assert report["splits"] == VQA_RAD_PUBLISHED and report["published_splits"]["equal"] is True
        assert "Every split has exactly its published size." in card(folder)
    assert "(asked for `main`)" in card(built(result["main"]))
    assert "Split sizes equal the published ones." in result["main"]["output"]


@pytest.mark.slow
def test_hub_copies_of_pathvqa_slake_and_rocov2_build(hub):
    pathvqa = load_from_disk(str(built(scenario(hub, "pathvqa")["build"])))
    # make_pathvqa_hub: 6 / 2 / 4, plus one repeat of test_0 kept in test.
    assert {name: len(split) for name, split in pathvqa.items()} == {"train": 6, "validation": 2, "test": 5}
    assert pathvqa["test"]["question"][0] == pathvqa["test"]["question"][4]
    slake = scenario(hub, "slake")
    english = load_from_disk(str(built(slake["english"])))
    # make_slake's English questions: train 2 (+1 leaked copy of the test question, which leaves), validation 1,
    # test 1; with Chinese, train 3.
    assert {name: len(split) for name, split in english.items()} == {"train": 2, "validation": 1, "test": 1}
    assert english["test"]["question"] == ["What modality?"] and english["train"]["answer_type"] == ["closed", "open"]
    both = load_from_disk(str(built(slake["both"])))
    assert len(both["train"]) == 3 and "是" in both["train"]["answer"]
    rocov2 = load_from_disk(str(built(scenario(hub, "rocov2")["build"])))
    assert {name: len(split) for name, split in rocov2.items()} == {"train": 3, "validation": 1, "test": 2}
    assert rocov2["test"]["id"] == ["ROCOv2_2023_test_000001", "ROCOv2_2023_test_000002"]
    assert rocov2["train"][0]["concepts"] == ["C0040405", "C0817096"]
    assert rocov2["train"][0]["text"] == "Axial CT of the chest, case ROCOv2_2023_train_000001."


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_repo", "no dataset repo {user}/no-such-dataset on the Hub"),
        ("missing_revision", "the dataset repo {user}/vqa-rad has no revision 'no-such-branch'"),
        ("missing_column", "required column 'question' is missing (found: image, query, answer)"),
        ("unknown_option", "unknown --reader-option languages for the vqa-rad reader; it takes no options"),
        (
            "no_hub_reader",
            "nih cannot be built from the Hub; Hub copies are read for: vqa-rad, pathvqa, slake, rocov2",
        ),
        ("malformed", "a Hub source is hf://datasets/OWNER/NAME[@REVISION]"),
    ],
)
def test_a_bad_hub_source_is_one_line_naming_it(hub, case, expected):
    run = scenario(hub, "errors")[case]
    assert run["rc"] in (1, 2) and run["exception"] is None, run
    errors = [line for line in run["output"].splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected.format(user=hub["user"]) in errors[0], run["output"]
    if case == "missing_column":
        assert f"hf://datasets/{hub['user']}/vqa-rad-renamed@" in errors[0]
    assert not Path(run["args"][2]).exists()
