"""What radtune knows about each source dataset: licence, access terms, task, citation.

The card (`card.py`) and the build (`build.py`) read this table; the readers only produce records.
A dataset root holding a `PHANTOM.json` marker (written by `radtune data phantoms`) is always the
synthetic source `phantom`, CC0 and never credentialed, whichever reader read its layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

PHANTOM_MARKER = "PHANTOM.json"


@dataclass(frozen=True)
class SourceInfo:
    """Facts about one source dataset.

    Args:
        name (`str`): the source name used on the command line and in the `source` column.
        pretty_name (`str`): the name shown in the card title.
        license (`str`): a Hub licence id (`cc0-1.0`, `cc-by-4.0`, …) or `other`.
        license_name (`str`, *optional*): for `license: other`, a short slug naming the terms.
        license_link (`str`, *optional*): for `license: other`, where the terms are.
        credentialed (`bool`): access needs credentialing or a data use agreement; the card then carries a notice.
        task_categories (`list[str]`): Hub task categories for the card.
        tags (`list[str]`): extra Hub tags.
        homepage (`str`): where users obtain the data.
        citation (`str`): BibTeX of the source.
    """

    name: str
    pretty_name: str
    license: str
    license_name: str | None = None
    license_link: str | None = None
    credentialed: bool = False
    task_categories: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    homepage: str = ""
    citation: str = ""
    data_use_notice: str = ""


_MIMIC_NOTICE = (
    "MIMIC-CXR is credentialed data under the PhysioNet Credentialed Health Data License 1.5.0 and its data use "
    "agreement. Only credentialed PhysioNet users who signed the agreement for MIMIC-CXR may access this dataset: "
    "keep the repository private, never share it publicly, and do not send its reports to third-party services "
    "that retain data (PhysioNet's guidance on LLMs: use Azure OpenAI or a self-hosted OpenAI-compatible server)."
)
_CHEXPERT_NOTICE = (
    "CheXpert Plus is distributed by the Stanford AIMI Center under its research use agreement. Only users who "
    "accepted that agreement may access this dataset: keep the repository private, do not redistribute it, and do "
    "not send its reports to third-party services that retain data."
)

SOURCES: dict[str, SourceInfo] = {
    "rocov2": SourceInfo(
        name="rocov2",
        pretty_name="ROCOv2 (Radiology Objects in COntext, version 2)",
        license="cc-by-4.0",
        task_categories=["image-to-text"],
        tags=["medical", "radiology", "captioning", "umls"],
        homepage="https://zenodo.org/records/10821435",
        citation=(
            "@article{ruckert2024rocov2,\n  title={ROCOv2: Radiology Objects in COntext Version 2, an Updated "
            "Multimodal Image Dataset},\n  author={R{\\\"u}ckert, Johannes and others},\n  journal={Scientific Data},"
            "\n  volume={11},\n  pages={688},\n  year={2024},\n  doi={10.1038/s41597-024-03496-6}\n}"
        ),
    ),
    "roco": SourceInfo(
        name="roco",
        pretty_name="ROCO (Radiology Objects in COntext)",
        license="other",
        license_name="per-image-creative-commons",
        license_link="https://github.com/razorx89/roco-dataset",
        task_categories=["image-to-text"],
        tags=["medical", "radiology", "captioning"],
        homepage="https://github.com/razorx89/roco-dataset",
        citation=(
            "@inproceedings{pelka2018roco,\n  title={Radiology Objects in COntext (ROCO): A Multimodal Image "
            "Dataset},\n  author={Pelka, Obioma and Koitka, Sven and R{\\\"u}ckert, Johannes and Nensa, Felix and "
            "Friedrich, Christoph M.},\n  booktitle={MICCAI Workshop LABELS},\n  pages={180--189},\n  year={2018}\n}"
        ),
    ),
    "mimic-cxr": SourceInfo(
        name="mimic-cxr",
        pretty_name="MIMIC-CXR",
        license="other",
        license_name="physionet-credentialed-health-data-license-1.5.0",
        license_link="https://physionet.org/content/mimic-cxr/view-license/2.0.0/",
        credentialed=True,
        task_categories=["image-to-text", "image-classification"],
        tags=["medical", "radiology", "chest-x-ray", "report-generation"],
        homepage="https://physionet.org/content/mimic-cxr-jpg/2.0.0/",
        citation=(
            "@article{johnson2019mimiccxr,\n  title={MIMIC-CXR, a de-identified publicly available database of chest "
            "radiographs with free-text reports},\n  author={Johnson, Alistair E. W. and Pollard, Tom J. and "
            "Berkowitz, Seth J. and others},\n  journal={Scientific Data},\n  volume={6},\n  pages={317},\n  "
            "year={2019},\n  doi={10.1038/s41597-019-0322-0}\n}"
        ),
        data_use_notice=_MIMIC_NOTICE,
    ),
    "chexpert-plus": SourceInfo(
        name="chexpert-plus",
        pretty_name="CheXpert Plus",
        license="other",
        license_name="stanford-aimi-research-use-agreement",
        license_link="https://aimi.stanford.edu/datasets/chexpert-plus",
        credentialed=True,
        task_categories=["image-to-text", "image-classification"],
        tags=["medical", "radiology", "chest-x-ray", "report-generation"],
        homepage="https://aimi.stanford.edu/datasets/chexpert-plus",
        citation=(
            "@article{chambon2024chexpertplus,\n  title={CheXpert Plus: Augmenting a Large Chest X-ray Dataset with "
            "Text Radiology Reports, Patient Demographics and Additional Image Formats},\n  author={Chambon, Pierre "
            "and others},\n  journal={arXiv preprint arXiv:2405.19538},\n  year={2024}\n}"
        ),
        data_use_notice=_CHEXPERT_NOTICE,
    ),
    "nih": SourceInfo(
        name="nih",
        pretty_name="NIH ChestX-ray14",
        license="cc0-1.0",
        task_categories=["image-classification", "zero-shot-image-classification"],
        tags=["medical", "radiology", "chest-x-ray"],
        homepage="https://nihcc.app.box.com/v/ChestXray-NIHCC",
        citation=(
            "@inproceedings{wang2017chestxray8,\n  title={ChestX-ray8: Hospital-scale Chest X-ray Database and "
            "Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases},\n  "
            "author={Wang, Xiaosong and Peng, Yifan and Lu, Le and Lu, Zhiyong and Bagheri, Mohammadhadi and "
            "Summers, Ronald M.},\n  booktitle={CVPR},\n  pages={2097--2106},\n  year={2017}\n}"
        ),
    ),
    "vqa-rad": SourceInfo(
        name="vqa-rad",
        pretty_name="VQA-RAD",
        license="cc0-1.0",
        task_categories=["visual-question-answering"],
        tags=["medical", "radiology", "vqa"],
        homepage="https://osf.io/89kps/",
        citation=(
            "@article{lau2018vqarad,\n  title={A dataset of clinically generated visual questions and answers about "
            "radiology images},\n  author={Lau, Jason J. and Gayen, Soumya and Ben Abacha, Asma and "
            "Demner-Fushman, Dina},\n  journal={Scientific Data},\n  volume={5},\n  pages={180251},\n  year={2018}\n}"
        ),
    ),
    "slake": SourceInfo(
        name="slake",
        pretty_name="SLAKE",
        license="cc-by-4.0",
        task_categories=["visual-question-answering"],
        tags=["medical", "radiology", "vqa"],
        homepage="https://www.med-vqa.com/slake/",
        citation=(
            "@inproceedings{liu2021slake,\n  title={SLAKE: A Semantically-Labeled Knowledge-Enhanced Dataset for "
            "Medical Visual Question Answering},\n  author={Liu, Bo and Zhan, Li-Ming and Xu, Li and Ma, Lin and "
            "Yang, Yan and Wu, Xiao-Ming},\n  booktitle={ISBI},\n  pages={1650--1654},\n  year={2021}\n}"
        ),
    ),
    "pathvqa": SourceInfo(
        name="pathvqa",
        pretty_name="PathVQA",
        license="mit",
        task_categories=["visual-question-answering"],
        tags=["medical", "pathology", "vqa"],
        homepage="https://github.com/UCSD-AI4H/PathVQA",
        citation=(
            "@article{he2020pathvqa,\n  title={PathVQA: 30000+ Questions for Medical Visual Question Answering},\n  "
            "author={He, Xuehai and Zhang, Yichen and Mou, Luntian and Xing, Eric and Xie, Pengtao},\n  "
            "journal={arXiv preprint arXiv:2003.10286},\n  year={2020}\n}"
        ),
    ),
    "imagefolder-csv": SourceInfo(
        name="imagefolder-csv",
        pretty_name="Image folder with a CSV",
        license="unknown",
        task_categories=["image-to-text"],
        tags=["medical"],
    ),
    "phantom": SourceInfo(
        name="phantom",
        pretty_name="radtune synthetic phantoms",
        license="cc0-1.0",
        credentialed=False,
        tags=["medical", "synthetic", "phantom"],
        citation="",
    ),
}


@dataclass(frozen=True)
class PublishedSplits:
    """The split sizes a source's publishers give, which a build of the whole source must reproduce.

    Args:
        counts (`dict[str, int]`): rows per split (`train`, `validation`, `test`).
        reference (`str`): where the numbers come from, and what they count.
        options (`dict[str, str]`): the reader options they hold for (SLAKE's counts are of its English questions).
    """

    counts: dict[str, int]
    reference: str
    options: dict[str, str] = field(default_factory=dict)


_VQA_RAD_SIZES = PublishedSplits(
    {"train": 1_793, "test": 451},
    "VQA-RAD as released on OSF holds 2,248 questions: 451 test (`phrase_type` test_freeform/test_para) and 1,797 "
    "train, of which 3 repeat another train triplet and 1 a test triplet; without those 4, train 1,793 / test 451, "
    "the sizes of the Hub copy flaviagiammarino/vqa-rad (its card)",
)
_PATHVQA_SIZES = PublishedSplits(
    {"train": 19_654, "validation": 6_259, "test": 6_719},
    "PathVQA's pickles with the repeated image-question-answer triplets of each split dropped, as in the Hub copy "
    "flaviagiammarino/path-vqa (its card; train 19,654 / validation 6,259 / test 6,719)",
)
_SLAKE_SIZES = PublishedSplits(
    {"train": 4_919, "validation": 1_053, "test": 1_061},
    "SLAKE's English questions (q_lang en): train 4,919 / validation 1,053 / test 1,061, the split LLaVA-Med and "
    "most papers report on (the card of the English Hub copy mdwiratathya/SLAKE-vqa-english, filtered from "
    "BoKelvin/SLAKE; OctoMed/SLAKE: train+validation 5,972, test 1,061)",
    {"languages": "en"},
)
_ROCOV2_SIZES = PublishedSplits(
    {"train": 59_958, "validation": 9_904, "test": 9_927},
    "ROCOv2 (Zenodo record 10821435, Rückert et al. 2024): 79,789 images, train 59,958 / validation 9,904 / "
    "test 9,927",
)
# Keyed by reader name (the download) or by Hub repo id (`OWNER/NAME`, lowercase).
PUBLISHED_SPLITS: dict[str, PublishedSplits] = {
    "vqa-rad": _VQA_RAD_SIZES,
    "pathvqa": _PATHVQA_SIZES,
    "slake": _SLAKE_SIZES,
    "rocov2": _ROCOV2_SIZES,
    "flaviagiammarino/vqa-rad": _VQA_RAD_SIZES,
    "flaviagiammarino/path-vqa": _PATHVQA_SIZES,
    "bokelvin/slake": _SLAKE_SIZES,
    "eltorio/rocov2-radiology": PublishedSplits(
        {"train": 59_962, "validation": 9_904, "test": 9_927},
        "the card of the Hub copy eltorio/ROCOv2-radiology (train 59,962 / validation 9,904 / test 9,927; the "
        "Zenodo release counts 59,958 train images)",
    ),
}


def published_splits(
    source: str, hub_repo: str | None = None, reader_options: dict | None = None
) -> PublishedSplits | None:
    """The published split sizes a build of `source` should have, or `None` when radtune knows none for that source
    and reader options. A Hub copy radtune knows (`hub_repo`, e.g. `flaviagiammarino/vqa-rad`) is compared with the
    sizes its card gives, any other copy with the source's."""
    published = PUBLISHED_SPLITS.get((hub_repo or "").lower()) or PUBLISHED_SPLITS.get(source)
    if published is None:
        return None
    options = {key: str(value) for key, value in (reader_options or {}).items()}
    for key, value in published.options.items():
        if options.get(key, value).replace(" ", "") != value:
            return None
    return published


def read_phantom_marker(root: str | Path) -> dict | None:
    """The parsed `PHANTOM.json` of a dataset root, or `None` when the root is not a phantom.

    Raises:
        `ValueError`: the marker exists but is not a JSON object.
    """
    marker = Path(root) / PHANTOM_MARKER
    if not marker.is_file():
        return None
    try:
        payload = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{marker}: not valid JSON ({error})") from error
    if not isinstance(payload, dict):
        raise ValueError(f"{marker}: expected a JSON object")
    return payload


def resolve_source(reader_name: str, root: str | Path) -> tuple[SourceInfo, dict | None]:
    """The `SourceInfo` a build of `root` with reader `reader_name` carries, and the phantom marker if any.

    A phantom root is always source `phantom` (CC0, not credentialed) whatever reader read it; its
    task categories are those of the reader's source so the card still says what the data is for.
    """
    marker = read_phantom_marker(root)
    reader_info = SOURCES[reader_name]
    if marker is None:
        return reader_info, None
    phantom = SOURCES["phantom"]
    info = SourceInfo(
        name=phantom.name,
        pretty_name=f"{phantom.pretty_name} ({reader_name} layout)",
        license=phantom.license,
        credentialed=False,
        task_categories=list(reader_info.task_categories),
        tags=sorted(set(phantom.tags) | {reader_name}),
        homepage=phantom.homepage,
        citation="",
        data_use_notice="",
    )
    return info, marker
