"""Bad input, killed builds and Hub faults: each case ends in a clear error (the message asserted) or a counted skip
(the count asserted in `build_report.json`), never a traceback, `Aborted!` or a silent change.

Sections: source metadata files (readers), records and images (the build's counted skips), build hygiene (killed
builds, header-declared sizes), the Hub (dropped uploads, a wrong token, a Hub out of reach).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from pathlib import Path

import pydicom
import pytest
from click.testing import CliRunner
from dataprep_layouts import (
    make_chexpert_plus,
    make_imagefolder_csv,
    make_mimic,
    make_nih,
    make_pathvqa,
    make_roco_kaggle,
    make_rocov2,
    make_slake,
    make_vqa_rad,
    read,
    write_image,
    write_text,
)
from datasets import load_from_disk
from PIL import Image
from pydicom.data import get_testdata_file

from radtune.dataprep.build import TooManySkipsError, build_dataset, failed_report_path, staging_prefix
from radtune.dataprep.build_cli import build as build_command
from radtune.dataprep.build_cli import info as info_command
from radtune.dataprep.image_processing import ImageSkip, prepare_image
from radtune.dataprep.records import MissingColumnError, SourceFileError, SourceLayoutError
from radtune.dataprep.splits import PatientLeakageError


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".building-" in p.name)


def build_fails(*args: str) -> str:
    """Run `radtune data build ARGS`, check it failed with click's one-line error (no traceback, no bare
    `Aborted!`) and return its output."""
    result = CliRunner().invoke(build_command, [str(arg) for arg in args])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.output, result.exception)
    assert "Error: " in result.output and "Aborted!" not in result.output, result.output
    return result.output


# Source metadata files ------------------------------------------------------------------------------------------


def test_missing_required_column_names_file_and_column(tmp_path):
    root = make_nih(tmp_path / "src")
    table = root / "Data_Entry_2017.csv"
    table.write_text(table.read_text().replace("Patient ID", "PatientID"))
    with pytest.raises(MissingColumnError, match=r"Data_Entry_2017\.csv: required column 'Patient ID' is missing"):
        build_dataset("nih", root, tmp_path / "out")
    output = build_fails("nih", root, tmp_path / "out")
    assert "Data_Entry_2017.csv" in output and "'Patient ID'" in output
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


MISSING_COLUMNS = {
    "rocov2": (make_rocov2, "train_captions.csv", "ID,Text\nROCOv2_2023_train_000001,x\n", "'Caption'"),
    "roco": (make_roco_kaggle, "all_data/train/radiologytraindata.csv", "id,file,caption\nROCO_1,a.jpg,x\n", "'name'"),
    "chexpert-plus": (make_chexpert_plus, "df_chexpert_plus_240401.csv", "path_to_image,report\ntrain/p/s/v.jpg,x\n",
                      "'deid_patient_id'"),
    "slake": (make_slake, "train.json", json.dumps([{"img_name": "xmlab1/source.jpg", "question": "q"}]), "'answer'"),
}


@pytest.mark.parametrize("source", MISSING_COLUMNS)
def test_a_missing_column_names_file_and_column(source, tmp_path):
    make, name, text, column = MISSING_COLUMNS[source]
    root = make(tmp_path)
    write_text(root / name, text)
    with pytest.raises(MissingColumnError, match=re.escape(Path(name).name) + ".*" + column):
        read(source, root)


@pytest.mark.parametrize(
    ("source", "make", "option", "expected"),
    [
        ("vqa-rad", make_vqa_rad, "languages=en", "for the vqa-rad reader; it takes no options"),
        ("slake", make_slake, "language=en", "for the slake reader; its options are: languages"),
        ("roco", make_roco_kaggle, "subset=radiology", "for the roco reader; its options are: subsets"),
    ],
)
def test_an_unknown_reader_option_is_one_line_listing_the_reader_options(tmp_path, source, make, option, expected):
    root = make(tmp_path / "src")
    name = option.partition("=")[0]
    with pytest.raises(ValueError, match=f"unknown --reader-option {name} {expected}"):
        build_dataset(source, root, tmp_path / "out", reader_options={name: "x"})
    output = build_fails(source, root, tmp_path / "out", "--reader-option", option)
    assert output.strip().splitlines() == [f"Error: unknown --reader-option {name} {expected}"]
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_roco_unknown_layout(tmp_path):
    with pytest.raises(SourceLayoutError, match="neither the original ROCO layout"):
        read("roco", tmp_path)


def test_mimic_cxr_bad_split_file(tmp_path):
    root = make_mimic(tmp_path)
    with gzip.open(root / "mimic-cxr-2.0.0-split.csv.gz", "wt") as handle:
        handle.write("dicom_id,study_id,subject_id\n")
    with pytest.raises(MissingColumnError, match=r"mimic-cxr-2\.0\.0-split\.csv\.gz.*'split'"):
        read("mimic-cxr", root)


def test_pathvqa_pickle_cannot_run_code(tmp_path):
    root = make_pathvqa(tmp_path)
    with open(root / "pvqa" / "qas" / "train" / "train_qa.pkl", "wb") as handle:
        pickle.dump([{"image": Path("x"), "question": "q", "answer": "a"}], handle)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read("pathvqa", root)


def test_imagefolder_csv_missing_text_column(tmp_path):
    make_imagefolder_csv(tmp_path, rows=[("a.png", "P1")], header="file_name,patient_id")
    with pytest.raises(MissingColumnError, match=r"metadata\.csv.*text column"):
        read("imagefolder-csv", tmp_path)
    with pytest.raises(MissingColumnError, match=r"metadata\.csv.*'caption_en'"):
        read("imagefolder-csv", tmp_path, text_column="caption_en")


@pytest.mark.parametrize("item, kind", [(None, "null"), ("Is this a CT?", "str")], ids=["null", "string"])
@pytest.mark.parametrize("source", ["vqa-rad", "slake"])
def test_a_vqa_json_item_that_is_not_an_object_names_the_item(tmp_path, source, item, kind):
    if source == "vqa-rad":
        root = make_vqa_rad(tmp_path / "src")
        path = root / "VQA_RAD Dataset Public.json"
    else:
        root = make_slake(tmp_path / "src")
        path = root / "train.json"
    items = json.loads(path.read_text())
    items[1] = item
    path.write_text(json.dumps(items))
    with pytest.raises(SourceFileError, match=rf"{path.name}: item 1 is {kind} .*expected an object with"):
        read(source, root)
    output = build_fails(source, root, tmp_path / "out")
    assert f"{path.name}: item 1 is {kind}" in output


def test_a_pathvqa_item_that_is_not_a_dict_names_the_item(tmp_path):
    root = make_pathvqa(tmp_path)
    with open(root / "pvqa" / "qas" / "train" / "train_qa.pkl", "wb") as handle:
        pickle.dump([{"image": "train_0422", "question": "q", "answer": "a"}, None], handle)
    with pytest.raises(SourceFileError, match=r"train_qa\.pkl: item 1 is null"):
        read("pathvqa", root)


def test_a_vqa_rad_qid_used_twice_is_refused_naming_both_items(tmp_path):
    # Keeping both would give two questions one id; dropping one could drop a test question (datasets.md).
    root = make_vqa_rad(tmp_path / "src")
    path = root / "VQA_RAD Dataset Public.json"
    items = json.loads(path.read_text())
    items[3]["qid"] = 2
    path.write_text(json.dumps(items))
    with pytest.raises(SourceFileError, match=r"qid 2 is used by items 1 and 3; give each question its own qid"):
        read("vqa-rad", root)
    assert "qid 2 is used by items 1 and 3" in build_fails("vqa-rad", root, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["nih", "vqa-rad"])
def test_metadata_that_is_not_utf8_names_the_file_and_line(tmp_path, source):
    if source == "nih":
        root = make_nih(tmp_path / "src")
        path = root / "Data_Entry_2017.csv"
        lines = path.read_bytes().split(b"\n")
        lines[2] = lines[2].replace(b",M,", b",M\xe9,")  # latin-1 "é" on line 3
        expected = "line 3, byte 0xe9"
    else:
        root = make_vqa_rad(tmp_path / "src")
        path = root / "VQA_RAD Dataset Public.json"
        lines = [path.read_bytes().replace(b"Which lobe?", b"Which l\xf6be?")]
        expected = "line 1, byte 0xf6"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(SourceFileError) as caught:
        read(source, root)
    assert str(caught.value) == (
        f"{path}: not valid UTF-8 ({expected}); convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) and "
        "build again"
    )
    assert f"{path.name}: not valid UTF-8 ({expected})" in build_fails(source, root, tmp_path / "out")


@pytest.mark.parametrize(
    "garbage",
    [b"this is not gzip at all", b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 64],  # a gzip header, then no deflate data
    ids=["not-gzip", "bad-deflate-data"],
)
def test_a_garbage_gz_file_names_the_file(tmp_path, garbage):
    root = make_mimic(tmp_path / "src")
    (root / "mimic-cxr-2.0.0-chexpert.csv.gz").write_bytes(garbage)
    with pytest.raises(
        SourceFileError, match=r"mimic-cxr-2\.0\.0-chexpert\.csv\.gz: not a valid gzip file \(.+\); download"
    ):
        read("mimic-cxr", root)
    assert "mimic-cxr-2.0.0-chexpert.csv.gz: not a valid gzip file" in build_fails("mimic-cxr", root, tmp_path / "out")


def test_a_truncated_split_csv_gz_names_the_file_not_only_aborted(tmp_path):
    root = make_mimic(tmp_path / "src")
    path = root / "mimic-cxr-2.0.0-split.csv.gz"
    path.write_bytes(path.read_bytes()[:-12])  # cut inside the stream's end: a download that stopped early
    with pytest.raises(SourceFileError, match=r"split\.csv\.gz: the gzip file is truncated; download it again"):
        read("mimic-cxr", root)
    assert "mimic-cxr-2.0.0-split.csv.gz: the gzip file is truncated" in build_fails("mimic-cxr", root, tmp_path / "o")


def test_a_csv_field_over_the_csv_limit_names_file_and_line(tmp_path):
    # An opening quote never closed swallows the rest of the file into one field.
    rows = [(f"img/{n}.png", f"caption {n}", f"P{n}") for n in range(3)]
    root = make_imagefolder_csv(tmp_path / "src", rows=rows)
    with open(root / "metadata.csv", "a") as handle:
        handle.write('img/0.png,"an unclosed caption\n' + "more text\n" * 15_000)
    with pytest.raises(SourceFileError) as caught:
        read("imagefolder-csv", root)
    message = str(caught.value)
    assert message.startswith(f"{root / 'metadata.csv'}, line ")
    assert "field larger than field limit (131072)" in message and "a quote that is never closed" in message
    assert "metadata.csv, line " in build_fails("imagefolder-csv", root, tmp_path / "out")


def test_patient_in_two_official_splits_fails_loudly(tmp_path):
    rows = [("img/a.png", "first", "P1", "train"), ("img/b.png", "second", "P1", "test"),
            ("img/c.png", "third", "P2", "train")]  # fmt: skip
    make_imagefolder_csv(tmp_path / "src", rows=rows, header="file_name,text,patient_id,split")
    with pytest.raises(PatientLeakageError, match="P1: test, train"):
        build_dataset("imagefolder-csv", tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# Records and images: counted skips ------------------------------------------------------------------------------


def _bomb_png(path: Path, width: int = 30_000, height: int = 30_000) -> None:
    """A small PNG whose header declares a huge image (a decompression bomb)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def make_bad_inputs(root: Path) -> Path:
    rows = [(f"img/{n}.png", f"caption {n}", f"P{n}") for n in range(10)]
    rows += [("img/missing.png", "a missing file", "P20"), ("img/garbage.png", "not an image", "P21"),
             ("img/truncated.png", "half a file", "P22"), ("img/bomb.png", "a bomb", "P23"),
             ("img/empty_text.png", "", "P24")]  # fmt: skip
    make_imagefolder_csv(root, rows=rows)
    (root / "img" / "missing.png").unlink()
    (root / "img" / "garbage.png").write_bytes(b"this is not a png" * 10)
    whole = root / "img" / "truncated.png"
    write_image(whole, size=(32, 32))
    whole.write_bytes(whole.read_bytes()[:200])
    _bomb_png(root / "img" / "bomb.png")
    return root


