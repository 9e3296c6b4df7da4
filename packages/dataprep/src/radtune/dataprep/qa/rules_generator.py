"""Offline, free, deterministic question–answer pairs from the report labeler's output.

For each report: closed questions per labelled CheXpert observation ("Is there a pleural effusion?" →
"Yes."/"No."; uncertain mentions give "Possibly." or are skipped), interleaved yes/no so both answers are
equally common where the report allows; laterality, location and size questions read from the clause that
makes the positive mention ("Which side is the pneumothorax on?" → "Left."); device questions; and the open
"What are the main findings?" answered by the impression. Only what the report states is asked: a finding
the report does not mention gets no question.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable

from radtune.common.labeler import NEGATIVE, OBSERVATIONS_RULES, POSITIVE, UNCERTAIN, label_report, split_clauses
from radtune.dataprep.section_parser import parse_report

Labeler = Callable[[str], dict]

# The closed question of each observation and the name used in the detail questions.
QUESTIONS: dict[str, tuple[str, str]] = {
    "No Finding": ("Are there any abnormal findings?", ""),  # asked as NORMAL_QUESTION when No Finding is 1.0
    "Enlarged Cardiomediastinum": ("Is the cardiomediastinal silhouette enlarged?", ""),
    "Cardiomegaly": ("Is the heart enlarged?", "cardiomegaly"),
    "Lung Lesion": ("Is there a lung nodule or mass?", "lesion"),
    "Lung Opacity": ("Is there a lung opacity?", "opacity"),
    "Edema": ("Is there pulmonary edema?", "edema"),
    "Consolidation": ("Is there consolidation?", "consolidation"),
    "Pneumonia": ("Is there evidence of pneumonia?", ""),
    "Atelectasis": ("Is there atelectasis?", "atelectasis"),
    "Pneumothorax": ("Is there a pneumothorax?", "pneumothorax"),
    "Pleural Effusion": ("Is there a pleural effusion?", "pleural effusion"),
    "Pleural Other": ("Is there another pleural abnormality, such as pleural thickening?", ""),
    "Fracture": ("Is there a fracture?", "fracture"),
    "Support Devices": ("Are there any support devices, lines or tubes?", ""),
}
NORMAL_QUESTION = "Are the heart and lungs normal?"  # a "Yes." for normal studies, which have no other
LATERAL = ("Lung Lesion", "Consolidation", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Fracture")
LOCATED = ("Lung Lesion", "Consolidation", "Atelectasis")
SIZED = ("Pneumothorax", "Pleural Effusion")
SEVERITY = ("Cardiomegaly", "Edema")
DEVICES = {
    "an endotracheal tube": r"endotracheal|et tube",
    "a tracheostomy tube": r"tracheostomy",
    "a nasogastric or enteric tube": r"nasogastric|orogastric|enteric tube|feeding tube|ng tube|og tube|dobb?hoff",
    "a central venous catheter": r"central venous|central line|(?:internal jugular|subclavian|ij) (?:venous )?(?:line|catheter)",
    "a PICC line": r"picc",
    "a chest tube": r"chest tube|pleural drain|pigtail",
    "a pacemaker": r"pacemaker|pacer|defibrillator|aicd",
    "sternotomy wires": r"sternotomy|sternal wires?",
}
_LOBE = re.compile(r"\b(right|left) (upper|middle|lower) lobe\b|\b(lingula)\b")
_SIZE = re.compile(r"\b(small|moderate|large|tiny|trace)\b")
_SEVERITY = re.compile(r"\b(mild|moderate|severe|mildly|moderately|severely)\b")
_MEASURE = re.compile(r"\b(\d+(?:\.\d+)?)\s*(mm|cm)\b")
_LIST_NUMBER = re.compile(r"(?:^|(?<=\s))\d{1,2}[.)]\s+")  # "1. ", "2) " of a numbered impression
_SEVERITY_WORD = {"mildly": "mild", "moderately": "moderate", "severely": "severe"}


def _mentions(observation: str) -> re.Pattern:
    return re.compile(rf"\b(?:{OBSERVATIONS_RULES[observation].mentions})\b", re.IGNORECASE)


_MENTION = {name: _mentions(name) for name in OBSERVATIONS_RULES}


def _pair(question: str, answer: str, answer_type: str, category: str) -> dict:
    return {"question": question, "answer": answer, "answer_type": answer_type, "category": category}


def _positive_clauses(text: str, observation: str, labeler: Labeler) -> list[str]:
    """The clauses of `text` that mention `observation` positively (by the labeler's own reading)."""
    return [
        clause for clause in split_clauses(text)
        if _MENTION[observation].search(clause) and labeler(clause).get(observation) == POSITIVE
    ]  # fmt: skip


def _side(clauses: list[str]) -> str | None:
    sides = set()
    for clause in clauses:
        lower = clause.lower()
        if re.search(r"\b(bilateral(ly)?|both)\b", lower):
            return "Both sides."
        sides.update(re.findall(r"\b(right|left)\b", lower))
    if len(sides) == 2:
        return "Both sides."
    return f"{sides.pop().capitalize()}." if sides else None


def _details(observation: str, clauses: list[str]) -> list[dict]:
    name = QUESTIONS[observation][1]
    if not name or not clauses:
        return []
    joined = " ".join(clauses).lower()
    out = []
    if observation in LATERAL:
        side = _side(clauses)
        if side:
            out.append(_pair(f"Which side is the {name} on?", side, "open", "location"))
    if observation in LOCATED:
        lobe = _LOBE.search(joined)
        if lobe:
            out.append(_pair(f"Where is the {name}?", f"In the {lobe.group(0)}.", "open", "location"))
    if observation in SIZED:
        size = _SIZE.search(joined)
        if size:
            out.append(_pair(f"How large is the {name}?", f"{size.group(1).capitalize()}.", "open", "severity"))
    if observation == "Lung Lesion":
        measure = _MEASURE.search(joined)
        if measure:
            out.append(
                _pair(f"How large is the {name}?", f"About {measure.group(1)} {measure.group(2)}.", "open", "severity")
            )
    if observation in SEVERITY:
        severity = _SEVERITY.search(joined)
        if severity:
            word = _SEVERITY_WORD.get(severity.group(1), severity.group(1))
            out.append(_pair(f"How severe is the {name}?", f"{word.capitalize()}.", "open", "severity"))
    return out


def _device_pairs(clauses: list[str]) -> list[dict]:
    joined = " ".join(clauses).lower()
    found = [name for name, pattern in DEVICES.items() if re.search(rf"\b(?:{pattern})", joined)]
    if not found:
        return []
    listed = found[0] if len(found) == 1 else ", ".join(found[:-1]) + " and " + found[-1]
    out = [_pair("What support devices are present?", listed[0].upper() + listed[1:] + ".", "open", "device")]
    for name in found:
        noun = name.split(" ", 1)[1] if name.startswith(("a ", "an ")) else name
        verb = "Are there" if name == "sternotomy wires" else "Is there"
        out.append(_pair(f"{verb} {name if verb == 'Is there' else noun}?", "Yes.", "closed", "device"))
    return out


def generate_rules_qa(
    report: str,
    findings: str | None = None,
    impression: str | None = None,
    n: int | None = 5,
    uncertain: str = "possibly",
    balance: bool = True,
    labeler: Labeler = label_report,
) -> list[dict]:
    """Question–answer pairs of one report from the labeler's reading of it.

    Args:
        report (`str`): the report text (a full report is parsed for its FINDINGS and IMPRESSION).
        findings (`str`, *optional*): the findings section when already split (the dataset's `findings`).
        impression (`str`, *optional*): the impression section (answers "What are the main findings?").
        n (`int`, *optional*, defaults to `5`): at most this many pairs (`None` or `0`: all of them). Pairs are
            taken in turn from the open question, the closed questions and the detail questions.
        uncertain (`str`, *optional*, defaults to `"possibly"`): `"possibly"` answers uncertain mentions
            "Possibly."; `"skip"` asks nothing about them.
        balance (`bool`, *optional*, defaults to `True`): ask at most one more "No." question than "Yes." ones,
            so that a model cannot learn to answer "No." to everything (reports negate far more than they affirm).
        labeler (`Callable[[str], dict]`, *optional*): `label_report(text) -> {observation: 1.0|0.0|-1.0|None}`.

    Returns:
        `list[dict]`: pairs with `question`, `answer`, `answer_type` (`closed`|`open`) and `category`.
    """
    if uncertain not in ("possibly", "skip"):
        raise ValueError(f"uncertain must be 'possibly' or 'skip', got {uncertain!r}")
    findings, impression = (findings or "").strip(), (impression or "").strip()
    if not findings and not impression:
        parsed = parse_report(report)
        findings, impression = parsed.findings, parsed.impression
    # Label only what the radiologist saw: the indication ("evaluate for pneumonia") is no finding.
    text = " ".join(part for part in (findings, impression) if part) or " ".join(report.split())
    labels = labeler(text)
    # Deterministic per report, different across reports: question forms and which yes/no pairs come first.
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).hexdigest())

    yes, no, maybe, details = [], [], [], []
    for observation, (question, _name) in QUESTIONS.items():
        value = labels.get(observation)
        if observation == "No Finding":
            # CheXpert's No Finding is 1.0 or blank: blank with a positive finding means abnormal.
            pathology = any(labels.get(o) == POSITIVE for o in QUESTIONS if o not in ("No Finding", "Support Devices"))
            normal = value == POSITIVE
            if normal or pathology:
                # Ask "normal?" or "abnormal?" (chosen per report), so each question gets both answers.
                if rng.random() < 0.5:
                    pair = _pair(NORMAL_QUESTION, "Yes." if normal else "No.", "closed", "presence")
                else:
                    pair = _pair(question, "No." if normal else "Yes.", "closed", "presence")
                (yes if pair["answer"] == "Yes." else no).append(pair)
            continue
        if value == POSITIVE:
            yes.append(_pair(question, "Yes.", "closed", "presence"))
            if observation == "Support Devices":
                details += _device_pairs(_positive_clauses(text, observation, labeler))
            elif observation != "No Finding":
                details += _details(observation, _positive_clauses(text, observation, labeler))
        elif value == NEGATIVE:
            no.append(_pair(question, "No.", "closed", "presence"))
        elif value == UNCERTAIN and uncertain == "possibly":
            maybe.append(_pair(question, "Possibly.", "closed", "presence"))

    rng.shuffle(yes)
    rng.shuffle(no)
    if balance:
        no = no[: len(yes) + 1]
    closed = [pair for couple in zip(yes, no, strict=False) for pair in couple]
    closed += yes[len(no) :] + no[len(yes) :] + maybe
    summary = _LIST_NUMBER.sub("", impression).strip()
    opened = [_pair("What are the main findings?", summary, "open", "other")] if summary else []

    groups = [opened, closed, details]
    pairs: list[dict] = []
    seen = set()
    while any(groups):
        for group in groups:
            if group:
                pair = group.pop(0)
                if pair["question"] not in seen:
                    seen.add(pair["question"])
                    pairs.append(pair)
    return pairs[:n] if n else pairs


