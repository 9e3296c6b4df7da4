"""Tiny copies of each source's on-disk layout (see shared/docs/datasets.md), written by test code.

Each `make_*` writes a few rows and 8-32 px images into a folder and returns it. Images get distinct random
pixels (seeded by their path) so the build's duplicate detection only fires where a test asks for it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import pickle
import re
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, size=(16, 16), mode: str = "L", seed: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    seed_value = int.from_bytes(hashlib.sha256((seed or str(path.name)).encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed_value)
    gray = rng.integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    if mode == "RGBA":  # NIH's few RGBA radiographs: gray in four channels
        pixels = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    elif mode == "RGB":
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    else:
        pixels = gray
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ROCOv2 -------------------------------------------------------------------------------------------------------


def make_rocov2(root: Path, nested: bool = False) -> Path:
    """Three splits, two images each; `nested` uses the `train_images/train/<ID>.jpg` unzip layout."""
    split_prefixes = ("train", "valid", "test")
    mapping = ["CUI,Canonical name", "C0040405,X-Ray Computed Tomography", "C0817096,Chest"]
    licences = ["ID,PMCID,Attribution,Link"]
    for prefix in split_prefixes:
        captions, concepts, manual = ["ID,Caption"], ["ID,CUIs"], ["ID,CUIs"]
        for n in (1, 2):
            image_id = f"ROCOv2_2023_{prefix}_{n:06d}"
            folder = root / f"{prefix}_images" / prefix if nested else root / prefix
            write_image(folder / f"{image_id}.jpg", mode="RGB")
            captions.append(f'{image_id},"Axial CT of the chest, case {prefix} {n}."')
            concepts.append(f"{image_id},C0040405;C0817096")
            manual.append(f"{image_id},C0040405")
            licences.append(f"{image_id},PMC{n},Author et al.,https://creativecommons.org/licenses/by/4.0/")
        write_text(root / f"{prefix}_captions.csv", "\n".join(captions) + "\n")
        write_text(root / f"{prefix}_concepts.csv", "\n".join(concepts) + "\n")
        write_text(root / f"{prefix}_concepts_manual.csv", "\n".join(manual) + "\n")
    write_text(root / "cui_mapping.csv", "\n".join(mapping) + "\n")
    write_text(root / "license_information.csv", "\n".join(licences) + "\n")
    return root


# ROCO ---------------------------------------------------------------------------------------------------------


def make_roco_original(root: Path) -> Path:
    """`data/<split>/radiology/` with tab-separated captions (leading space, one caption over two lines)."""
    for split, ids in (("train", (20, 21, 22)), ("validation", (30,)), ("test", (40,))):
        folder = root / "data" / split / "radiology"
        lines, cuis, licences = [], [], []
        for n in ids:
            roco_id = f"ROCO_{n:05d}"
            write_image(folder / "images" / f"{roco_id}.jpg")
            if n == 21:
                lines.append(f"{roco_id}\t Chest radiograph showing\ncardiomegaly and effusion. ")
            else:
                lines.append(f"{roco_id}\t CT scan number {n} of the abdomen. ")
            cuis.append(f"{roco_id}\t\tC0040405\tC0000726")
            licences.append(f"{roco_id},PMC{n},CC BY")
        write_text(folder / "captions.txt", "\n".join(lines) + "\n")
        write_text(folder / "cuis.txt", "\n".join(cuis) + "\n")
        write_text(folder / "licences.txt", "\n".join(licences) + "\n")
        write_text(folder / "keywords.txt", "")
    return root


def make_roco_kaggle(root: Path, missing: int = 1) -> Path:
    """`all_data/<split>/radiology/images/` + `radiology{train,val,test}data.csv`; `missing` named files absent."""
    csv_names = {"train": "radiologytraindata.csv", "validation": "radiologyvaldata.csv", "test": "radiologytestdata.csv"}
    count = 0
    for split, csv_name in csv_names.items():
        rows = ["id,name,caption"]
        for n in range(1, 4 if split == "train" else 2):
            count += 1
            roco_id = f"ROCO_{count:05d}"
            name = f"PMC{count}_fig{n}.jpg"
            rows.append(f'{roco_id},{name}," CT image {count}, with contrast. "')
            if not (split == "train" and n <= missing):
                write_image(root / "all_data" / split / "radiology" / "images" / name)
        write_text(root / "all_data" / split / csv_name, "\n".join(rows) + "\n")
    return root


def mimic_text(text: str) -> str:
    """MIMIC-CXR reports separate paragraphs by a line holding one space (kept out of the source for linting)."""
    return re.sub(r"\n(?=\n)", "\n ", text)


# MIMIC-CXR ----------------------------------------------------------------------------------------------------

MIMIC_REPORT = mimic_text("""                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // eval for pneumonia

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  The
 cardiomediastinal silhouette is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
