"""Report text for a phantom: statements that describe exactly what was drawn, rendered per dataset style.

A report is built from `Statement`s, each carrying the CheXpert labels it asserts: a positive mention
(1.0) of a drawn finding, or an explicit negation (0.0, "No pneumothorax.") of an absent one. Labels
are therefore known by construction and agree with the CheXpert rule labeler's semantics: standard
mention words, "no ..." negations, never hedged. Sections: `findings` and `impression` (the CheXpert
labels of MIMIC-CXR come from the impression, CheXbert's `findings_fixed` / `impression_fixed` /
`report_fixed` from each part).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from radtune.common.labeler import OBSERVATIONS
from radtune.dataprep.phantoms.findings import Phantom

SD = "Support Devices"


@dataclass(frozen=True)
class Statement:
    text: str
    labels: dict[str, float] = field(default_factory=dict)


@dataclass
class ReportContent:
    examination: str
    indication: str
    technique: str
    comparison: str
    findings: list[Statement]
    impression: list[Statement]
    age: int
    sex: str  # "M" | "F"
    normal: bool  # nothing but support devices drawn

    @property
    def findings_text(self) -> str:
        return " ".join(statement.text for statement in self.findings)

    def impression_lines(self) -> list[str]:
        if len(self.impression) == 1:
            return [self.impression[0].text]
        return [f"{number}. {statement.text}" for number, statement in enumerate(self.impression, start=1)]


def section_labels(statements: list[Statement]) -> dict[str, float | None]:
    """CheXpert labels of a section: positive beats negative; No Finding when nothing but devices is positive."""
    labels: dict[str, float | None] = dict.fromkeys(OBSERVATIONS)
    for statement in statements:
        for observation, value in statement.labels.items():
            current = labels[observation]
            labels[observation] = value if current is None else max(current, value)
    pathology = [name for name, value in labels.items() if value == 1.0 and name not in (SD, "No Finding")]
    labels["No Finding"] = None if pathology else 1.0
    return labels


def _pick(rng, options):
    return options[int(rng.integers(0, len(options)))]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _join(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} or {items[1]}"
    return ", ".join(items[:-1]) + ", or " + items[-1]


def _severity(ctr: float) -> str:
    return "mild" if ctr < 0.58 else ("moderate" if ctr < 0.63 else "severe")


_ADVERB = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}


def _lesion_size(phantom: Phantom) -> str:
    if phantom.lesion == "nodule":
        return f"{phantom.lesion_size_mm} mm"
    return f"{phantom.lesion_size_mm / 10:.1f} cm"


def _effusion_words(phantom: Phantom) -> str:
    if phantom.effusion == "bilateral":
        return f"{phantom.effusion_size} bilateral pleural effusions"
    return f"{phantom.effusion_size} {phantom.effusion} pleural effusion"


def _device_statements(phantom: Phantom, rng) -> list[Statement]:
    out = []
    for device in phantom.devices:
        if device == "endotracheal tube":
            distance = int(rng.integers(3, 7))
            text = _pick(
                rng,
                (
                    f"Endotracheal tube terminates {distance} cm above the carina.",
                    f"An endotracheal tube is in standard position, {distance} cm above the carina.",
                    f"The endotracheal tube tip lies {distance} cm above the carina.",
                ),
            )
        elif device == "central venous catheter":
            route = phantom.central_line_route
            text = _pick(
                rng,
                (
                    f"{_cap(route)} central venous catheter terminates in the low SVC.",
                    f"A {route} central venous catheter is seen with its tip in the mid SVC.",
                    f"{_cap(route)} central venous catheter in place, tip at the cavoatrial junction.",
                ),
            )
        else:
            text = _pick(
                rng,
                (
                    "Left-sided pacemaker with leads in the right atrium and right ventricle.",
                    "A left chest wall pacemaker is present with its lead terminating in the right ventricle.",
                    "Left pectoral pacemaker device with intact leads.",
                ),
            )
        out.append(Statement(text, {SD: 1.0}))
    return out


def _finding_statements(phantom: Phantom, rng) -> list[Statement]:
    """The FINDINGS paragraph: devices, lungs, pleura, heart, bones."""
    out = _device_statements(phantom, rng)
    if phantom.consolidation:
        lobe = phantom.consolidation
        text = _pick(
            rng,
            (
                f"There is consolidation in the {lobe}, seen as a patchy airspace opacity.",
                f"Dense airspace opacity in the {lobe} with consolidation.",
                f"{_cap(lobe)} consolidation; the airspace opacity obscures the lung markings.",
            ),
        )
        out.append(Statement(text, {"Consolidation": 1.0, "Lung Opacity": 1.0}))
    if phantom.lesion:
        size, lobe = _lesion_size(phantom), phantom.lesion_lobe
        if phantom.lesion == "nodule":
            options = (
                f"A {size} nodule is seen in the {lobe}.",
                f"There is a {size} rounded nodule projecting over the {lobe}.",
                f"Well-circumscribed {size} pulmonary nodule in the {lobe}.",
            )
        else:
            options = (
                f"There is a {size} mass in the {lobe}.",
                f"A lobulated {size} mass occupies the {lobe}.",
                f"Large {size} mass projecting over the {lobe}.",
            )
        out.append(Statement(_pick(rng, options), {"Lung Lesion": 1.0}))
    if phantom.effusion:
        words = _effusion_words(phantom)
        if phantom.effusion == "bilateral":
            angle = "both costophrenic angles"
        else:
            angle = f"the {phantom.effusion} costophrenic angle"
        text = _pick(
            rng,
            (
                f"There {'are' if phantom.effusion == 'bilateral' else 'is a'} {words} with blunting of {angle}.",
                f"{_cap(words)}.",
                f"{_cap(words)} with a meniscus along the lateral chest wall.",
            ),
        )
        out.append(Statement(text, {"Pleural Effusion": 1.0}))
    if phantom.pneumothorax:
        size, side = phantom.pneumothorax_size, phantom.pneumothorax
        text = _pick(
            rng,
            (
                f"There is a {size} {side} apical pneumothorax.",
                f"{_cap(size)} {side} pneumothorax, with the visceral pleural line seen laterally.",
                f"A {size} {side}-sided pneumothorax is present.",
            ),
        )
        out.append(Statement(text, {"Pneumothorax": 1.0}))

    # Negations of what is absent, in the usual combined sentences.
    absent = []
    if not phantom.consolidation and not phantom.lesion:
        absent.append(("focal consolidation", "Consolidation"))
    if not phantom.effusion:
        absent.append(("pleural effusion", "Pleural Effusion"))
    if not phantom.pneumothorax:
        absent.append(("pneumothorax", "Pneumothorax"))
    if absent:
        if not phantom.consolidation and not phantom.lesion and rng.random() < 0.4:
            out.append(Statement(_pick(rng, ("The lungs are clear.", "The lungs are well expanded and clear."))))
        words = _join([words for words, _ in absent])
        text = _pick(rng, (f"No {words}.", f"There is no {words}.", f"No {words} is seen."))
        out.append(Statement(text, {observation: 0.0 for _, observation in absent}))
    if not phantom.consolidation and not phantom.lesion and not phantom.effusion and rng.random() < 0.3:
        out.append(Statement("No pulmonary edema.", {"Edema": 0.0}))

    if phantom.cardiomegaly:
        severity = _severity(phantom.ctr)
        text = _pick(
            rng,
            (
                f"{_cap(severity)} cardiomegaly.",
                f"The heart size is {_ADVERB[severity]} enlarged.",
                f"There is {severity} cardiomegaly, with an enlarged heart.",
            ),
        )
        out.append(Statement(text, {"Cardiomegaly": 1.0}))
    else:
        text = _pick(rng, ("Heart size is normal.", "The heart size is within normal limits.", "Normal heart size."))
        out.append(Statement(text, {"Cardiomegaly": 0.0}))
    if rng.random() < 0.5:
        out.append(Statement("The mediastinal contours are normal.", {"Enlarged Cardiomediastinum": 0.0}))
    if rng.random() < 0.3:
        out.append(Statement(_pick(rng, ("No acute osseous abnormality.", "The osseous structures are intact."))))
    return out


def _impression_statements(phantom: Phantom, rng) -> list[Statement]:
    out = []
    if phantom.cardiomegaly:
        out.append(Statement(f"{_cap(_severity(phantom.ctr))} cardiomegaly.", {"Cardiomegaly": 1.0}))
    if phantom.effusion:
        out.append(Statement(f"{_cap(_effusion_words(phantom))}.", {"Pleural Effusion": 1.0}))
    if phantom.pneumothorax:
        out.append(
            Statement(f"{_cap(phantom.pneumothorax_size)} {phantom.pneumothorax} pneumothorax.", {"Pneumothorax": 1.0})
        )
    if phantom.consolidation:
        lobe = phantom.consolidation
        text = _pick(
            rng,
            (
                f"{_cap(lobe)} consolidation with airspace opacity.",
                f"Airspace opacity and consolidation in the {lobe}.",
            ),
        )
        out.append(Statement(text, {"Consolidation": 1.0, "Lung Opacity": 1.0}))
    if phantom.lesion:
        size, lobe = _lesion_size(phantom), phantom.lesion_lobe
        follow_up = _pick(rng, (" Recommend chest CT for further characterization.", "", " CT is recommended."))
        out.append(Statement(f"{size} {phantom.lesion} in the {lobe}.{follow_up}", {"Lung Lesion": 1.0}))
    if phantom.devices:
        names = [
            f"{phantom.central_line_route} central venous catheter" if device == "central venous catheter" else device
            for device in phantom.devices
        ]
        out.append(Statement(_cap(" and ".join(names)) + " in standard position.", {SD: 1.0}))
    if phantom.is_normal:
        text = _pick(
            rng,
            (
                "No acute cardiopulmonary process.",
                "No acute cardiopulmonary abnormality.",
                "No acute intrathoracic process.",
                "Normal chest radiograph." if not phantom.devices else "No acute cardiopulmonary process.",
            ),
        )
        out.append(Statement(text))
    elif not phantom.pneumothorax and rng.random() < 0.3:
        out.append(Statement("No pneumothorax.", {"Pneumothorax": 0.0}))
    return out


_REASONS = (
    "cough",
    "shortness of breath",
    "chest pain",
    "fever",
    "dyspnea",
    "productive cough",
    "hypoxia",
    "preoperative evaluation",
)


def compose_report(phantom: Phantom, rng, age: int, sex: str, first_study: bool) -> ReportContent:
    """Everything a report says about `phantom`; `rng` varies the phrasing only."""
    person = "man" if sex == "M" else "woman"
    reason = _pick(rng, _REASONS)
    if "endotracheal tube" in phantom.devices:
        reason = "intubated, evaluate tube position"
    elif "central venous catheter" in phantom.devices and rng.random() < 0.5:
        reason = "central line placement"
    if phantom.view == "AP":
        examination, technique = "CHEST (PORTABLE AP)", "Portable AP chest radiograph."
    else:
        examination, technique = "CHEST (PA AND LAT)", "Chest PA and lateral."
    comparison = "None." if first_study else _pick(rng, ("___.", "Chest radiograph from ___.", "Prior study ___."))
    return ReportContent(
        examination=examination,
        indication=f"___-year-old {person} with {reason}.",
        technique=technique,
        comparison=comparison,
        findings=_finding_statements(phantom, rng),
        impression=_impression_statements(phantom, rng),
        age=age,
        sex=sex,
        normal=phantom.is_normal,
    )


def _wrap(text: str, first: str = "") -> list[str]:
    """MIMIC-CXR wrapping: every line starts with a space and is at most 79 characters long."""
    return [" " + line for line in textwrap.wrap(first + text, width=78)]


def render_mimic(report: ReportContent) -> str:
    """A MIMIC-CXR style free-text report (`FINAL REPORT`, upper-case section headers, 79-column lines)."""
    lines = ["                                 FINAL REPORT"]
    lines += _wrap(report.examination, "EXAMINATION:  ")
    lines.append(" ")
    lines += _wrap(report.indication, "INDICATION:  ")
    lines.append(" ")
    lines += _wrap(report.technique, "TECHNIQUE:  ")
    lines.append(" ")
    lines += _wrap(report.comparison, "COMPARISON:  ")
    lines.append(" ")
    lines += [" FINDINGS: ", " "]
    lines += _wrap(report.findings_text)
    lines.append(" ")
    lines += [" IMPRESSION: ", " "]
    for line in report.impression_lines():
        lines += _wrap(line)
    return "\n".join(lines) + "\n"


CHEXPERT_PLUS_FOOTER = (
    "This report has been anonymized. All dates are offset from the actual dates by a fixed interval "
    "associated with the patient."
)


def chexpert_plus_sections(report: ReportContent, accession: str) -> dict[str, str]:
    """The `section_*` cells of df_chexpert_plus_240401.csv (absent sections are empty)."""
    view = "1 VIEW, PORTABLE AP" if report.technique.startswith("Portable") else "1 VIEW, PA"
    sex = "Male" if report.sex == "M" else "Female"
    history = report.indication.split(" with ", 1)[1]
    return {
        "section_narrative": f"XR CHEST {view}",
        "section_clinical_history": f"{report.age} years {sex}, {history}",
        "section_history": "",
        "section_comparison": "None." if report.comparison == "None." else "Prior chest radiograph.",
        "section_technique": report.technique,
        "section_procedure_comments": "",
        "section_findings": report.findings_text,
        "section_impression": "\n".join(report.impression_lines()),
        "section_end_of_impression": "",
        "section_summary": "1-NORMAL" if report.normal else "2-ABNORMAL",
        "section_accession_number": accession,
    }


def render_chexpert_plus(sections: dict[str, str]) -> str:
    """The `report` cell of df_chexpert_plus_240401.csv, assembled from the sections as the original is."""
    parts = [
        f"NARRATIVE:\n{sections['section_narrative']}",
        f"CLINICAL HISTORY: {sections['section_clinical_history']}",
        f"COMPARISON: {sections['section_comparison']}",
        f"TECHNIQUE: {sections['section_technique']}",
        f"FINDINGS:\n{sections['section_findings']}",
        f"IMPRESSION:\n{sections['section_impression']}",
        f"SUMMARY: {sections['section_summary']}",
        f"ACCESSION NUMBER:\n{sections['section_accession_number']}\n{CHEXPERT_PLUS_FOOTER}",
    ]
    return "\n\n".join(parts)
