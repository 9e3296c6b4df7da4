"""The phantom generator: the three real layouts, labels from the drawing, determinism, CLI, learnability."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from radtune.common.labeler import OBSERVATIONS
from radtune.dataprep.phantoms import (
    DEFAULT_PREVALENCES,
    Phantom,
    generate_phantoms,
    iter_phantoms,
    make_preview,
)
from radtune.dataprep.phantoms.drawing import draw_phantom
from radtune.dataprep.phantoms.findings import sample_phantom
from radtune.dataprep.phantoms.generator import draw_study
from radtune.dataprep.phantoms.layouts import CHEXPERT_PLUS_COLUMNS

N = 24
SIZE = 64
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

SUBJECT_ID = re.compile(r"^1\d{7}$")
STUDY_ID = re.compile(r"^5\d{7}$")
DICOM_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
# The official MIMIC-CXR section splitter.
MIMIC_SECTION = re.compile(r"\n ([A-Z ()/,-]+):\s")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`built(layout)` → root of a small phantom build of that layout, made once per module."""
    roots = {}

    def get(layout: str) -> Path:
        if layout not in roots:
            roots[layout] = generate_phantoms(
                tmp_path_factory.mktemp(layout) / "out", n=N, layout=layout, image_size=SIZE, seed=0, workers=1
            )
        return roots[layout]

    return get