""")

MIMIC_REPORT_NO_SECTIONS = mimic_text("""                                 FINAL REPORT
 PA AND LATERAL CHEST RADIOGRAPH

 HISTORY: cough.

 Heart size is normal. Lungs are clear. Dr. ___ was
 notified by telephone.
""")

_LABEL_HEADER = (
    "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
    "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices"
)


def _dicom_id(n: int) -> str:
    h = hashlib.sha1(str(n).encode()).hexdigest()
    return "-".join(h[i : i + 8] for i in range(0, 40, 8))


def make_mimic(root: Path, gz: bool = True, dicom: bool = False) -> Path:
    """Three patients, four studies, five images; split/metadata/chexpert CSVs (gzipped by default)."""
    studies = [
        ("10000032", "50414267", "train"),
        ("10000032", "53189527", "train"),
        ("10000764", "57375967", "test"),
        ("10000898", "58000001", "validate"),
    ]
    split_rows = ["dicom_id,study_id,subject_id,split"]
    meta_rows = [
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate,"
        "StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
        "PatientOrientationCodeSequence_CodeMeaning"
    ]
    label_rows = [_LABEL_HEADER]
    n = 0
    for index, (subject, study, split) in enumerate(studies):
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        write_text(folder.with_suffix(".txt"), MIMIC_REPORT if index != 1 else MIMIC_REPORT_NO_SECTIONS)
        for view in (("PA", "LATERAL") if index == 0 else ("AP",)):
            n += 1
            dicom_id = _dicom_id(n)
            if dicom and n == 1:
                import shutil

                from pydicom.data import get_testdata_file

                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(get_testdata_file("CT_small.dcm"), folder / f"{dicom_id}.dcm")
            else:
                write_image(folder / f"{dicom_id}.jpg")
            split_rows.append(f"{dicom_id},{study},{subject},{split}")
            meta_rows.append(f"{dicom_id},{subject},{study},CHEST (PA AND LAT),{view},16,16,21800506,213014.531,"
                             "Chest 2 Views,postero-anterior,Erect")
        label_rows.append(f"{subject},{study},,1.0,,,,,,,,-1.0,,,,")
    for name, rows in (("split", split_rows), ("metadata", meta_rows), ("chexpert", label_rows)):
        content = "\n".join(rows) + "\n"
        path = root / f"mimic-cxr-2.0.0-{name}.csv"
        if gz:
            with gzip.open(f"{path}.gz", "wt", encoding="utf-8") as handle:
                handle.write(content)
        else:
            write_text(path, content)
    return root


# CheXpert Plus ------------------------------------------------------------------------------------------------

CHEXPERT_COLUMNS = (
    "path_to_image,path_to_dcm,frontal_lateral,ap_pa,deid_patient_id,patient_report_date_order,report,"
    "section_narrative,section_clinical_history,section_history,section_comparison,section_technique,"
    "section_procedure_comments,section_findings,section_impression,section_end_of_impression,section_summary,"
    "section_accession_number,age,sex,race,ethnicity,interpreter_needed,insurance_type,recent_bmi,deceased,split"
).split(",")


def make_chexpert_plus(root: Path, nested_png: bool = True, index_column: bool = True) -> Path:
    """`df_chexpert_plus_240401.csv` with `.jpg` paths, images as `.png` under `PNG/PNG/` (or `PNG/`)."""
    import csv

    rows = [
        ("train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", "patient00001", "Heart is enlarged.",
         "Cardiomegaly.", "train"),
        ("train/patient00001/study1/view2_lateral.jpg", "Lateral", "", "patient00001", "Heart is enlarged.",
         "Cardiomegaly.", "train"),
        ("train/patient00002/study1/view1_frontal.jpg", "Frontal", "PA", "patient00002", "", "No acute disease.",
         "train"),
        ("valid/patient00003/study1/view1_frontal.jpg", "Frontal", "PA", "patient00003", "Lungs are clear.", "",
         "valid"),
    ]
    base = root / "PNG" / "PNG" if nested_png else root / "PNG"
    table = root / "df_chexpert_plus_240401.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(([""] if index_column else []) + CHEXPERT_COLUMNS)
        labels = []
        for number, (path, fl, ap_pa, patient, findings, impression, split) in enumerate(rows):
            write_image(base / Path(path).with_suffix(".png"), seed=path)
            values = dict.fromkeys(CHEXPERT_COLUMNS, "")
            values.update(
                path_to_image=path, path_to_dcm=path.replace(".jpg", ".dcm"), frontal_lateral=fl, ap_pa=ap_pa,
                deid_patient_id=patient, report=f"FINDINGS: {findings}\nIMPRESSION: {impression}",
                section_findings=findings, section_impression=impression, split=split,
            )
            writer.writerow(([str(number)] if index_column else []) + [values[c] for c in CHEXPERT_COLUMNS])
            labels.append({"path_to_image": path, "Cardiomegaly": 1.0 if "enlarged" in findings else None,
                           "No Finding": None if "enlarged" in findings else 1.0, "Edema": -1.0})
    write_text(root / "chexbert_labels" / "report_fixed.json", "\n".join(json.dumps(row) for row in labels) + "\n")
    return root


# NIH ChestX-ray14 ---------------------------------------------------------------------------------------------

NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


def make_nih(root: Path, kaggle: bool = False, patients: int = 6) -> Path:
    """`Data_Entry_2017.csv` with trailing commas, images in `images/` (or `images_00N/images/`), split lists."""
    rows, names = [NIH_HEADER], []
    labels = ["Cardiomegaly|Emphysema", "No Finding", "Effusion", "Mass|Nodule", "No Finding", "Hernia"]
    for patient in range(1, patients + 1):
        for follow_up in range(2):
            name = f"{patient:08d}_{follow_up:03d}.png"
            names.append(name)
            folder = root / f"images_{patient % 2 + 1:03d}" / "images" if kaggle else root / "images"
            write_image(folder / name, mode="RGBA" if patient == 1 and follow_up == 1 else "L")
            label = labels[(patient - 1) % len(labels)]
            rows.append(f"{name},{label},{follow_up},{patient},58,M,PA,2894,2729,0.143,0.143,")
    write_text(root / "Data_Entry_2017.csv", "\n".join(rows) + "\n")
    test = [n for n in names if int(n[:8]) > patients - 2]
    write_text(root / "test_list.txt", "\n".join(test) + "\n")
    write_text(root / "train_val_list.txt", "\n".join(n for n in names if n not in test) + "\n")
    return root


# VQA ----------------------------------------------------------------------------------------------------------


# Questions per image in the generated VQA replicas (VQA-RAD asks about 7 per image, PathVQA about 7, SLAKE 20).
QUESTIONS_PER_IMAGE = 8


def image_bytes(seed: str, size=(8, 8), mode: str = "L", image_format: str = "PNG") -> bytes:
    """The encoded bytes of a small image with random pixels seeded by `seed` (distinct seeds: distinct pixels)."""
    import io

    seed_value = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
    rng = np.random.default_rng(seed_value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode).save(buffer, format=image_format)
    return buffer.getvalue()


def vqa_plan(
    rows: dict[str, int], leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0, per_image: int = 8
) -> list[dict]:
    """The questions of a generated VQA replica, in file order: `rows[split]` distinct triplets per split (image,
    question, answer), every second one closed (`yes`/`no`), `QUESTIONS_PER_IMAGE` per image, plus

    - `leaked` train copies of the first test triplets, placed *first* (a naive first-copy-wins de-duplication would
      then drop the test copy, as on the real VQA-RAD),
    - `train_repeats` repeats of train triplets and `test_repeats` repeats of test triplets, at the end.

    A build that keeps the official test split whole has `rows["train"]` train rows (leaked copies leave train, train
    repeats are dropped) and `rows["test"] + test_repeats` test rows.

    Each item: `split`, `image` (a key unique to the image, e.g. `test-00003`), `question`, `answer`, `closed`.
    """
    items = {}
    for split, count in rows.items():
        items[split] = []
        for n in range(count):
            closed = n % 2 == 0
            items[split].append({
                "split": split, "image": f"{split}-{n // per_image:05d}", "question": f"Question {n} on {split}?",
                "answer": ("yes" if n % 4 == 0 else "no") if closed else f"finding {n}", "closed": closed,
            })
    test = items.get("test", [])
    plan = [{**test[n % len(test)], "split": "train"} for n in range(leaked)] if test else []
    for split_items in items.values():
        plan += split_items
    plan += [dict(items["train"][n % len(items["train"])]) for n in range(train_repeats)]
    plan += [dict(test[n % len(test)]) for n in range(test_repeats)]
    return plan


def _plan_from_items(items: list[dict], leaked: int, train_repeats: int, test_repeats: int) -> list[dict]:
    """Leaked copies (first) and repeats (last) of a hand-written item list, in the original's format."""
    test = [item for item in items if item["split"] == "test"]
    train = [item for item in items if item["split"] == "train"]
    leaked_items = [{**test[n % len(test)], "split": "train"} for n in range(leaked)]
    return leaked_items + items + [train[n % len(train)] for n in range(train_repeats)] + [
        test[n % len(test)] for n in range(test_repeats)
    ]