def balance_closed_answers(
    pairs_per_report: list[list[dict] | None], seed: int = 0
) -> tuple[list[list[dict] | None], int]:
    """Drop yes/no pairs so that, across a split, every closed question is answered "Yes." as often as "No.".

    Reports negate far more findings than they affirm, so per-report balancing still leaves "Is there a
    pneumothorax?" answered "No." most of the time, and a model that never looks at the image scores well. After
    this, the majority answer to each question is right half the time: accuracy above that needs the image.
    A question asked with only one answer in the split is dropped altogether. "Possibly." and open pairs stay.

    Returns:
        `(pairs_per_report, n_dropped)`: the kept pairs in the same order (`None` entries stay `None`).
    """
    by_question: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for i, pairs in enumerate(pairs_per_report):
        for j, pair in enumerate(pairs or []):
            if pair["answer_type"] == "closed" and pair["answer"] in ("Yes.", "No."):
                by_question.setdefault(pair["question"], {"Yes.": [], "No.": []})[pair["answer"]].append((i, j))
    rng = random.Random(seed)
    dropped: set[tuple[int, int]] = set()
    for question in sorted(by_question):
        answers = by_question[question]
        keep = min(len(answers["Yes."]), len(answers["No."]))
        for answer in ("Yes.", "No."):
            extra = len(answers[answer]) - keep
            if extra:
                dropped.update(rng.sample(answers[answer], extra))
    kept = [
        None if pairs is None else [pair for j, pair in enumerate(pairs) if (i, j) not in dropped]
        for i, pairs in enumerate(pairs_per_report)
    ]
    return kept, len(dropped)