def _ground_truth(root: Path) -> list[dict]:
    lines = (root / "phantom_findings.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _read_gz_csv(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _positives(labels: dict) -> set[str]:
    return {name for name, value in labels.items() if value in (1.0, "1.0")}


# Layouts


def test_every_root_carries_the_phantom_marker(built):
    for layout in ("mimic-cxr", "chexpert-plus", "nih"):
        marker = json.loads((built(layout) / "PHANTOM.json").read_text())
        assert marker["source"] == "phantom"
        assert marker["license"] == "CC0-1.0"
        assert marker["credentialed"] is False
        assert marker["seed"] == 0 and marker["layout"] == layout
        assert marker["arguments"]["n"] == N and marker["arguments"]["image_size"] == SIZE
        assert marker["generator_version"]


def test_mimic_cxr_layout(built):
    root = built("mimic-cxr")
    metadata = _read_gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz")
    split = _read_gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz")
    chexpert = _read_gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz")
    assert list(metadata[0]) == [
        "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
        "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ]  # fmt: skip
    assert list(split[0]) == ["dicom_id", "study_id", "subject_id", "split"]
    assert list(chexpert[0]) == ["subject_id", "study_id", *sorted(OBSERVATIONS)]
    assert len(metadata) == len(split) == len(chexpert) == N

    subjects_per_split = {}
    for row, split_row in zip(metadata, split, strict=True):
        assert SUBJECT_ID.match(row["subject_id"]) and STUDY_ID.match(row["study_id"]), row
        assert DICOM_ID.match(row["dicom_id"]), row["dicom_id"]
        assert re.fullmatch(r"2\d{7}", row["StudyDate"]) and re.fullmatch(r"\d{1,6}\.\d+", row["StudyTime"])
        assert row["ViewPosition"] in ("PA", "AP") and row["Rows"] == row["Columns"] == str(SIZE)
        subject, study = row["subject_id"], row["study_id"]
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}"
        image = folder / f"s{study}" / f"{row['dicom_id']}.jpg"
        assert image.is_file() and Image.open(image).format == "JPEG" and Image.open(image).size == (SIZE, SIZE)
        assert (folder / f"s{study}.txt").is_file()
        assert (split_row["dicom_id"], split_row["study_id"], split_row["subject_id"]) == (
            row["dicom_id"], study, subject,
        )  # fmt: skip
        assert split_row["split"] in ("train", "validate", "test")
        subjects_per_split.setdefault(subject, set()).add(split_row["split"])
    assert all(len(splits) == 1 for splits in subjects_per_split.values()), "a patient in two splits"
    assert len(subjects_per_split) < N, "expected several studies per patient"
    assert {row["study_id"] for row in chexpert} == {row["study_id"] for row in metadata}
    assert all(value in ("", "1.0", "0.0", "-1.0") for row in chexpert for value in list(row.values())[2:])
    # Nothing else under files/: one image folder and one report per study.
    assert len(list((root / "files").rglob("*.jpg"))) == len(list((root / "files").rglob("*.txt"))) == N


def test_mimic_cxr_gzip_is_reproducible(built):
    for name in ("metadata", "split", "chexpert"):
        header = (built("mimic-cxr") / f"mimic-cxr-2.0.0-{name}.csv.gz").read_bytes()[:10]
        assert header[:3] == b"\x1f\x8b\x08"
        assert header[3] == 0, "no FNAME (or other) flag: no file name in the gzip header"
        assert header[4:8] == b"\x00\x00\x00\x00", "mtime must be 0"


def test_mimic_cxr_reports_look_like_the_real_ones(built):
    for path in sorted((built("mimic-cxr") / "files").rglob("*.txt")):
        text = path.read_text(encoding="utf-8")
        assert text.lstrip().startswith("FINAL REPORT")
        headers = MIMIC_SECTION.findall(text)
        assert headers == ["EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "FINDINGS", "IMPRESSION"]
        assert "___" in text
        assert max(len(line) for line in text.splitlines()) <= 79
        assert all(line.startswith(" ") for line in text.splitlines()[1:] if line)


def test_chexpert_plus_layout(built):
    root = built("chexpert-plus")
    with open(root / "df_chexpert_plus_240401.csv", encoding="utf-8", newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert header == list(CHEXPERT_PLUS_COLUMNS) and len(header) == 27
    assert header[:3] == ["path_to_image", "path_to_dcm", "frontal_lateral"] and header[-1] == "split"
    assert len(rows) == N
    for row in rows:
        match = re.fullmatch(r"(train|valid)/patient(\d{5})/study(\d+)/view1_frontal\.jpg", row["path_to_image"])
        assert match, row["path_to_image"]
        assert match.group(1) == row["split"] and row["deid_patient_id"] == f"patient{match.group(2)}"
        assert row["patient_report_date_order"] == match.group(3)
        assert row["path_to_dcm"] == row["path_to_image"][:-4] + ".dcm"
        assert not (root / row["path_to_image"]).exists()  # the CSV says .jpg ...
        png = root / "PNG" / (row["path_to_image"][:-4] + ".png")  # ... the disk holds PNG
        assert png.is_file() and Image.open(png).format == "PNG"
        assert row["frontal_lateral"] == "Frontal" and row["ap_pa"] in ("AP", "PA")
        assert row["report"].startswith("NARRATIVE:") and "FINDINGS:" in row["report"]
        assert row["section_findings"] in row["report"] and row["section_impression"] in row["report"]
        assert row["sex"] in ("Male", "Female") and float(row["age"]) > 0
    for part in ("findings", "impression", "report"):
        lines = (root / "chexbert_labels" / f"{part}_fixed.json").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        assert [record["path_to_image"] for record in records] == [row["path_to_image"] for row in rows]
        for record in records:
            assert set(record) == {"path_to_image", *OBSERVATIONS}
            assert all(record[name] in (1.0, 0.0, -1.0, None) for name in OBSERVATIONS)


def test_nih_layout(built):
    root = built("nih")
    lines = (root / "Data_Entry_2017.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
    )
    allowed = {
        "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
        "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
    }  # fmt: skip
    patients = {}
    for line in lines[1:]:
        assert line.endswith(","), "rows end with a trailing comma, as in the original"
        values = line.split(",")
        assert len(values) == 12 and values[-1] == ""
        name, labels, follow_up, patient = values[:4]
        assert re.fullmatch(r"\d{8}_\d{3}\.png", name)
        assert name == f"{int(patient):08d}_{int(follow_up):03d}.png"
        assert labels == "No Finding" or set(labels.split("|")) <= allowed
        assert values[5] in ("M", "F") and values[6] in ("PA", "AP")
        assert Image.open(root / "images" / name).format == "PNG"
        patients.setdefault(patient, []).append(name)
    assert len(lines) - 1 == N and len(patients) < N
    train = (root / "train_val_list.txt").read_text().splitlines()
    test = (root / "test_list.txt").read_text().splitlines()
    assert sorted(train + test) == sorted(name for names in patients.values() for name in names)
    assert not {name[:8] for name in train} & {name[:8] for name in test}, "split by Patient ID"


# Labels come from the drawing


def test_ground_truth_is_what_was_drawn(built):
    root = built("nih")
    for record, (phantom, pixels) in zip(_ground_truth(root), iter_phantoms(N, seed=0, image_size=SIZE), strict=True):
        assert record["findings"]["ctr"] == phantom.ctr and record["findings"]["effusion"] == phantom.effusion
        assert record["targets"] == phantom.targets()
        assert np.array_equal(np.asarray(Image.open(root / record["image"])), pixels)


def test_labels_match_the_drawn_findings(built):
    truth = {record["image"]: record for record in _ground_truth(built("mimic-cxr"))}
    chexpert = {row["study_id"]: row for row in _read_gz_csv(built("mimic-cxr") / "mimic-cxr-2.0.0-chexpert.csv.gz")}
    for image, record in truth.items():
        study = image.split("/")[3][1:]
        labels = {name: chexpert[study][name] for name in OBSERVATIONS}
        assert _positives(labels) == _positives(record["chexpert"]), image
        assert all(labels[name] in ("", "0.0") for name in OBSERVATIONS if name not in _positives(labels))

    root = built("chexpert-plus")
    truth = {record["image"]: record for record in _ground_truth(root)}
    for part in ("findings", "impression", "report"):
        for line in (root / "chexbert_labels" / f"{part}_fixed.json").read_text().splitlines():
            labels = json.loads(line)
            record = truth["PNG/" + labels.pop("path_to_image")[:-4] + ".png"]
            assert _positives(labels) == _positives(record["chexpert"])

    for line in (built("nih") / "Data_Entry_2017.csv").read_text().splitlines()[1:]:
        name, labels = line.split(",")[:2]
        record = next(r for r in _ground_truth(built("nih")) if r["image"] == f"images/{name}")
        assert labels == record["nih"]


def test_label_mapping():
    phantom = Phantom(ctr=0.6, effusion="left", effusion_size="small", lesion="mass", lesion_size_mm=40,
                      lesion_lobe="right upper lobe", consolidation="left lower lobe", devices=("pacemaker",))  # fmt: skip
    assert phantom.positive_observations() == {
        "Cardiomegaly", "Pleural Effusion", "Lung Lesion", "Consolidation", "Lung Opacity", "Support Devices",
    }  # fmt: skip
    assert phantom.nih_labels() == "Cardiomegaly|Consolidation|Effusion|Mass"
    devices_only = Phantom(ctr=0.44, devices=("endotracheal tube",))
    assert devices_only.positive_observations() == {"No Finding", "Support Devices"}
    assert devices_only.nih_labels() == "No Finding"


_MENTIONS = {
    "Cardiomegaly": r"cardiomegaly|heart size|enlarged heart",
    "Pleural Effusion": r"pleural effusion",
    "Pneumothorax": r"pneumothorax",
    "Lung Lesion": r"nodule|mass",
    "Consolidation": r"consolidation",
    "Lung Opacity": r"opacity",
    "Edema": r"edema",
    "Enlarged Cardiomediastinum": r"mediastinal contours",
    "Support Devices": r"endotracheal tube|central venous catheter|pacemaker",
}


def test_reports_mention_what_the_labels_say(built):
    root = built("chexpert-plus")
    with open(root / "df_chexpert_plus_240401.csv", encoding="utf-8", newline="") as stream:
        reports = {row["path_to_image"]: row["report"].lower() for row in csv.DictReader(stream)}
    for line in (root / "chexbert_labels" / "report_fixed.json").read_text().splitlines():
        labels = json.loads(line)
        sentences = re.split(r"(?<=\.)\s", reports[labels["path_to_image"]])
        for name, pattern in _MENTIONS.items():
            mentioning = [s for s in sentences if re.search(pattern, s)]
            if labels[name] == 1.0:
                assert any(not s.startswith(("no ", "there is no")) for s in mentioning), (name, mentioning)
            elif labels[name] == 0.0:
                assert mentioning and all(re.search(r"\bno\b|normal", s) for s in mentioning), (name, mentioning)
            else:
                assert not mentioning, (name, mentioning)


def test_reports_agree_with_the_rule_labeler():
    labeler = pytest.importorskip("radtune.common.labeler")
    from radtune.dataprep.phantoms.generator import describe_study
    from radtune.dataprep.phantoms.reports import section_labels

    for index in range(300):
        phantom = sample_phantom(np.random.default_rng([3, index]), DEFAULT_PREVALENCES)
        report = describe_study(phantom, seed=3, index=index, age=50, sex="F", first_study=True)
        impression = "\n".join(report.impression_lines())
        assert labeler.label_report(impression) == section_labels(report.impression), impression
        assert labeler.label_report(report.findings_text) == section_labels(report.findings), report.findings_text


def test_default_prevalences_leave_about_forty_percent_normal():
    phantoms = [sample_phantom(np.random.default_rng([0, i]), DEFAULT_PREVALENCES) for i in range(2000)]
    normal = np.mean([p.is_normal for p in phantoms])
    assert 0.36 <= normal <= 0.50
    assert np.mean([p.cardiomegaly for p in phantoms]) == pytest.approx(0.2, abs=0.03)
    assert all(p.ctr > 0.5 for p in phantoms if p.cardiomegaly) and all(p.ctr < 0.5 for p in phantoms if not p.cardiomegaly)
    assert sum(p.effusion is not None and p.pneumothorax is not None for p in phantoms) > 0, "findings co-occur"


def test_prevalences_are_configurable(tmp_path):
    root = generate_phantoms(tmp_path / "all", n=12, layout="nih", image_size=32, seed=4, workers=1,
                             prevalences={"pneumothorax": 1.0, "support_devices": 0.0})  # fmt: skip
    records = _ground_truth(root)
    assert all(r["targets"]["pneumothorax"] and not r["targets"]["support_devices"] for r in records)


@pytest.mark.parametrize(
    "finding, side",
    [
        (dict(effusion="right", effusion_size="moderate"), "image-left"),
        (dict(effusion="left", effusion_size="moderate"), "image-right"),
        (dict(pneumothorax="right", pneumothorax_size="large"), "image-left"),
        (dict(pneumothorax="left", pneumothorax_size="large"), "image-right"),
        (dict(lesion="mass", lesion_size_mm=50, lesion_lobe="left upper lobe"), "image-right"),
        (dict(consolidation="right lower lobe"), "image-left"),
    ],
)
def test_findings_are_drawn_on_their_side(finding, side):
    """The same anatomy drawn with and without a finding differs on the finding's side (patient right = image left)."""
    size = 96
    plain = draw_phantom(Phantom(ctr=0.44), size, np.random.default_rng(7)).astype(float)
    with_finding = draw_phantom(Phantom(ctr=0.44, **finding), size, np.random.default_rng(7)).astype(float)
    difference = np.abs(with_finding - plain)
    left, right = difference[:, : size // 2].sum(), difference[:, size // 2 :].sum()
    assert difference.max() > 10
    assert (left > 3 * right) if side == "image-left" else (right > 3 * left)


def test_cardiomegaly_widens_the_heart():
    size = 128
    rows = slice(int(size * 0.62), int(size * 0.72))  # the lower heart, above the domes

    def dark_lung_columns(ctr):
        image = draw_phantom(Phantom(ctr=ctr), size, np.random.default_rng(3)).astype(float)
        return (image[rows].mean(axis=0) < 90).sum()

    assert dark_lung_columns(0.65) < dark_lung_columns(0.40) - size * 0.1


# Determinism


def test_same_seed_same_bytes_and_different_seed_different_bytes(tmp_path):
    common = dict(n=10, layout="mimic-cxr", image_size=48)
    first = generate_phantoms(tmp_path / "a", seed=5, workers=1, **common)
    second = generate_phantoms(tmp_path / "b", seed=5, workers=2, **common)  # a pool writes the same bytes
    other = generate_phantoms(tmp_path / "c", seed=6, workers=1, **common)
    assert _tree_digest(first) == _tree_digest(second)
    assert _tree_digest(first) != _tree_digest(other)


def test_studies_do_not_depend_on_generation_order():
    phantom, pixels = draw_study(5, 0, 48, DEFAULT_PREVALENCES)
    later = list(iter_phantoms(3, seed=0, image_size=48, start=4))[1]
    assert later[0] == phantom and np.array_equal(later[1], pixels)


# Errors and the CLI


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n=0), "n must be"),
        (dict(layout="padchest"), "layout must be one of"),
        (dict(image_size=16), "image_size"),
        (dict(seed=-1), "seed"),
        (dict(prevalences={"emphysema": 0.1}), "unknown finding 'emphysema'"),
        (dict(prevalences={"nodule": 1.5}), "between 0 and 1"),
        (dict(prevalences={"nodule": 0.6, "mass": 0.6}), "nodule \\+ mass"),
        (dict(workers=0), "workers"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_phantoms(tmp_path / "out", **{"n": 2, **kwargs})
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate_phantoms(tmp_path, n=2)


def test_cli(tmp_path):
    from radtune.common.cli import cli

    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["data", "phantoms", str(tmp_path / "nih"), "--n", "5", "--layout", "nih", "--image-size", "40",
         "--seed", "2", "--workers", "1", "--prevalence", "cardiomegaly=1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 5 nih phantoms" in result.output
    assert len(list((tmp_path / "nih" / "images").glob("*.png"))) == 5
    assert all(r["targets"]["cardiomegaly"] for r in _ground_truth(tmp_path / "nih"))

    help_text = runner.invoke(cli, ["data", "phantoms", "--help"]).output
    assert "radtune data phantoms" in help_text and "--layout" in help_text

    again = runner.invoke(cli, ["data", "phantoms", str(tmp_path / "nih"), "--n", "2"])
    assert again.exit_code == 1 and "not an empty folder" in again.output
    bad_layout = runner.invoke(cli, ["data", "phantoms", str(tmp_path / "x"), "--layout", "padchest"])
    assert bad_layout.exit_code == 2 and "padchest" in bad_layout.output
    bad_prevalence = runner.invoke(cli, ["data", "phantoms", str(tmp_path / "y"), "--prevalence", "oops"])
    assert bad_prevalence.exit_code == 2 and "FINDING=PROBABILITY" in bad_prevalence.output
    unknown = runner.invoke(cli, ["data", "phantoms", str(tmp_path / "z"), "--n", "2", "--prevalence", "hernia=0.1"])
    assert unknown.exit_code == 1 and "unknown finding 'hernia'" in unknown.output


def test_preview(tmp_path):
    path = make_preview(tmp_path / "docs" / "phantoms.png", count=4, image_size=64)
    image = Image.open(path)
    assert image.format == "PNG" and image.width > 200
    assert path.stat().st_size < 500_000


# Learnability


@pytest.mark.slow
def test_a_linear_model_sees_every_drawn_finding(monkeypatch):
    """The fast check (600 training phantoms) of benchmarks/phantom_learnability.py, whose full run uses 2000."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the drawing processes inherit sys.path and find the module too
    from phantom_learnability import learnability

    aucs = learnability(n_train=600, n_test=300, image_size=96, model="logistic", seed=1)
    assert set(aucs) == {"cardiomegaly", "pleural_effusion", "pneumothorax", "nodule_or_mass", "consolidation",
                         "support_devices"}  # fmt: skip
    assert min(aucs.values()) >= 0.85, aucs
    assert np.mean(list(aucs.values())) >= 0.9, aucs
    for name in ("cardiomegaly", "pleural_effusion", "consolidation", "support_devices"):
        assert aucs[name] >= 0.9, aucs