def make_vqa_rad(
    root: Path, rows: dict[str, int] | None = None, leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0
) -> Path:
    """`VQA_RAD Dataset Public.json` and `VQA_RAD Image Folder/`.

    Without `rows`: five hand-written questions on two images (2 train, 2 test, one "NULL" question). With `rows`
    (`{"train": 1793, "test": 451}` gives the published sizes): generated questions, see `vqa_plan` (8 px images).
    `leaked`, `train_repeats` and `test_repeats` add copies as in `vqa_plan`.
    """
    if rows is None:
        items = [
            {"qid": 1, "image_name": "synpic12345.jpg", "image_organ": "CHEST", "question": "Is there a pneumothorax?",
             "answer": "no", "answer_type": "CLOSED", "question_type": "PRES", "phrase_type": "freeform"},
            {"qid": 2, "image_name": "synpic12345.jpg", "image_organ": "CHEST", "question": "How many nodules?",
             "answer": 2, "answer_type": "OPEN", "question_type": "COUNT", "phrase_type": "para"},
            {"qid": 3, "image_name": "synpic23456.jpg", "image_organ": "HEAD", "question": "Is this an MRI?",
             "answer": "yes", "answer_type": "CLOSED", "question_type": "MODALITY", "phrase_type": "test_freeform",
             "evaluation": "NULL"},
            {"qid": 4, "image_name": "synpic23456.jpg", "image_organ": "HEAD", "question": "Which lobe?",
             "answer": "left frontal", "answer_type": "OPEN", "question_type": "POS", "phrase_type": "test_para"},
            {"qid": 5, "image_name": "synpic23456.jpg", "image_organ": "HEAD", "question": "NULL",
             "answer": "yes", "answer_type": "CLOSED", "question_type": "NULL", "phrase_type": "freeform"},
        ]
        for item in items:
            item["split"] = "test" if item["phrase_type"].startswith("test") else "train"
        items = _plan_from_items(items, leaked, train_repeats, test_repeats)
        for number, item in enumerate(items):
            item = items[number] = dict(item)
            if item.pop("split") == "train" and item["phrase_type"].startswith("test"):
                item["phrase_type"] = item["phrase_type"][len("test_"):]  # a leaked copy asked in train
            item["qid"] = number + 1
        names = ("synpic12345.jpg", "synpic23456.jpg")
        size = (16, 16)
    else:
        items, names = [], set()
        for number, planned in enumerate(vqa_plan(rows, leaked, train_repeats, test_repeats, QUESTIONS_PER_IMAGE)):
            name = f"synpic{planned['image'].replace('-', '')}.jpg"
            names.add(name)
            phrase = ("test_" if planned["split"] == "test" else "") + ("freeform" if number % 2 else "para")
            items.append({"qid": number + 1, "image_name": name, "image_organ": "CHEST",
                          "question": planned["question"], "answer": planned["answer"],
                          "answer_type": "CLOSED" if planned["closed"] else "OPEN", "question_type": "PRES",
                          "phrase_type": phrase})
        size = (8, 8)
    write_text(root / "VQA_RAD Dataset Public.json", json.dumps(items))
    for name in sorted(names):
        write_image(root / "VQA_RAD Image Folder" / name, size=size)
    return root


