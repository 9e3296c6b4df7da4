"""Train / validation / test assignment: the source's official split, else a patient-level hash split.

A hash split puts every record of a patient in the same split, and gives the same answer on every machine
and every run (no random state): the patient id is hashed with a salt and the hash picks the split from the
cumulative ratios. Records with no patient id fall back to their study id, then to their own id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

SPLIT_NAMES = ("train", "validation", "test")
# Official split names as sources spell them → the names of the built dataset.
_ALIASES = {
    "train": "train",
    "training": "train",
    "validate": "validation",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
# Readers mark rows that the official split puts in "train or validation" (NIH's train_val_list.txt).
TRAIN_VAL = "train_val"
DEFAULT_RATIOS = (0.8, 0.1, 0.1)


class PatientLeakageError(ValueError):
    """A patient's records ended up in more than one split."""


def normalise_split_name(name: str | None) -> str | None:
    """`validate`/`valid`/`val` → `validation` etc.; `None` or `""` stays `None`.

    Raises:
        `ValueError`: an unknown split name.
    """
    if name is None or not str(name).strip():
        return None
    key = str(name).strip().lower()
    if key in ("train_val", "trainval", "train+validation"):
        return TRAIN_VAL
    if key not in _ALIASES:
        raise ValueError(f"unknown split name {name!r} (expected one of: {', '.join(sorted(_ALIASES))})")
    return _ALIASES[key]


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """`"0.8,0.1,0.1"` (or a sequence) → train/validation/test ratios summing to 1.

    Raises:
        `ValueError`: not three non-negative numbers with a positive sum.
    """
    values = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers (train,validation,test), got {text!r}")
    total = sum(values)
    return tuple(v / total for v in values)  # type: ignore[return-value]


def hash_fraction(key: str, salt: str = "radtune") -> float:
    """A stable number in [0, 1) for `key`."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hash_split(key: str, ratios: Sequence[float] = DEFAULT_RATIOS, salt: str = "radtune") -> str:
    """The split of `key` under `ratios` (train, validation, test)."""
    fraction = hash_fraction(key, salt)
    cumulative = 0.0
    for name, ratio in zip(SPLIT_NAMES, ratios, strict=False):
        cumulative += ratio
        if fraction < cumulative:
            return name
    return next(name for name, ratio in reversed(list(zip(SPLIT_NAMES, ratios, strict=False))) if ratio > 0)


def assign_splits(
    official: Sequence[str | None],
    group_keys: Sequence[str | None],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    salt: str = "radtune",
) -> list[str]:
    """The split of each record.

    Args:
        official (`Sequence[str | None]`): each record's official split (`None` where the source has none;
            `train_val` for records the build divides between train and validation).
        group_keys (`Sequence[str | None]`): each record's patient key (patient id, else study id, else its own id).
        ratios (`Sequence[float]`, *optional*, defaults to `(0.8, 0.1, 0.1)`): train/validation/test ratios for
            hashed records; `train_val` records use the train and validation ratios only.
        salt (`str`, *optional*): changes the hash split without changing the ratios.

    Returns:
        `list[str]`: `train`, `validation` or `test` per record.
    """
    ratios = parse_ratios(ratios)
    train, validation, _ = ratios
    train_val_ratios = parse_ratios((train, validation, 0.0)) if train + validation > 0 else (1.0, 0.0, 0.0)
    result = []
    for split, key in zip(official, group_keys, strict=False):
        split = normalise_split_name(split)
        if split in SPLIT_NAMES:
            result.append(split)
            continue
        if key is None:
            raise ValueError("a record has neither an official split nor a key to hash")
        result.append(hash_split(key, train_val_ratios if split == TRAIN_VAL else ratios, salt))
    return result


def check_patient_leakage(patient_ids: Iterable[str | None], splits: Iterable[str]) -> None:
    """Fail if any patient has records in more than one split.

    Raises:
        `PatientLeakageError`: naming how many patients leak and the first few, with their splits.
    """
    seen: dict[str, str] = {}
    leaking: dict[str, set[str]] = {}
    for patient, split in zip(patient_ids, splits, strict=False):
        if patient is None or patient == "":
            continue
        first = seen.setdefault(patient, split)
        if first != split:
            leaking.setdefault(patient, {first}).add(split)
    if leaking:
        examples = "; ".join(f"{p}: {', '.join(sorted(s))}" for p, s in list(leaking.items())[:5])
        raise PatientLeakageError(
            f"{len(leaking)} patient(s) appear in more than one split (e.g. {examples}); a patient-level split "
            "must keep each patient's images together. Fix the source's split file or drop its split column."
        )
