"""Official splits, deterministic patient-level hash splits, and the leakage check."""

from __future__ import annotations

from collections import Counter

import pytest

from radtune.dataprep.splits import (
    PatientLeakageError,
    assign_splits,
    check_patient_leakage,
    hash_split,
    normalise_split_name,
    parse_ratios,
)


def test_official_names_are_normalised():
    assert normalise_split_name("validate") == "validation"  # MIMIC-CXR
    assert normalise_split_name("valid") == "validation"  # CheXpert Plus, ROCOv2
    assert normalise_split_name("val") == "validation"  # PathVQA
    assert normalise_split_name("") is None and normalise_split_name(None) is None
    with pytest.raises(ValueError, match="unknown split name 'holdout'"):
        normalise_split_name("holdout")


def test_official_split_is_kept():
    assert assign_splits(["train", "validate", "test"], ["a", "b", "c"]) == ["train", "validation", "test"]


def test_hash_split_is_deterministic_patient_level_and_follows_ratios():
    patients = [f"P{n}" for n in range(2000) for _ in range(3)]  # three images per patient
    splits = assign_splits([None] * len(patients), patients, (0.7, 0.2, 0.1))
    assert splits == assign_splits([None] * len(patients), patients, (0.7, 0.2, 0.1))
    check_patient_leakage(patients, splits)  # every patient's images in one split
    counts = Counter(splits)
    assert abs(counts["train"] / len(splits) - 0.7) < 0.03
    assert abs(counts["validation"] / len(splits) - 0.2) < 0.03
    assert hash_split("P1", (1, 0, 0)) == "train"


def test_train_val_rows_never_go_to_test():
    splits = assign_splits(["train_val"] * 500 + ["test"] * 10, [f"P{n}" for n in range(510)])
    assert set(splits[:500]) == {"train", "validation"} and set(splits[500:]) == {"test"}


def test_patient_in_two_splits_fails_loudly():
    with pytest.raises(PatientLeakageError, match=r"1 patient\(s\).*P7: test, train"):
        check_patient_leakage(["P1", "P7", "P7", None, None], ["train", "train", "test", "train", "test"])


def test_ratios_are_checked():
    assert parse_ratios("8,1,1") == pytest.approx((0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="three non-negative"):
        parse_ratios("0.9,0.1")