def make_slake(
    root: Path,
    validation_name: str = "validate.json",
    rows: dict[str, int] | None = None,
    leaked: int = 0,
    train_repeats: int = 0,
    test_repeats: int = 0,
) -> Path:
    """`train.json`, `validate.json` (or `validation.json`), `test.json` and `imgs/xmlabN/source.jpg`.

    Without `rows`: five hand-written questions (one in Chinese) on four images. With `rows` (`{"train": 4919,
    "validation": 1053, "test": 1061}` gives the published English sizes): generated English questions, see
    `vqa_plan`; `leaked`, `train_repeats` and `test_repeats` as there.
    """
    def item(qid, img, question, answer, lang="en", answer_type="CLOSED"):
        return {"img_id": int(img[5:]), "img_name": f"{img}/source.jpg", "question": question, "answer": answer,
                "q_lang": lang, "answer_type": answer_type, "modality": "CT", "location": "Abdomen",
                "content_type": "Organ", "base_type": "vqa", "qid": qid}

    if rows is None:
        files = {
            "train.json": [item(1, "xmlab1", "Is this a CT?", "Yes"), item(2, "xmlab1", "这是CT吗?", "是", lang="zh"),
                           item(3, "xmlab2", "Which organ is abnormal?", "Liver", answer_type="OPEN")],
            validation_name: [item(4, "xmlab3", "Is the liver healthy?", "No")],
            "test.json": [item(5, "xmlab4", "What modality?", "MRI", answer_type="OPEN")],
        }
        if leaked or train_repeats or test_repeats:
            planned = _plan_from_items(
                [{**i, "split": s} for s, n in (("train", "train.json"), ("validation", validation_name),
                                               ("test", "test.json")) for i in files[n]],
                leaked, train_repeats, test_repeats,
            )
            files = {name: [] for name in files}
            for number, entry in enumerate(planned):
                name = {"train": "train.json", "validation": validation_name, "test": "test.json"}[entry["split"]]
                files[name].append({k: v for k, v in entry.items() if k != "split"} | {"qid": number + 1})
        for n in range(1, 5):
            write_image(root / "imgs" / f"xmlab{n}" / "source.jpg", mode="RGB")
    else:
        files = {"train.json": [], validation_name: [], "test.json": []}
        images = {}
        for number, planned in enumerate(vqa_plan(rows, leaked, train_repeats, test_repeats, QUESTIONS_PER_IMAGE)):
            img = images.setdefault(planned["image"], f"xmlab{len(images)}")
            name = {"train": "train.json", "validation": validation_name, "test": "test.json"}[planned["split"]]
            files[name].append(item(number + 1, img, planned["question"], planned["answer"],
                                    answer_type="CLOSED" if planned["closed"] else "OPEN"))
        for img in images.values():
            write_image(root / "imgs" / img / "source.jpg", size=(8, 8), mode="RGB")
    for name, items in files.items():
        write_text(root / name, json.dumps(items, ensure_ascii=False))
    return root