def test_bad_images_and_empty_texts_are_skipped_counted_and_listed(tmp_path):
    root = make_bad_inputs(tmp_path / "src")
    report = build_dataset("imagefolder-csv", root, tmp_path / "out", max_skip_fraction=0.5)
    assert report["skipped"] == {
        "empty_text": 1, "missing_image": 1, "oversized_image": 1, "truncated_image": 1, "unreadable_image": 1
    }  # fmt: skip
    assert report["kept"] == 10 and report["records_read"] == 15
    saved = json.loads((tmp_path / "out" / "build_report.json").read_text())
    listed = {item["image"].rsplit("/", 1)[-1]: item["reason"] for item in saved["skipped_items"]}
    assert listed == {"missing.png": "missing_image", "garbage.png": "unreadable_image",
                      "truncated.png": "truncated_image", "bomb.png": "oversized_image",
                      "empty_text.png": "empty_text"}  # fmt: skip
    assert sum(len(split) for split in load_from_disk(str(tmp_path / "out")).values()) == 10


def test_too_many_skips_fails_and_writes_nothing(tmp_path):
    root = make_bad_inputs(tmp_path / "src")
    with pytest.raises(TooManySkipsError, match=r"5 of 15 records skipped"):
        build_dataset("imagefolder-csv", root, tmp_path / "out")  # default 5%
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
    failed = json.loads(failed_report_path(tmp_path / "out").read_text())
    assert failed["status"] == "failed" and len(failed["skipped_items"]) == 5


