"""The three on-disk layouts a phantom build can take, written exactly as the real downloads are.

Each writer receives one `Study` at a time and appends its rows to open files, so memory stays flat
whatever `n` is. Compressed tables are gzip streams with mtime 0 and no file name in the header, so the
same arguments always give the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

from radtune.common.labeler import OBSERVATIONS
from radtune.dataprep.phantoms.findings import Phantom
from radtune.dataprep.phantoms.reports import (
    ReportContent,
    chexpert_plus_sections,
    render_chexpert_plus,
    render_mimic,
    section_labels,
)

MIMIC_METADATA_COLUMNS = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
MIMIC_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
# MIMIC-CXR's chexpert.csv lists the observations alphabetically.
MIMIC_CHEXPERT_OBSERVATIONS = tuple(sorted(OBSERVATIONS))
MIMIC_CHEXPERT_COLUMNS = ("subject_id", "study_id", *MIMIC_CHEXPERT_OBSERVATIONS)

CHEXPERT_PLUS_COLUMNS = (
    "path_to_image",
    "path_to_dcm",
    "frontal_lateral",
    "ap_pa",
    "deid_patient_id",
    "patient_report_date_order",
    "report",
    "section_narrative",
    "section_clinical_history",
    "section_history",
    "section_comparison",
    "section_technique",
    "section_procedure_comments",
    "section_findings",
    "section_impression",
    "section_end_of_impression",
    "section_summary",
    "section_accession_number",
    "age",
    "sex",
    "race",
    "ethnicity",
    "interpreter_needed",
    "insurance_type",
    "recent_bmi",
    "deceased",
    "split",
)
# The key order of CheXbert's label files (the names of `OBSERVATIONS`, in CheXbert's own order).
CHEXBERT_OBSERVATIONS = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)

GROUND_TRUTH_FILE = "phantom_findings.jsonl"
FILM_WIDTH_MM = 400.0


@dataclass
class Study:
    """One generated study, as the worker hands it to a layout writer."""

    index: int
    patient: int  # 0-based patient number
    order: int  # 1-based study number within the patient
    phantom: Phantom
    report: ReportContent | None
    image: bytes  # encoded JPEG or PNG
    ids: dict  # layout-specific identifiers and metadata, see `make_ids` in generator.py
    split: str


def _label_cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _gzip_text(path: Path):
    """A text stream into a reproducible .gz file (mtime 0, empty file name)."""
    raw = open(path, "wb")  # noqa: SIM115 - closed with the wrapper
    compressed = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
    return _Closing(io.TextIOWrapper(compressed, encoding="utf-8", newline=""), raw)


class _Closing:
    """Closes a text wrapper and the raw file under it."""

    def __init__(self, text, raw):
        self.text, self.raw = text, raw

    def close(self):
        self.text.close()
        self.raw.close()


def _csv_writer(stream):
    return csv.writer(stream, lineterminator="\n")


class LayoutWriter:
    """Base class: the ground-truth sidecar that every layout carries."""

    def __init__(self, root: Path, image_size: int):
        self.root = root
        self.image_size = image_size
        self._truth = open(root / GROUND_TRUTH_FILE, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def image_path(self, study: Study) -> str:
        raise NotImplementedError

    def write(self, study: Study) -> None:
        relative = self.image_path(study)
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(study.image)
        self._write_rows(study, relative)
        positive = study.phantom.positive_observations()
        truth = {
            "image": relative,
            "index": study.index,
            "patient": study.patient,
            "study_order": study.order,
            "split": study.split,
            "findings": study.phantom.as_dict(),
            "targets": study.phantom.targets(),
            "chexpert": {name: (1.0 if name in positive else None) for name in OBSERVATIONS},
            "nih": study.phantom.nih_labels(),
        }
        self._truth.write(json.dumps(truth, sort_keys=True) + "\n")

    def _write_rows(self, study: Study, relative: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._truth.close()


class MimicCxrWriter(LayoutWriter):
    """MIMIC-CXR-JPG: files/pNN/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg, the report beside the study folder."""

    def __init__(self, root: Path, image_size: int):
        super().__init__(root, image_size)
        self._files = {
            name: _gzip_text(root / f"mimic-cxr-2.0.0-{name}.csv.gz") for name in ("metadata", "split", "chexpert")
        }
        self._writers = {name: _csv_writer(stream.text) for name, stream in self._files.items()}
        self._writers["metadata"].writerow(MIMIC_METADATA_COLUMNS)
        self._writers["split"].writerow(MIMIC_SPLIT_COLUMNS)
        self._writers["chexpert"].writerow(MIMIC_CHEXPERT_COLUMNS)

    def _study_folder(self, study: Study) -> str:
        subject = str(study.ids["subject_id"])
        return f"files/p{subject[:2]}/p{subject}/s{study.ids['study_id']}"

    def image_path(self, study: Study) -> str:
        return f"{self._study_folder(study)}/{study.ids['dicom_id']}.jpg"

    def _write_rows(self, study: Study, relative: str) -> None:
        ids = study.ids
        (self.root / f"{self._study_folder(study)}.txt").write_text(
            render_mimic(study.report), encoding="utf-8", newline="\n"
        )
        portable = study.phantom.view == "AP"
        description = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
        self._writers["metadata"].writerow(
            (
                ids["dicom_id"],
                ids["subject_id"],
                ids["study_id"],
                description,
                study.phantom.view,
                self.image_size,
                self.image_size,
                ids["study_date"],
                ids["study_time"],
                description,
                "antero-posterior" if portable else "postero-anterior",
                "Erect",
            )
        )
        self._writers["split"].writerow((ids["dicom_id"], ids["study_id"], ids["subject_id"], study.split))
        labels = section_labels(study.report.impression)  # MIMIC-CXR's labels come from the impression
        self._writers["chexpert"].writerow(
            (ids["subject_id"], ids["study_id"], *(_label_cell(labels[name]) for name in MIMIC_CHEXPERT_OBSERVATIONS))
        )

    def close(self) -> None:
        for stream in self._files.values():
            stream.close()
        super().close()


class ChexpertPlusWriter(LayoutWriter):
    """CheXpert Plus: one CSV of reports (image paths say .jpg), PNG images, CheXbert JSON-lines labels."""

    def __init__(self, root: Path, image_size: int):
        super().__init__(root, image_size)
        self._csv_file = open(root / "df_chexpert_plus_240401.csv", "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = _csv_writer(self._csv_file)
        self._csv.writerow(CHEXPERT_PLUS_COLUMNS)
        (root / "chexbert_labels").mkdir(exist_ok=True)
        self._labels = {
            part: open(root / "chexbert_labels" / f"{part}_fixed.json", "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            for part in ("findings", "impression", "report")
        }

    def _stem(self, study: Study) -> str:
        return f"{study.split}/patient{study.patient + 1:05d}/study{study.order}/view1_frontal"

    def image_path(self, study: Study) -> str:
        return f"PNG/{self._stem(study)}.png"

    def _write_rows(self, study: Study, relative: str) -> None:
        ids = study.ids
        stem = self._stem(study)
        sections = chexpert_plus_sections(study.report, ids["accession"])
        row = {
            "path_to_image": f"{stem}.jpg",
            "path_to_dcm": f"{stem}.dcm",
            "frontal_lateral": "Frontal",
            "ap_pa": study.phantom.view,
            "deid_patient_id": f"patient{study.patient + 1:05d}",
            "patient_report_date_order": study.order,
            "report": render_chexpert_plus(sections),
            **sections,
            "age": f"{float(study.report.age):.1f}",
            "sex": "Male" if study.report.sex == "M" else "Female",
            "race": ids["race"],
            "ethnicity": ids["ethnicity"],
            "interpreter_needed": ids["interpreter_needed"],
            "insurance_type": ids["insurance_type"],
            "recent_bmi": ids["recent_bmi"],
            "deceased": ids["deceased"],
            "split": study.split,
        }
        self._csv.writerow([row[column] for column in CHEXPERT_PLUS_COLUMNS])
        parts = {
            "findings": study.report.findings,
            "impression": study.report.impression,
            "report": study.report.findings + study.report.impression,
        }
        for part, statements in parts.items():
            labels = section_labels(statements)
            line = {"path_to_image": f"{stem}.jpg", **{name: labels[name] for name in CHEXBERT_OBSERVATIONS}}
            self._labels[part].write(json.dumps(line) + "\n")

    def close(self) -> None:
        self._csv_file.close()
        for stream in self._labels.values():
            stream.close()
        super().close()


class NihWriter(LayoutWriter):
    """NIH ChestX-ray14: images/NNNNNNNN_NNN.png, Data_Entry_2017.csv with its trailing commas, split lists."""

    def __init__(self, root: Path, image_size: int):
        super().__init__(root, image_size)
        self._entries = open(root / "Data_Entry_2017.csv", "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._entries.write(NIH_HEADER + "\n")
        self._lists = {
            "train": open(root / "train_val_list.txt", "w", encoding="utf-8", newline="\n"),  # noqa: SIM115
            "test": open(root / "test_list.txt", "w", encoding="utf-8", newline="\n"),  # noqa: SIM115
        }
        self._spacing = f"{FILM_WIDTH_MM / image_size:.3f}"

    def _name(self, study: Study) -> str:
        return f"{study.patient + 1:08d}_{study.order - 1:03d}.png"

    def image_path(self, study: Study) -> str:
        return f"images/{self._name(study)}"

    def _write_rows(self, study: Study, relative: str) -> None:
        name = self._name(study)
        values = (
            name,
            study.phantom.nih_labels(),
            study.order - 1,
            study.patient + 1,
            study.ids["age"],
            study.ids["sex"],
            study.phantom.view,
            self.image_size,
            self.image_size,
            self._spacing,
            self._spacing,
        )
        self._entries.write(",".join(str(value) for value in values) + ",\n")
        self._lists[study.split].write(name + "\n")

    def close(self) -> None:
        self._entries.close()
        for stream in self._lists.values():
            stream.close()
        super().close()


WRITERS = {"mimic-cxr": MimicCxrWriter, "chexpert-plus": ChexpertPlusWriter, "nih": NihWriter}
SPLITS = {
    "mimic-cxr": (("train", 0.8), ("validate", 0.1), ("test", 0.1)),
    "chexpert-plus": (("train", 0.9), ("valid", 0.1)),
    "nih": (("train", 0.8), ("test", 0.2)),
}