def make_pathvqa(
    root: Path, rows: dict[str, int] | None = None, leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0
) -> Path:
    """`pvqa/images/{train,val,test}/<id>.jpg` and `pvqa/qas/<split>/<split>_qa.pkl`.

    Without `rows`: two questions on each of four images. With `rows` (`{"train": 19654, "validation": 6259,
    "test": 6719}` gives the de-duplicated published sizes): generated questions, see `vqa_plan`; `leaked`,
    `train_repeats` and `test_repeats` as there.
    """
    base = root / "pvqa"
    prefixes = {"train": "train", "validation": "val", "test": "test"}
    if rows is None:
        layout = (("train", ("train_0422", "train_0423")), ("validation", ("val_0001",)), ("test", ("test_0007",)))
        items = []
        for split, image_ids in layout:
            for image_id in image_ids:
                write_image(base / "images" / prefixes[split] / f"{image_id}.jpg", mode="RGB")
                items.append({"split": split, "image": image_id, "question": "Is this tissue necrotic?",
                              "answer": "yes"})
                items.append({"split": split, "image": image_id, "question": "What stain is used?",
                              "answer": "hematoxylin and eosin"})
        items = _plan_from_items(items, leaked, train_repeats, test_repeats)
    else:
        items = [
            {"split": planned["split"], "image": planned["image"].replace("-", "_"), "question": planned["question"],
             "answer": planned["answer"]}
            for planned in vqa_plan(rows, leaked, train_repeats, test_repeats, QUESTIONS_PER_IMAGE)
        ]
    written = set()
    by_split = {split: [] for split in prefixes}
    for entry in items:
        by_split[entry["split"]].append({k: entry[k] for k in ("image", "question", "answer")})
        # A leaked train copy names a test image: PathVQA's train pickle names train images, so copy it there.
        folder = base / "images" / prefixes[entry["split"]]
        if (folder, entry["image"]) not in written and not (folder / f"{entry['image']}.jpg").exists():
            write_image(folder / f"{entry['image']}.jpg", size=(8, 8) if rows else (16, 16), mode="RGB",
                        seed=f"{entry['image']}.jpg")
        written.add((folder, entry["image"]))
    for split, prefix in prefixes.items():
        path = base / "qas" / prefix / f"{prefix}_qa.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump(by_split[split], handle)
    return root