def test_build_command_exits_non_zero_on_too_many_skips(tmp_path):
    root = make_bad_inputs(tmp_path / "src")
    assert "records skipped" in build_fails("imagefolder-csv", root, tmp_path / "out")
    result = CliRunner().invoke(
        build_command, ["imagefolder-csv", str(root), str(tmp_path / "out"), "--max-skip-fraction", "0.4"]
    )
    assert result.exit_code == 0, result.output
    assert "Skipped 5" in result.output


def test_roco_kaggle_missing_files_are_counted(tmp_path):
    report = build_dataset(
        "roco", make_roco_kaggle(tmp_path / "src", missing=1), tmp_path / "out", max_skip_fraction=0.25
    )
    assert report["skipped"] == {"missing_image": 1} and report["kept"] == 4


def test_vqa_rad_null_question_is_counted_as_empty_text(tmp_path):
    report = build_dataset("vqa-rad", make_vqa_rad(tmp_path / "src"), tmp_path / "out", max_skip_fraction=0.25)
    assert report["skipped"] == {"empty_text": 1}
    train = load_from_disk(str(tmp_path / "out"))["train"]
    assert train["answer"] == ["no", "2"]  # the int answer became a string


def test_mimic_cxr_missing_report_is_marked(tmp_path):
    root = make_mimic(tmp_path)
    (root / "files" / "p10" / "p10000764" / "s57375967.txt").unlink()
    records = read("mimic-cxr", root)
    assert records[3]["skip_reason"] == "missing_report"


