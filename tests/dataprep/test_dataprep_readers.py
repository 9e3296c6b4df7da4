"""Each reader on a tiny copy of its source's real layout, quirks included (see shared/docs/datasets.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dataprep_layouts import (
    make_chexpert_plus,
    make_imagefolder_csv,
    make_mimic,
    make_nih,
    make_pathvqa,
    make_roco_kaggle,
    make_roco_original,
    make_rocov2,
    make_slake,
    make_vqa_rad,
    read,
    write_text,
)

from radtune.dataprep.readers import READERS
from radtune.dataprep.records import read_csv


def test_every_source_has_a_reader():
    assert set(READERS) == {
        "rocov2", "roco", "mimic-cxr", "chexpert-plus", "nih", "vqa-rad", "slake", "pathvqa", "imagefolder-csv"
    }


@pytest.mark.parametrize("nested", [False, True], ids=["train/ID.jpg", "train_images/train/ID.jpg"])
def test_rocov2_both_unzip_layouts(tmp_path, nested):
    records = read("rocov2", make_rocov2(tmp_path, nested=nested))
    assert len(records) == 6
    assert {r["split"] for r in records} == {"train", "validation", "test"}
    first = records[0]
    assert first["id"] == "ROCOv2_2023_train_000001"
    assert first["text"] == "Axial CT of the chest, case train 1."
    assert first["concepts"] == ["C0040405", "C0817096"]  # union of concepts and concepts_manual, no repeats
    assert first["labels"] == ["X-Ray Computed Tomography", "Chest"]
    assert all(Path(r["image"]).is_file() for r in records)


def test_roco_original_leading_space_and_multiline_caption(tmp_path):
    records = read("roco", make_roco_original(tmp_path))
    by_id = {r["id"]: r for r in records}
    assert len(records) == 5
    assert by_id["ROCO_00020"]["text"] == "CT scan number 20 of the abdomen."  # leading space gone
    assert by_id["ROCO_00021"]["text"] == "Chest radiograph showing cardiomegaly and effusion."
    assert by_id["ROCO_00020"]["concepts"] == ["C0040405", "C0000726"]
    assert by_id["ROCO_00020"]["license"] == "CC BY"
    assert by_id["ROCO_00030"]["split"] == "validation"


def test_roco_kaggle_layout_keeps_rows_whose_files_are_missing(tmp_path):
    records = read("roco", make_roco_kaggle(tmp_path, missing=1))
    assert len(records) == 5
    missing = [r for r in records if not os.path.exists(r["image"])]
    assert [r["id"] for r in missing] == ["ROCO_00001"]  # the build counts it as missing_image
    assert records[1]["text"] == "CT image 2, with contrast."


def test_mimic_cxr_reports_labels_views_and_official_split(tmp_path):
    records = read("mimic-cxr", make_mimic(tmp_path))
    assert len(records) == 5
    first = records[0]
    assert first["patient_id"] == "10000032" and first["study_id"] == "50414267"
    assert first["view"] == "PA" and records[1]["view"] == "LATERAL"
    assert first["labels"] == ["Cardiomegaly"]  # 1.0 is positive; -1.0 (uncertain) and blank are not
    assert first["findings"].startswith("There is no focal consolidation") and "\n" not in first["findings"]
    assert first["impression"] == "No acute cardiopulmonary process."
    no_sections = records[2]
    assert no_sections["findings"] == "" and no_sections["impression"] == ""
    assert no_sections["text"] == "Heart size is normal. Lungs are clear. Dr. ___ was notified by telephone."
    assert [r["split"] for r in records] == ["train", "train", "train", "test", "validate"]


def test_mimic_cxr_plain_csv_and_dicom_originals(tmp_path):
    records = read("mimic-cxr", make_mimic(tmp_path, gz=False, dicom=True))
    assert records[0]["image"].endswith(".dcm")
    assert records[1]["image"].endswith(".jpg")


def test_mimic_cxr_without_split_file_walks_the_files(tmp_path):
    root = make_mimic(tmp_path)
    (root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    records = read("mimic-cxr", root)
    assert len(records) == 5 and all(r["split"] is None for r in records)


@pytest.mark.parametrize("nested_png", [True, False], ids=["PNG/PNG", "PNG"])
@pytest.mark.parametrize("index_column", [True, False], ids=["index-column", "no-index"])
def test_chexpert_plus_jpg_paths_resolve_to_png_files(tmp_path, nested_png, index_column):
    records = read("chexpert-plus", make_chexpert_plus(tmp_path, nested_png=nested_png, index_column=index_column))
    assert len(records) == 4
    for record in records:
        assert record["image"].endswith(".png") and os.path.isfile(record["image"])
        assert record["id"].endswith(".jpg")
    first = records[0]
    assert first["labels"] == ["Cardiomegaly"]
    assert first["patient_id"] == "patient00001" and first["study_id"] == "patient00001/study1"
    assert first["text"] == "Heart is enlarged. Cardiomegaly." and first["view"] == "AP"
    assert records[1]["view"] == "Lateral"
    assert records[2]["text"] == "No acute disease." and records[2]["labels"] == ["No Finding"]
    assert records[3]["split"] == "valid"


@pytest.mark.parametrize("kaggle", [False, True], ids=["images", "images_00N/images"])
def test_nih_trailing_comma_labels_and_split_lists(tmp_path, kaggle):
    records = read("nih", make_nih(tmp_path, kaggle=kaggle))
    assert len(records) == 12
    first = records[0]
    assert first["id"] == "00000001_000.png"
    assert first["labels"] == ["Cardiomegaly", "Emphysema"]
    assert first["patient_id"] == "1" and first["view"] == "PA"
    assert records[2]["labels"] == ["No Finding"]
    assert {r["split"] for r in records} == {"train_val", "test"}
    assert all(os.path.isfile(r["image"]) for r in records)


def test_nih_csv_with_and_without_trailing_comma(tmp_path):
    path = write_text(tmp_path / "a.csv", "A,B,\n1,2,\n3,4\n")
    assert list(read_csv(path, required=("A", "B"))) == [{"A": "1", "B": "2"}, {"A": "3", "B": "4"}]


def test_vqa_rad_null_fields_int_answers_and_test_split(tmp_path):
    records = read("vqa-rad", make_vqa_rad(tmp_path))
    assert len(records) == 5
    assert records[1]["answer"] == "2"  # int in the JSON
    assert records[4]["question"] == ""  # "NULL": the build skips it as empty_text
    assert [r["split"] for r in records] == ["train", "train", "test", "test", "train"]
    # The source's CLOSED/OPEN, lowercased: every VQA reader writes `closed` / `open`.
    assert [(r["answer_type"], r["answer_type_source"]) for r in records[:4]] == [
        ("closed", "given"), ("open", "given"), ("closed", "given"), ("open", "given")
    ]
    assert records[0]["image"].endswith("VQA_RAD Image Folder/synpic12345.jpg")


@pytest.mark.parametrize("validation_name", ["validate.json", "validation.json"])
def test_slake_english_only_by_default(tmp_path, validation_name):
    root = make_slake(tmp_path, validation_name=validation_name)
    records = read("slake", root)
    assert len(records) == 4 and all("是" not in r["answer"] for r in records)
    assert [r["split"] for r in records] == ["train", "train", "validation", "test"]
    assert len(read("slake", root, languages="en,zh")) == 5
    assert [r["answer_type"] for r in records] == ["closed", "open", "closed", "open"]
    assert {r["answer_type_source"] for r in records} == {"given"}


def test_pathvqa_pickles(tmp_path):
    records = read("pathvqa", make_pathvqa(tmp_path))
    assert len(records) == 8
    assert {r["split"] for r in records} == {"train", "validation", "test"}
    # PathVQA has no answer type: "yes" makes a closed question, "hematoxylin and eosin" an open one.
    assert records[0]["answer_type"] == "closed" and records[1]["answer_type"] == "open"
    assert {r["answer_type_source"] for r in records} == {"derived"}
    assert records[0]["image"].endswith("pvqa/images/train/train_0422.jpg")


def test_imagefolder_csv_detects_columns(tmp_path):
    records = read("imagefolder-csv", make_imagefolder_csv(tmp_path))
    assert len(records) == 9 and records[0]["text"] == "caption 0" and records[0]["patient_id"] == "P0"
    assert os.path.isfile(records[0]["image"])