# Hub copies ---------------------------------------------------------------------------------------------------


def _write_vqa_parquet(folder: Path, plan: list[dict], splits: tuple[str, ...]) -> Path:
    """`data/<split>-00000-of-00001.parquet` with the Hub copies' columns `image`, `question`, `answer`."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "question": Value("string"), "answer": Value("string")})
    cache: dict[str, bytes] = {}
    for split in splits:
        chosen = [entry for entry in plan if entry["split"] == split]
        columns = {
            "image": [{"bytes": cache.setdefault(e["image"], image_bytes(e["image"])), "path": None} for e in chosen],
            "question": [e["question"] for e in chosen],
            "answer": [e["answer"] for e in chosen],
        }
        (folder / "data").mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(columns, features=features).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def make_vqa_rad_hub(
    folder: Path, rows: dict[str, int] | None = None, leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0
) -> Path:
    """A replica of `flaviagiammarino/vqa-rad`: parquet `data/{train,test}-*.parquet` with `image`, `question`,
    `answer` (no answer type). `rows` defaults to train 6 / test 4; `{"train": 1793, "test": 451}` gives the
    published sizes. `leaked`, `train_repeats`, `test_repeats` as in `vqa_plan`."""
    plan = vqa_plan(rows or {"train": 6, "test": 4}, leaked, train_repeats, test_repeats, QUESTIONS_PER_IMAGE)
    return _write_vqa_parquet(folder, plan, ("train", "test"))


def make_pathvqa_hub(
    folder: Path, rows: dict[str, int] | None = None, leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0
) -> Path:
    """A replica of `flaviagiammarino/path-vqa`: parquet `data/{train,validation,test}-*.parquet` with `image`,
    `question`, `answer`. `rows` defaults to 6 / 2 / 4; `{"train": 19654, "validation": 6259, "test": 6719}` gives
    the published sizes."""
    plan = vqa_plan(rows or {"train": 6, "validation": 2, "test": 4}, leaked, train_repeats, test_repeats,
                    QUESTIONS_PER_IMAGE)
    return _write_vqa_parquet(folder, plan, ("train", "validation", "test"))


def make_slake_hub(
    folder: Path, rows: dict[str, int] | None = None, leaked: int = 0, train_repeats: int = 0, test_repeats: int = 0
) -> Path:
    """A replica of `BoKelvin/SLAKE`: `train.json`, `validation.json`, `test.json` and `imgs.zip` holding
    `imgs/xmlabN/source.jpg` (`make_slake`'s layout, images zipped). `rows` as in `make_slake` (default: its five
    hand-written questions)."""
    import shutil

    make_slake(folder, validation_name="validation.json", rows=rows, leaked=leaked, train_repeats=train_repeats,
               test_repeats=test_repeats)
    shutil.make_archive(str(folder / "imgs"), "zip", root_dir=folder, base_dir="imgs")
    shutil.rmtree(folder / "imgs")
    return folder


def make_rocov2_hub(folder: Path, rows: dict[str, int] | None = None) -> Path:
    """A replica of `eltorio/ROCOv2-radiology`: parquet `data/{train,validation,test}-*.parquet` with `image`,
    `image_id`, `caption`, `cui` (a list). `rows` defaults to 3 / 1 / 2."""
    from datasets import Dataset, Features, List, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "image_id": Value("string"), "caption": Value("string"),
                         "cui": List(Value("string"))})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, count in (rows or {"train": 3, "validation": 1, "test": 2}).items():
        prefix = {"train": "train", "validation": "valid", "test": "test"}[split]
        ids = [f"ROCOv2_2023_{prefix}_{n + 1:06d}" for n in range(count)]
        columns = {
            "image": [{"bytes": image_bytes(i, mode="RGB"), "path": None} for i in ids],
            "image_id": ids,
            "caption": [f"Axial CT of the chest, case {i}." for i in ids],
            "cui": [["C0040405", "C0817096"] for _ in ids],
        }
        Dataset.from_dict(columns, features=features).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def make_imagefolder_csv(root: Path, rows: list[tuple] | None = None, header: str = "file_name,text,patient_id") -> Path:
    rows = rows or [(f"img/{n}.png", f"caption {n}", f"P{n % 3}") for n in range(9)]
    lines = [header]
    for row in rows:
        write_image(root / row[0])
        lines.append(",".join(row))
    write_text(root / "metadata.csv", "\n".join(lines) + "\n")
    return root


def read(name: str, root: Path, **options) -> list[dict]:
    """Every record the `name` reader yields for the layout under `root`."""
    from radtune.dataprep.readers import READERS

    return list(READERS[name].read(root, **options))