def test_a_mimic_report_that_is_not_utf8_is_a_counted_skip_never_replaced(tmp_path):
    root = make_mimic(tmp_path / "src")
    report_path = root / "files" / "p10" / "p10000764" / "s57375967.txt"
    text = report_path.read_bytes()
    report_path.write_bytes(text.replace(b"pneumonia", b"pneumonia \xe9valuation"))  # latin-1, not UTF-8
    report = build_dataset("mimic-cxr", root, tmp_path / "out", max_skip_fraction=0.25)
    assert report["skipped"] == {"invalid_text": 1} and report["kept"] == 4
    (item,) = report["skipped_items"]
    line = text[: text.index(b"pneumonia")].count(b"\n") + 1
    assert item["reason"] == "invalid_text" and item["detail"].startswith(
        f"{report_path}: not valid UTF-8 (line {line}, byte 0xe9)"
    )
    dataset = load_from_disk(str(tmp_path / "out"))
    assert not any("\ufffd" in text for split in dataset.values() for text in split["text"])
    assert "test" not in dataset  # the one test study was that report: skipped, never built with U+FFFD


def test_nul_bytes_in_text_are_a_counted_skip(tmp_path):
    rows = [(f"img/{n}.png", f"caption {n}", f"P{n}") for n in range(9)]
    rows[4] = ("img/4.png", "caption\x00 4", "P4")
    root = make_imagefolder_csv(tmp_path / "src", rows=rows)
    report = build_dataset("imagefolder-csv", root, tmp_path / "out", max_skip_fraction=0.2)
    assert report["skipped"] == {"invalid_text": 1} and report["kept"] == 8
    (item,) = report["skipped_items"]
    assert item["id"] == "img/4.png" and item["detail"] == "field 'text' holds a NUL byte (U+0000)"
    texts = [text for split in load_from_disk(str(tmp_path / "out")).values() for text in split["text"]]
    assert len(texts) == 8 and not any("\x00" in text for text in texts)


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")
def test_corrupt_dicom_is_a_counted_skip(tmp_path):
    data = open(get_testdata_file("MR_small_RLE.dcm"), "rb").read()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageSkip) as caught:
        prepare_image(broken)
    assert caught.value.reason in ("truncated_image", "unreadable_image")


