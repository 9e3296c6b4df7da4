"""A rule-based CheXpert-style report labeler for the 14 CheXpert observations.

`label_report(text)` returns, per observation, `1.0` (positive), `0.0` (negative), `-1.0` (uncertain) or
`None` (not mentioned), the values of CheXpert's `chexpert.csv` files. It follows the CheXpert labeler's three
stages with regular expressions instead of a dependency parse:

1. Mention extraction. Each observation has mention phrases (`OBSERVATIONS`), matched on word boundaries in
   the lower-cased text, after masking its exclusions ("pericardial effusion" is not a pleural effusion,
   "mass effect" is not a lung lesion, "subcutaneous edema" is not pulmonary edema). A few anatomical words
   ("heart size", "cardiac silhouette", "mediastinum", …) are mentions only together with a size word close
   by: "the heart is enlarged" → Cardiomegaly 1, "heart size is normal" → 0, "the heart is unchanged" → none.
2. Classification of each mention, within its clause only. A report is split into sentences (at `.`, `!`,
   `?` that end a sentence, not decimal points), `;`, `:` and new paragraphs, and each sentence into clauses at
   "but", "however", "although", "though", "whereas", "except", "apart from", "otherwise" and before a
   non-initial "there is/are". In its clause a mention is
   - uncertain (-1) when an uncertainty cue precedes it ("cannot exclude", "possible", "may represent",
     "suggestive of", "concerning for", "likely", …) and no negation cue comes before that cue ("no
     consolidation to suggest pneumonia" is a negation), when an uncertainty cue follows it ("… cannot be
     excluded", "… is possible"), or when "versus"/"vs" joins it to anything;
   - else negative (0) when a negation cue precedes it ("no", "not", "without", "free of", "negative for",
     "absence of", "no evidence of", "resolution of", "removal of", and "normal"/"unremarkable" up to three
     words before) or follows it ("… is not seen", "… has resolved", "… is absent", "… has been removed");
   - else positive (1).
   Uncertainty wins over negation ("cannot be excluded", "not excluded"). A post-cue reaches back over a
   plain list of mentions: in "effusion or pneumothorax is not seen" both are negated. "No change",
   "no interval change", "no significant change", "no increase/decrease" are not negations.
3. Aggregation per report: positive > uncertain > negative over all mentions of an observation.
   No Finding is 1 when no observation other than Support Devices is positive or uncertain, else blank
   (CheXpert's rule); an empty report gets blanks everywhere.

Hierarchy: like the CheXpert labeler's own output, labels are not propagated along the CheXpert paper's
observation hierarchy: "consolidation" gives Consolidation 1 and leaves Lung Opacity blank unless an opacity
phrase is present. Use `propagate_hierarchy=True` to also set Lung Opacity (from Consolidation, Edema,
Pneumonia, Atelectasis, Lung Lesion) and Enlarged Cardiomediastinum (from Cardiomegaly) when the parent
is less certain than its child.

This is not CheXbert (a BERT model that needs a download) and not the NegBio-based CheXpert labeler itself:
it is a transparent approximation that is right on short, plainly worded reports such as radtune's phantom
reports, and that other radtune pieces (the offline QA generator, the clinical F1 metric) build on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The 14 CheXpert observations in the CheXpert labeler's order: radtune's one declaration of this vocabulary.
# Readers, phantom layouts, the clinical metric and zero-shot classes import it (MIMIC-CXR's chexpert.csv and
# CheXbert's label files list the same names in other orders).
OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0


@dataclass(frozen=True)
class _Observation:
    mentions: str  # regex of mention phrases
    exclusions: str | None = None  # regex of phrases masked before matching
    anatomy: str | None = None  # regex of words that are a mention only with a size word nearby


# Size words for the anatomical mentions: abnormal ones make a positive mention, normal ones a negative one.
_ABNORMAL_SIZE = r"enlarge\w*|enlargement|widen\w*|increased(?: in size)?|large|prominen\w*|dilat\w*"
_NORMAL_SIZE = r"normal(?: in size| size)?|unremarkable|within normal limits|upper limits? of normal|top[- ]normal"

OBSERVATIONS_RULES: dict[str, _Observation] = {
    "Enlarged Cardiomediastinum": _Observation(
        mentions=r"enlarged cardiomediastin\w*|cardiomediastinal (?:enlargement|widening)|mediastinal "
        r"(?:widening|enlargement)|widen(?:ed|ing) (?:of the )?(?:superior )?mediastinum|"
        r"enlarged (?:superior )?mediastinum|mediastinal silhouette is widened",
        anatomy=r"cardiomediastinal (?:silhouette|contours?|shadow)|mediastinal (?:silhouette|contours?)|"
        r"(?:superior )?mediastinum",
    ),
    "Cardiomegaly": _Observation(
        mentions=r"cardiomegaly|cardiac enlargement|enlarged (?:heart|cardiac silhouette)|"
        r"enlargement of the (?:heart|cardiac silhouette)",
        anatomy=r"heart(?: size)?|cardiac (?:silhouette|size|shadow|contours?)",
    ),
    "Lung Lesion": _Observation(
        mentions=r"nodules?|nodular(?:ity| opacit(?:y|ies))?|masse?s?|lesions?|tumou?rs?|neoplasms?|"
        r"carcinoma|cancer|malignan\w*|metastas[ie]s|metastatic disease|cavitary lesion",
        exclusions=r"mass effect|(?:bone|bony|osseous|lytic|sclerotic|blastic|skin|cutaneous) lesions?|"
        r"soft[- ]tissue (?:mass|masses|lesions?)|breast (?:mass|masses|lesions?)|"
        r"(?:breast|prostate|colon|rectal|renal|thyroid|ovarian|pancreatic|bladder|skin) (?:cancer|carcinoma)",
    ),
    "Lung Opacity": _Observation(
        mentions=r"opacit(?:y|ies)|opacification|opacified|infiltrates?|infiltration|air[- ]?space "
        r"(?:disease|opacit(?:y|ies))|ground[- ]glass|increased density|densit(?:y|ies) in the (?:\w+ )?lung|"
        r"interstitial (?:markings?|pattern|opacit(?:y|ies)|lung disease)|reticular (?:markings?|pattern)|"
        r"reticulation|haziness|hazy",
    ),
    "Edema": _Observation(
        mentions=r"o?edema|(?:pulmonary )?(?:vascular|venous) congestion|congestive heart failure|chf|"
        r"fluid overload|kerley b?(?: |-)?lines|cephalization|vascular redistribution",
        exclusions=r"(?:subcutaneous|soft[- ]tissue|chest wall|extremity|scrotal|pedal|bowel wall) o?edema",
    ),
    "Consolidation": _Observation(mentions=r"consolidat\w*"),
    "Pneumonia": _Observation(
        mentions=r"pneumonias?|bronchopneumonia|pneumonitis|(?:pulmonary |lung )?infections?|"
        r"infectious process|aspiration",
    ),
    "Atelectasis": _Observation(
        mentions=r"atelecta\w*|(?:lobar|segmental|subsegmental|lobe|lung) collapse|collapsed? (?:of )?"
        r"(?:the )?(?:\w+ )?(?:lobe|lung)|volume loss",
    ),
    "Pneumothorax": _Observation(mentions=r"pneumothora(?:x|ces)|hydropneumothorax"),
    "Pleural Effusion": _Observation(
        mentions=r"effusions?|pleural fluid|hydrothorax|hydropneumothorax|(?:blunting of the|blunted) "
        r"(?:\w+ )?costophrenic angles?|costophrenic (?:angle )?blunting",
        exclusions=r"pericardial effusions?|(?:joint|knee|shoulder|elbow|hip) effusions?",
    ),
    "Pleural Other": _Observation(
        mentions=r"pleural (?:thickening|plaques?|scarring|calcifications?|abnormalit(?:y|ies)|reaction)|"
        r"fibrothorax|pleuro-?parenchymal (?:scarring|thickening)",
    ),
    "Fracture": _Observation(mentions=r"fractures?|fractured|fx"),
    "Support Devices": _Observation(
        mentions=r"pacemakers?|pacers?|defibrillators?|aicd|icd|(?:pacing|pacer|transvenous) leads?|"
        r"(?:endotracheal|tracheostomy|nasogastric|orogastric|enteric|feeding|chest|ng|og|et|dobb?hoff) tubes?|"
        r"tracheostomy|dobb?hoff|endotracheal|catheters?|picc(?: line)?s?|central (?:venous )?lines?|"
        r"(?:internal jugular|subclavian|ij|central) (?:venous )?(?:line|catheter|access)s?|port-?a-?cath|"
        r"(?:mediport|power ?port|chest port|infusion port)|swan[- ]ganz|sternotomy wires?|sternal wires?|"
        r"median sternotomy|surgical clips?|stents?|prosthetic (?:heart )?valves?|valve replacement|"
        r"(?:chest|mediastinal|pleural) drains?|pigtail|support devices?|(?:monitoring|ecg|ekg) leads|"
        r"(?:orthopedic|spinal|surgical) hardware|lvad|impella|intra-?aortic balloon pump|iabp|"
        r"(?:lines and tubes|tubes and lines)",
    ),
}

# --- cues -------------------------------------------------------------------------------------------------------
_PSEUDO_NEGATIONS = re.compile(
    r"\bno (?:significant |substantial |appreciable |definite )?(?:interval )?(?:change|increase|decrease)\b|"
    r"\bnot (?:significantly )?(?:changed|increased|decreased)\b|\bno longer\b(?= (?:requir|need))|"
    r"\bgram[- ]negative\b"
)
_PRE_UNCERTAIN = re.compile(
    r"\b(?:cannot|can ?not|could not|can't) (?:be )?(?:excluded?|ruled? out|rule out)|\bnot excluded\b|"
    r"\b(?:cannot|can ?not) (?:entirely |completely |definitely )?(?:exclude|rule out)|"
    r"\b(?:possible|possibly|probable|probably|likely|questionabl[ey]|equivocal|suspect(?:ed)?|"
    r"suspicious for|suspicion (?:of|for)|concern(?:ing)? for|suggest(?:s|ive of|ing)?|worrisome for|"
    r"may (?:represent|reflect|indicate|be|have)|might (?:represent|reflect|be)|could (?:represent|reflect|be)|"
    r"presumed|presumably|indeterminate|uncertain|borderline|differential (?:diagnosis )?(?:includes?|of)|"
    r"question of|consider(?:ed)?|versus|vs|(?:is )?difficult to exclude|rule out|r/o|not ruled out|"
    r"consistent with (?:possible|early))\b"
)
_POST_UNCERTAIN = re.compile(
    r"^[^.]{0,60}?\b(?:(?:cannot|can ?not|could not) (?:be )?(?:entirely |completely )?(?:excluded|ruled out)|"
    r"(?:is|are) not (?:excluded|ruled out)|(?:is|are) (?:possible|likely|probable|suspected|questioned|"
    r"not excluded)|(?:may|might|could) be (?:present|seen)|versus|vs)\b"
)
_VERSUS = re.compile(r"\b(?:versus|vs)\b")
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|free of|negative for|absence of|absent|resolution of|resolved|removal of|"
    r"removed|rather than|neither|nor|clear of|no evidence of|no signs? of|ruled out)\b"
)
_NORMAL_NEAR = re.compile(r"\b(?:normal|unremarkable)\b(?:\W+\w+){0,3}\W*$")
_POST_NEGATION = re.compile(
    r"^[^.]{0,60}?\b(?:(?:is|are|was|were|has been|have been)\s+)?(?:not (?:seen|identified|present|visible|"
    r"evident|demonstrated|appreciated|detected|noted|appreciable|apparent|visualized)|absent|(?:has|have) "
    r"resolved|resolved|no longer (?:seen|present|visible|evident|identified|demonstrated)|(?:has|have) "
    r"been removed|removed|excluded|ruled out)\b"
)
_LIST_GAP = re.compile(r"^[\s,/]*(?:(?:and|or|nor|and/or)[\s,]*)?$")

# Sentence ends ('.', '!', '?' not inside a number), ';', ':' and blank lines.
_SENTENCE_SPLIT = re.compile(r"(?<!\d)[.!?](?!\d)|[.!?](?=\s|$)|[;:]|\n\s*\n")
_CLAUSE_SPLIT = re.compile(
    r"\b(?:but|however|although|though|whereas|except(?: for)?|apart from|otherwise|with the exception of)\b"
    r"|(?<=\S)\s+(?=(?:and |, )?there (?:is|are)\b)"
)


def _compile(pattern: str) -> re.Pattern:
    return re.compile(rf"(?<![\w-])(?:{pattern})(?![\w-])")


_MENTIONS = {name: _compile(rule.mentions) for name, rule in OBSERVATIONS_RULES.items()}
_EXCLUSIONS = {name: _compile(rule.exclusions) for name, rule in OBSERVATIONS_RULES.items() if rule.exclusions}
_ANATOMY = {name: _compile(rule.anatomy) for name, rule in OBSERVATIONS_RULES.items() if rule.anatomy}
_SIZE_AFTER = re.compile(
    rf"^(?:[^\w,]+\w+){{0,4}}?[^\w,]+(?:(not|no)\s+(?:\w+\s+)?)?(?:({_ABNORMAL_SIZE})|({_NORMAL_SIZE}))\b"
)
_SIZE_BEFORE = re.compile(rf"\b(?:(no|not)\s+)?(?:({_ABNORMAL_SIZE})|({_NORMAL_SIZE}))(?:\W+\w+){{0,2}}?\W*$")


def split_clauses(text: str) -> list[str]:
    """The clauses a report is classified in (lower-cased, whitespace collapsed)."""
    clauses = []
    for sentence in _SENTENCE_SPLIT.split(text.lower()):
        for clause in _CLAUSE_SPLIT.split(sentence):
            clause = " ".join(clause.split())
            if clause:
                clauses.append(clause)
    return clauses


def _mask(text: str, pattern: re.Pattern) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def _find_mentions(clause: str) -> list[tuple[int, int, str, float | None]]:
    """(start, end, observation, forced value) for every mention in a clause, sorted by position.

    A forced value comes from an anatomical mention's size word: 0.0 for "normal" sizes and negated abnormal
    ones ("not enlarged"), None (classify by cues) for abnormal ones.
    """
    found = []
    for name, pattern in _MENTIONS.items():
        text = _mask(clause, _EXCLUSIONS[name]) if name in _EXCLUSIONS else clause
        spans = []
        for match in pattern.finditer(text):
            spans.append((match.start(), match.end()))
            found.append((match.start(), match.end(), name, None))
        if name not in _ANATOMY:
            continue
        for match in _ANATOMY[name].finditer(text):
            if any(s <= match.start() < e or match.start() <= s < match.end() for s, e in spans):
                continue
            after = _SIZE_AFTER.match(text[match.end() :])
            before = _SIZE_BEFORE.search(text[: match.start()])
            size = after or before
            if size is None:
                continue
            negated, abnormal = size.group(1), size.group(2)
            forced = NEGATIVE if (negated or not abnormal) else None
            start = match.start() if size is after else size.start()
            end = match.end() + size.end() if size is after else match.end()
            found.append((start, end, name, forced))
    found.sort()
    return found


def _classify(clause: str, mentions: list[tuple[int, int, str, float | None]]) -> list[float]:
    values: list[float | None] = []
    post: list[float | None] = []
    for i, (start, end, _name, forced) in enumerate(mentions):
        next_start = mentions[i + 1][0] if i + 1 < len(mentions) else len(clause)
        after = clause[end : max(end, next_start)]
        before = clause[:start]
        # The span itself may hold a cue too: an anatomical mention spans "heart may be enlarged".
        pre_uncertain = _PRE_UNCERTAIN.search(clause[:end])
        pre_negation = _PRE_NEGATION.search(before)
        if pre_uncertain and pre_negation and pre_negation.start() < pre_uncertain.start():
            pre_uncertain = None  # "no consolidation to suggest pneumonia": the negation governs
        if _VERSUS.search(clause) or pre_uncertain or _POST_UNCERTAIN.search(after):
            values.append(UNCERTAIN if forced is None else forced)
            post.append(UNCERTAIN if _POST_UNCERTAIN.search(after) else None)
            continue
        if forced is not None:
            values.append(forced)
            post.append(None)
            continue
        if pre_negation or _NORMAL_NEAR.search(before):
            values.append(NEGATIVE)
        else:
            values.append(POSITIVE)
        post.append(NEGATIVE if _POST_NEGATION.search(after) else None)
    # A post-cue covers the mentions listed before it: "effusion or pneumothorax is not seen".
    for i in range(len(mentions) - 1, -1, -1):
        if post[i] is not None and mentions[i][3] is None:
            values[i] = post[i] if values[i] != UNCERTAIN else values[i]
        if i > 0 and post[i] is not None and post[i - 1] is None:
            gap = clause[mentions[i - 1][1] : mentions[i][0]]
            if _LIST_GAP.match(gap) and mentions[i - 1][3] is None:
                post[i - 1] = post[i]
    return [v for v in values if v is not None]


_PRIORITY = {POSITIVE: 3, UNCERTAIN: 2, NEGATIVE: 1}
_HIERARCHY = {
    "Lung Opacity": ("Consolidation", "Edema", "Pneumonia", "Atelectasis", "Lung Lesion"),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}


def label_report(text: str, *, propagate_hierarchy: bool = False) -> dict[str, float | None]:
    """Label one report with the 14 CheXpert observations.

    Args:
        text (`str`): the report (findings and/or impression).
        propagate_hierarchy (`bool`, *optional*, defaults to `False`): also raise parents (Lung Opacity,
            Enlarged Cardiomediastinum) to their most certain child's label (see the module docstring).

    Returns:
        `dict[str, float | None]`: observation → 1.0, 0.0, -1.0 or None (not mentioned), in `OBSERVATIONS` order.

    Example:
        >>> label_report("No pleural effusion or pneumothorax. The heart is enlarged.")["Cardiomegaly"]
        1.0
    """
    if not isinstance(text, str):
        raise TypeError(f"a report must be a string, got {type(text).__name__}")
    labels: dict[str, float | None] = dict.fromkeys(OBSERVATIONS)
    if not text.strip():
        return labels
    for clause in split_clauses(text):
        clause = _PSEUDO_NEGATIONS.sub(lambda m: " " * len(m.group(0)), clause)
        mentions = _find_mentions(clause)
        for (_s, _e, name, _f), value in zip(mentions, _classify(clause, mentions), strict=True):
            current = labels[name]
            if current is None or _PRIORITY[value] > _PRIORITY[current]:
                labels[name] = value
    if propagate_hierarchy:
        for parent, children in _HIERARCHY.items():
            for child in children:
                value = labels[child]
                if value is not None and value != NEGATIVE:
                    if labels[parent] is None or _PRIORITY[value] > _PRIORITY[labels[parent]]:
                        labels[parent] = value
    findings = [labels[name] for name in OBSERVATIONS if name not in ("No Finding", "Support Devices")]
    labels["No Finding"] = None if any(v in (POSITIVE, UNCERTAIN) for v in findings) else POSITIVE
    return labels


def label_reports(texts: Iterable[str], *, propagate_hierarchy: bool = False) -> list[dict[str, float | None]]:
    """`label_report` for each text (a list of dicts in input order)."""
    return [label_report(text, propagate_hierarchy=propagate_hierarchy) for text in texts]


def positive_findings(labels: dict[str, float | None], *, include: Sequence[float] = (POSITIVE,)) -> list[str]:
    """The observations whose label is in `include` (default: positives), in `OBSERVATIONS` order."""
    return [name for name in OBSERVATIONS if labels.get(name) in include]