# Build hygiene: killed builds, sizes from the header -------------------------------------------------------------


def _dicom(path: Path, side: int, syntax: str, pixel_bytes: int | None = None) -> Path:
    """An 8-bit DICOM file declaring `side`² pixels; its pixel data holds `pixel_bytes` bytes (all of them by
    default: zeros, which deflate to almost nothing)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Rows = dataset.Columns = side
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.PixelData = bytes(side * side if pixel_bytes is None else pixel_bytes)
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_a_deflated_dicom_declaring_too_many_pixels_is_refused_before_inflating(tmp_path):
    # The file at a sixth of the side: 2000² pixels deflate to a few kB; the limit is 1 megapixel.
    path = _dicom(tmp_path / "bomb.dcm", 2000, pydicom.uid.DeflatedExplicitVRLittleEndian)
    data = path.read_bytes()
    assert len(data) < 50_000 and pydicom.dcmread(path).Rows == 2000
    tracemalloc.start()
    try:
        with pytest.raises(ImageSkip) as caught:
            prepare_image(data, max_pixels=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.reason == "oversized_image"
    assert "2000x2000 pixels (declared by the DICOM header) > 1,000,000" in caught.value.detail
    assert peak < 1_000_000  # the 4 MB of pixels were never inflated, let alone decoded (8 bytes a pixel)
    small = _dicom(tmp_path / "small.dcm", 64, pydicom.uid.DeflatedExplicitVRLittleEndian)
    assert prepare_image(small, max_pixels=1_000_000).width == 64  # under the limit: decoded as before


def test_a_dicom_header_declaring_too_many_pixels_is_refused_before_decoding(tmp_path):
    # 12000² declared, 16 bytes of pixel data: the size is read from the header, the pixels never touched.
    path = _dicom(tmp_path / "liar.dcm", 12_000, pydicom.uid.ExplicitVRLittleEndian, pixel_bytes=16)
    with pytest.raises(ImageSkip) as caught:
        prepare_image(path)
    assert caught.value.reason == "oversized_image"
    assert caught.value.detail.startswith(f"{path}: 12000x12000 pixels (declared by the DICOM header) > 89,478,485")


def test_load_image_checks_the_header_size_before_decoding(tmp_path):
    from radtune.common.images import ImageTooLargeError, load_image

    _bomb_png(tmp_path / "bomb.png", 5_000, 5_000)
    with pytest.raises(ImageTooLargeError, match=r"bomb\.png: 5000x5000 pixels \(declared by the image header\)"):
        load_image(tmp_path / "bomb.png", max_pixels=1_000_000)


KILLED_BUILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from radtune.dataprep import image_pass
    from radtune.dataprep.build import build_dataset

    src, out, marks = sys.argv[1:4]

    def stuck(*args, **kwargs):  # every process decoding images stops here, as a long decode would
        Path(marks, str(os.getpid())).touch()
        time.sleep(600)

    image_pass._prepare_batch = stuck
    build_dataset("nih", src, out, num_proc=2)
    """
)


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting for its reaper is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_build_leaves_no_worker_and_the_next_build_removes_its_staging_folder(tmp_path, capsys):
    root = make_nih(tmp_path / "src")
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "killed_build.py"
    script.write_text(KILLED_BUILD)
    out = tmp_path / "out"
    build = subprocess.Popen([sys.executable, str(script), str(root), str(out), str(marks)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < 2:
            assert build.poll() is None, build.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the build's two processes never started decoding"
            time.sleep(0.1)
    finally:
        build.kill()  # SIGKILL: no clean-up runs in the build process
        build.wait()
        build.stderr.close()
    (worker,) = [int(p.name) for p in marks.iterdir() if int(p.name) != build.pid]
    deadline = time.monotonic() + 10
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker process outlived the killed build")
    (stale,) = leftovers(tmp_path)
    assert stale.startswith(staging_prefix(out)) and (tmp_path / stale / "records.arrow").is_file()

    capsys.readouterr()
    report = build_dataset("nih", root, out, num_proc=2)
    assert report["stale_staging_removed"] == [stale] and leftovers(tmp_path) == []
    assert f"removed {tmp_path / stale} (" in capsys.readouterr().err
    assert json.loads((out / "build_report.json").read_text())["stale_staging_removed"] == [stale]


def test_a_staging_folder_in_use_is_left_alone(tmp_path):
    import fcntl

    out = tmp_path / "out"
    busy = tmp_path / f"{staging_prefix(out)}busy"
    busy.mkdir()
    with open(busy / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running build holds it
        report = build_dataset("nih", make_nih(tmp_path / "src"), out)
        assert report["stale_staging_removed"] == [] and busy.is_dir()
    assert build_dataset("nih", tmp_path / "src", out, overwrite=True)["stale_staging_removed"] == [busy.name]
    assert not busy.exists()


# The Hub ---------------------------------------------------------------------------------------------------------

# Runs `radtune ARGS` in a process whose environment points at the local Hub; huggingface_hub's LFS upload gives up
# at the first failure instead of after 23 s of back-off, the rest is the real command.
RADTUNE_NO_RETRY = textwrap.dedent(
    """
    import functools, runpy, sys
    import huggingface_hub.lfs as lfs

    lfs.http_backoff = functools.partial(lfs.http_backoff, max_retries=0)
    sys.argv = ["radtune", *sys.argv[1:]]
    runpy.run_module("radtune.common.cli", run_name="__main__")
    """
)


def _radtune_against(hub_server, tmp_path, *args, env=None) -> subprocess.CompletedProcess:
    script = tmp_path / "radtune_no_retry.py"
    script.write_text(RADTUNE_NO_RETRY)
    environment = {**os.environ, **hub_server.client_env(tmp_path / "hf-home"), **(env or {})}
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_a_connection_dropped_during_an_lfs_upload_is_a_short_error(hub_server, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(64 * 1024))  # `.bin`: uploaded through LFS
    (folder / "config.json").write_text("{}")
    hub_server.inject_fault("drop-lfs-upload", times=1)
    try:
        done = _radtune_against(hub_server, tmp_path, "hub", "push", folder, "radtune-tester/dropped", "--no-card")
    finally:
        hub_server.clear_faults()
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert any(path.startswith("/lfs-storage/") and status == 0 for _, path, status in hub_server.requests)
    error = next(line for line in output.splitlines() if line.startswith("Error: "))
    assert "Error while uploading 'weights.bin' to the Hub" in error
    assert "nothing was committed to model repo 'radtune-tester/dropped': run the same command again" in error
    again = _radtune_against(hub_server, tmp_path, "hub", "push", folder, "radtune-tester/dropped", "--no-card")
    assert again.returncode == 0, again.stdout + again.stderr  # the same command, once the connection holds


@pytest.mark.slow
def test_a_pull_with_a_wrong_token_asks_for_read_access(hub_server, tmp_path):
    done = _radtune_against(
        hub_server, tmp_path, "hub", "pull", "radtune-tester/anything", tmp_path / "pulled",
        env={"HF_TOKEN": "hf_not_the_right_token"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "Traceback" not in output, output
    assert "(HTTP 401): Invalid credentials in Authorization header" in output
    assert "a valid token that has read access to it?" in output and "write access" not in output


def test_data_info_on_a_hub_out_of_reach_fails_within_seconds(monkeypatch, tmp_path):
    import radtune.common.hub as hub_module

    silent = socket.socket()  # accepts connections and never answers: a Hub out of reach without failing DNS
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    monkeypatch.setattr(hub_module.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module.constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    try:
        result = CliRunner().invoke(info_command, ["me/no-such-dataset"])
    finally:
        silent.close()
    assert time.monotonic() - started < 10
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Error: me/no-such-dataset is not a folder here" in result.output
    assert "not a dataset repo on the Hub" in result.output and "could not be reached" in result.output
