"""De-identification of free text: what is removed from a report before any of it leaves the machine.

`scrub(text)` replaces every identifier that `find_identifiers(text)` finds with MIMIC-CXR's own placeholder
`___` (a title or degree next to a name stays: `Dr. ___`, `___, MD`; an age over 89 becomes `___-year-old`):

- names with a title (`Dr. Smith`, `dr smith`, `Doctor Nguyen`, `Mrs. Garcia`, `Prof. Kowalski`) or a degree
  (`John Smith, MD`, `Jane Doe RN`, `Smith, John MD`, `R. Alvarez, NP`), and two-word names after a cue
  (`Dictated by:`, `discussed with`, `Patient name:`, `Referring physician:`);
- phone numbers in any format `phonenumbers` reads as possible for the US or in international form (`555-1234`,
  `(617) 555-1234`, `617.555.1234`, `+1 617 555 1234`, `+44 20 7946 0958`, with `ext. 5678` or `x4321`), and
  pager or extension numbers after `pager`, `ext`, `phone`;
- dates: numeric (`12/03/2024`, `3/5/21`, `2024-03-12`, `05.06.2023`, `12/03`), with month names
  (`March 12, 2024`, `12 Mar 2024`, `12-MAR-2024`, `Jan 3rd`, `14th of February`) and partial (`March 2024`,
  `Sept. 2023`, `12-Mar`); times of day (`10:45`, `4:30 pm`). A year alone stays (HIPAA Safe Harbor keeps years);
- e-mail addresses, URLs (`http(s)://`, `www.`, bare `host.org/path`), IPv4 addresses and DICOM UIDs;
- SSNs (`123-45-6789`, or 9 digits after `SSN`/`social security number`);
- record, accession and order numbers: labelled (`MRN: 1234567`, `Accession #A12345678`, `Unit No: 334455`),
  any run of six or more digits, and letters followed by five or more digits (`E12345678`);
- ages over 89 (`92-year-old`, `91 yo`, `age 95`, `aged 97`, `99 y/o`, `94 years old`, `95F`).

Kept: measurements (`3 cm`, `2.5 x 3.1 cm`, `0.5 mm`), spine and rib levels (`T2`, `C5-C6`, `L4`, `4th rib`),
eponyms (`Hodgkin`, `Crohn`, `Kerley B lines`, `Swan-Ganz`, `May-Thurner`), ages up to 89, `DRAIN`, `MR`, `MS`,
`PA and lateral`, a month name on its own, fractions such as `1/3`, and MIMIC's `___`.

Libraries: phone numbers come from `phonenumbers` (Google's libphonenumber, offline). The rest is written here,
because no maintained library that runs offline does it: presidio-analyzer needs spaCy and a model that is not on
PyPI (`en-core-web-sm`); its pattern recognizers alone found 29 of the 88 identifiers of radtune's test corpus
(none of the names, ages or record numbers, no dates with month names). scrubadub's offline detectors found 18/88
and changed a clinical sentence (`normal at 12.5`). philter-lite needs NLTK tagger data that is downloaded at run
time, and took eponyms (`Hodgkin`, `Crohn`, `Swan-Ganz`) as names. Measured on tests/fixtures/phi_corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

PLACEHOLDER = "___"  # MIMIC-CXR's own mark for removed text, kept as is
KINDS = ("name", "phone", "date", "time", "email", "url", "ssn", "record", "age")


@dataclass(frozen=True)
class Identifier:
    """One identifier found in a text: `text[start:end]`, of kind `kind` (one of `KINDS`)."""

    start: int
    end: int
    kind: str


# Names --------------------------------------------------------------------------------------------------------------
# Words that are never part of a name after a title or before a degree: function words, the verbs and nouns that
# follow "Dr." in reports ("Dr. ___ was notified", "DR chest"), departments and roles. Compared in lower case.
_NOT_NAMES = frozenset(
    """
    a an the and or of to in on at by for from with without via per as is was were be been are has had have will
    would should could can may might must not no yes who whom which that this these those there here it its he she
    they his her their him them we us our you your i me my regarding re about after before during since until when
    where while today tonight yesterday tomorrow now then also please same other office team service services
    notified aware informed paged called contacted discussed reviewed agreed confirmed reported read signed
    dictated examined ordered requested recommended states stated says said saw seen spoke telephoned emailed
    faxed verified acknowledged concurs concurred available present absent
    chest abdomen pelvis head neck spine image images imaging study studies exam examination radiograph
    radiography film films view views frontal lateral portable technique findings impression comparison
    history indication clinical report result results order orders note notes
    radiology radiologist radiologists resident residents fellow fellows attending attendings physician physicians
    doctor doctors nurse nurses nursing technologist tech surgery surgical surgeon neurosurgery medicine medical
    cardiology pulmonology oncology emergency department dept unit icu micu sicu ccu ed er ir or pacu clinic
    hospital floor ward team primary care provider providers consultant consult covering on-call oncall
    neurology neuroradiology orthopedics ortho urology gi hepatology nephrology rheumatology pediatrics obstetrics
    gyn ob ent trauma transplant thoracic vascular cardiothoracic interventional nuclear night day overnight float
    admitting house staff charge bedside position positioning information identifier name
    md rn np pa do phd patient patients family dx cr ct mr mri us xr pet spect nm
    """.split()
)
_TITLE = re.compile(
    r"\b(?:(?i:Dr|Doctor|Prof|Professor)\b\.?|(?:Mr|Mrs|Ms|Mx|Miss|Drs)\b\.?)"  # Mr/Mrs/Ms as written: "MS" is a disease
)
# One name word: Smith, O'Neil, McDonald, Smith-Jones, O'Neil-Jones, JONES, smith; or an initial "J.".
_LETTER = r"[^\W\d_]"  # any letter, accented ones too
_WORD = rf"(?:([A-Z]\.)|({_LETTER}(?:['’]?{_LETTER})+(?:-{_LETTER}(?:['’]?{_LETTER})+)*))"
_NAME_WORD = re.compile(rf"[ \t]+{_WORD}")
_NAME_WORD_TIGHT = re.compile(rf"[ \t]*{_WORD}")
_MORE_NAMES = re.compile(r"(?:,|,?\s+(?:and|&))\s+[A-Z][^\W\d_]+")
_DEGREE = (
    r"(?:M\.D\.|MD|D\.O\.|R\.N\.|RN|NP|Ph\.D\.|PhD|PA-C|CRNA|MBBS|MBChB|FRCR|FRCPC|FACR|DNP|APRN|FNP(?:-BC)?|LPN|"
    r"RPh|PharmD|DMD|DDS|MPH|CNM|RRT|RDMS|RDCS|RVT|RT\s?\(R\)|RT\(CT\)|RT\(MR\))"
)
_LOW = r"[^\W\d_A-Z]"  # a letter that is not an ASCII capital (é, a)
_CAP = rf"[A-Z](?:['’]?[A-Z])?{_LOW}+(?:[A-Z]{_LOW}+)?(?:-[A-Z](?:['’]?[A-Z])?{_LOW}+)*"  # Smith, O'Neil, McDonald, Müller
_UPPER = r"[A-Z](?:['’]?[A-Z])+(?:-[A-Z]+)*"  # JONES, O'NEIL
_PART = rf"(?:[A-Z]\.|{_CAP}|{_UPPER})"
# "John Smith, MD", "Jane Doe RN", "Smith, John MD", "John A. Smith, M.D." (", DO" only with the comma).
_NAME_DEGREE = re.compile(
    rf"(?<![\w.])(?P<name>{_CAP},\s*{_CAP}(?:\s+[A-Z]\.)?|{_UPPER},\s*{_UPPER}(?:\s+[A-Z]\.)?|"
    rf"{_PART}(?:\s+{_PART}){{0,3}})"
    rf"(?:,?\s*{_DEGREE}(?![A-Za-z])|,\s*DO(?=\s*(?:$|[,.;)\n])))"  # ", DO" only at the end: "Stable, DO NOT"
)
# Cues after which two capitalised words are a name ("Dictated by: John Smith", "Referring physician: Doe, Jane").
_NAME_CUE = re.compile(
    r"(?i:\b(?:(?:electronically\s+)?signed\s+by|dictated\s+by|transcribed\s+by|read\s+by|reported\s+by|"
    r"reviewed\s+by|interpreted\s+by|verified\s+by|discussed\s+with|communicated\s+to|conveyed\s+to|"
    r"called\s+to|paged\s+to|spoke\s+(?:with|to)|notified|informed|(?:referring|ordering)\s+(?:physician|provider|"
    r"doctor|clinician)|requested\s+by|ordered\s+by|patient\s+name|name|attending|radiologist|resident|fellow|"
    r"technologist|tech|cc|copy\s+to|patient|pt|daughter|son|wife|husband|mother|father|spouse))\s*:?\s*"
    rf"(?P<name>{_CAP},\s*{_CAP}|(?:[A-Z]\.\s*)?{_CAP}(?:\s+[A-Z]\.)?\s+{_CAP})"
)


def _is_name_word(word: str) -> bool:
    return word.lower().strip(".") not in _NOT_NAMES


def _names_after_titles(text: str) -> list[Identifier]:
    """The name after each title: one word in any case ("dr smith"), then up to two more that are capitalised (or
    lower case after a lower-case title), never a word of `_NOT_NAMES` ("Dr. ___ was notified", "DR chest")."""
    found = []
    for title in _TITLE.finditer(text):
        lower_title = title.group().islower()
        pos, start, end = title.end(), None, None
        for index in range(3):
            tight = index == 0 and title.group().endswith(".")  # "Dr.Smith"
            word = (_NAME_WORD_TIGHT if tight else _NAME_WORD).match(text, pos)
            if word is None:
                break
            initial, name = word.group(1), word.group(2)
            if name is not None:
                if not _is_name_word(name) or (start is not None and name[0].islower() and not lower_title):
                    break
            start = word.start(1 if initial else 2) if start is None else start
            end = pos = word.end()
        if start is None:
            continue
        if title.group().startswith("Drs"):  # "Drs. Smith and Jones"
            while more := _MORE_NAMES.match(text, end):
                end = more.end()
        if text[end - 2 : end] in ("'s", "’s"):  # "Dr. Smith's note" -> "Dr. ___'s note"
            end -= 2
        found.append(Identifier(start, end, "name"))
    return found


def _trimmed_name(text: str, start: int, end: int) -> Identifier | None:
    """`text[start:end]` less the leading non-name words ("Attending Jane Doe" -> "Jane Doe"); `None` if none left."""
    words = list(re.finditer(r"[^\s,]+", text[start:end]))
    while words and not _is_name_word(words[0].group()):
        words.pop(0)
    if not words or not all(_is_name_word(w.group()) for w in words):
        return None
    return Identifier(start + words[0].start(), end, "name")


def _names(text: str) -> list[Identifier]:
    found = _names_after_titles(text)
    for pattern in (_NAME_DEGREE, _NAME_CUE):
        for match in pattern.finditer(text):
            name = _trimmed_name(text, match.start("name"), match.end("name"))
            if name is None:
                continue
            words = re.findall(r"[A-Za-z]{2,}", text[name.start : name.end])
            if pattern is _NAME_DEGREE or len(words) >= 2:  # a cue alone is weak evidence: two words
                found.append(name)
    return found


# Dates and times -----------------------------------------------------------------------------------------------------
_MONTH_NAMES = {
    "january": "jan", "february": "feb", "march": "mar", "april": "apr", "may": "may", "june": "jun", "july": "jul",
    "august": "aug", "september": "sept?", "october": "oct", "november": "nov", "december": "dec",
}  # fmt: skip


def _month_pattern() -> str:
    """Month names capitalised or upper case ("March", "MAR", "Sept."); in lower case only the full names that are
    no common word (not "may", "march")."""
    names = []
    for full, short in _MONTH_NAMES.items():
        names += [full.capitalize(), full.upper(), rf"{short[0].upper()}{short[1:]}\.?", rf"{short.upper()}\.?"]
        names += [] if full in ("may", "march") else [full]
    return "(?:" + "|".join(names) + ")"


_MONTH = _month_pattern()
_DAY = r"(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"
_YEAR4 = r"(?:19|20)\d{2}"
_UNITS = r"(?:cm|mm|m|ml|mL|cc|kg|g|mg|mcg|%|x|×|mSv|mGy|HU|hours?|hrs?|days?|weeks?|months?|years?|min)\b"
_M = r"(?:0?[1-9]|1[0-2])"
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_NUM_EDGE_BEFORE = r"(?<![\w/.:-])"
_NUM_EDGE_AFTER = r"(?![\w/]|[.:-]\d)"
_DATES = [
    # March 12, 2024 / Jan 3rd / Mar-12 (not "May 3 cm")
    re.compile(rf"\b{_MONTH}[ \t.-]*{_DAY}(?:,?[ \t]*{_YEAR4})?\b(?![ \t]*{_UNITS})"),
    # 12 Mar 2024 / 14th of February / 12-MAR-2024 / 12-Mar / 12Mar2024
    re.compile(rf"\b{_DAY}(?:[ \t]+of)?[ \t.-]*{_MONTH}(?:,?[ \t.-]*(?:{_YEAR4}|\d{{2}}\b))?(?![A-Za-z])"),
    # March 2024 / Sept. 2023 / March of 2024 / Mar-24
    re.compile(rf"\b{_MONTH}(?:,?[ \t]+(?:of[ \t]+)?|[ \t]*[-/'][ \t]*){_YEAR4}\b"),
    re.compile(rf"\b{_MONTH}-\d{{2}}\b(?![ \t]*{_UNITS})"),
    # 2024-03-12 / 2024/03/12 / 2024.03.12
    re.compile(rf"{_NUM_EDGE_BEFORE}{_YEAR4}([-/.]){_M}\1{_D}{_NUM_EDGE_AFTER}"),
    # 12/03/2024, 3/5/21, 05.06.2023, 12-03-2024 (a two-digit year only with / or .)
    re.compile(rf"{_NUM_EDGE_BEFORE}{_D}([/.]){_D}\1(?:{_YEAR4}|\d{{2}}){_NUM_EDGE_AFTER}"),
    re.compile(rf"{_NUM_EDGE_BEFORE}{_D}-{_D}-{_YEAR4}{_NUM_EDGE_AFTER}"),
    # 3/2024
    re.compile(rf"{_NUM_EDGE_BEFORE}{_M}/{_YEAR4}{_NUM_EDGE_AFTER}"),
    # 12/03, 2/14: month/day without a year when one part has two digits ("1/3 of the esophagus" stays)
    re.compile(rf"{_NUM_EDGE_BEFORE}(?:(?:1[0-2]|0[1-9])/{_D}|{_M}/(?:[12]\d|3[01]|0[1-9])){_NUM_EDGE_AFTER}"),
]
# 3/5 (single digits) only after a word that introduces a date, or in a list that follows a date ("of 2/3 and 2/5")
_CUED_DATE = re.compile(
    rf"(?i:\b(?:on|from|dated?|since|until|through|before|after|of)\s+)(?P<date>{_M}/{_D}){_NUM_EDGE_AFTER}"
)
_NEXT_DATE = re.compile(
    rf"(?i:\s*(?:,|and|or|to|through|&)\s*)(?P<date>{_M}/{_D}(?:/(?:{_YEAR4}|\d{{2}}))?){_NUM_EDGE_AFTER}"
)
_TIME = re.compile(r"(?<![\w.:])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[ \t]*(?i:[ap]\.m\.|[ap]m\b))?")

# Contacts, numbers, ages ---------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Bare host names only under these endings: "in", "us", "ca" are words or abbreviations in reports ("US" is ultrasound)
_TLDS = r"(?:com|org|net|edu|gov|mil|info|biz|io|health|uk|au|nl|jp)"
_URLS = [
    re.compile(r"(?i:\b(?:https?|ftp|sftp|dicomweb)://|\bwww\.)[^\s<>\"'()]+"),
    re.compile(rf"(?i:\b(?:[a-z0-9][a-z0-9-]*\.)+{_TLDS}\b(?:/[^\s<>\"'()]*)?)(?!@)"),
]
_PHONE_CUE = re.compile(
    r"(?i:\b(?:pager|beeper|pgr|page|ext|extension|tel|telephone|phone|cell|mobile|fax|call\s*back|callback)\b"
    r"\.?[ \t]*(?:no\.?|number|#)?[ \t]*:?[ \t]*#?[ \t]*)(?P<number>\d(?:[\d \t.-]{2,}\d)?)(?![\w])"
)
# Hospital extensions and pagers after "at"/"call"/"page": "at 4-5678", "page 12345"
_SHORT_PHONE = re.compile(r"(?i:\b(?:at|call|page|dial)\s+)(?P<phone>\d-\d{4}|\d{5})(?![\w.-])")
_SSNS = [
    re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"),
    re.compile(
        r"(?i:\b(?:SSN|SS#|social\s+security(?:\s+(?:number|no\.?|#))?)\b\s*:?\s*#?\s*)"
        r"(?P<ssn>\d{3}[ \t-]?\d{2}[ \t-]?\d{4})\b"
    ),
]
_RECORD_LABEL = (
    r"(?i:\b(?:MRN|MR\s*#|MR\s+(?:no\.?|number)|medical\s+record(?:\s+(?:number|no\.?))?|record(?:\s+(?:number|no\.?))?|"
    r"acc(?:ession)?(?:\s+(?:number|no\.?))?|accn|unit\s+(?:no\.?|number)|(?:patient|pt|study|exam|order|visit|"
    r"encounter|case)\s+(?:id|no\.?|number)|order|encounter|FIN|CSN|ID)\b\.?\s*[:#]?\s*#?\s*)"
)
_RECORDS = [
    re.compile(rf"{_RECORD_LABEL}(?P<record>(?=[A-Z-]*\d)[A-Z0-9][A-Z0-9-]{{3,}})\b"),
    re.compile(r"(?<![\w.])\d+(?:\.\d+){3,}(?![\w])"),  # DICOM UIDs, IPv4 addresses
    re.compile(r"\b\d{6,}\b"),
    re.compile(r"\b[A-Z]{1,3}-?\d{5,}\b|\b\d{5,}[A-Z]{1,3}\b"),
]
_OLD = r"(?<![\d.])(?P<age>9\d|1[0-2]\d)"  # 90 to 129
_OLD_9X = r"(?<![\d.])(?P<age>9\d)"
_AGES = [
    re.compile(rf"{_OLD}(?=[ \t]*-?[ \t]*(?i:years?|yrs?|yo|y/o|y\.o\.)(?![A-Za-z]))"),
    re.compile(rf"(?i:\bage[ds]?\b[ \t]*:?[ \t]*){_OLD}(?![\d.])"),
    re.compile(rf"{_OLD_9X}(?=[MF]\b)"),  # "95M", not "fever 101 F"
]


def _phones(text: str) -> list[Identifier]:
    import phonenumbers  # lazy: `radtune data --help` never pays for it

    found = [
        Identifier(match.start, match.end, "phone")
        for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.POSSIBLE)
    ]
    found += [Identifier(m.start("number"), m.end("number"), "phone") for m in _PHONE_CUE.finditer(text)]
    return found + _spans([_SHORT_PHONE], text, "phone")


def _dates(text: str) -> list[Identifier]:
    found = _spans([*_DATES, _CUED_DATE], text, "date")
    todo = list(found)
    while todo:  # dates listed after a date: "of 2/3 and 2/5"
        following = _NEXT_DATE.match(text, todo.pop().end)
        if following:
            todo.append(Identifier(following.start("date"), following.end("date"), "date"))
            found.append(todo[-1])
    # "on 12 Mar." keeps the sentence's period: an abbreviated month's dot at the end of a date is not the date
    return [replace(d, end=d.end - 1) if text[d.end - 1] == "." else d for d in found]


def _urls(text: str) -> list[Identifier]:
    """URLs without the sentence's punctuation after them ("See www.x.org/a." -> "www.x.org/a")."""
    found = []
    for pattern in _URLS:
        for match in pattern.finditer(text):
            found.append(Identifier(match.start(), match.start() + len(match.group().rstrip(".,;:")), "url"))
    return found


def _spans(patterns, text: str, kind: str) -> list[Identifier]:
    """What `patterns` match, each the group named `kind` where the pattern has one (the rest is context)."""
    found = []
    for pattern in patterns:
        group = kind if kind in pattern.groupindex else 0
        found += [Identifier(m.start(group), m.end(group), kind) for m in pattern.finditer(text)]
    return found


def find_identifiers(text: str) -> list[Identifier]:
    """Every identifier in `text` (see the module docstring), sorted and with overlapping finds merged into one (the
    kind of the first)."""
    found = [
        *_names(text),
        *_phones(text),
        *_dates(text),
        *_spans([_TIME], text, "time"),
        *_spans([_EMAIL], text, "email"),
        *_urls(text),
        *_spans(_SSNS, text, "ssn"),
        *_spans(_RECORDS, text, "record"),
        *_spans(_AGES, text, "age"),
    ]
    merged: list[Identifier] = []
    for item in sorted(found, key=lambda i: (i.start, -i.end)):
        if item.end <= item.start:
            continue
        if merged and item.start < merged[-1].end:
            last = merged[-1]
            merged[-1] = Identifier(last.start, max(last.end, item.end), last.kind)
        else:
            merged.append(item)
    return merged


def scrub(text: str) -> str:
    """`text` with every identifier that `find_identifiers` finds replaced by `___` (MIMIC-CXR's placeholder).

    Only the identifying part goes: `Dr. Smith` -> `Dr. ___`, `John Smith, MD` -> `___, MD`, `92-year-old` ->
    `___-year-old`. Measurements, levels (`T11`, `C5-C6`), eponyms and MIMIC's own `___` stay as they are.
    """
    pieces, pos = [], 0
    for item in find_identifiers(text):
        pieces += [text[pos : item.start], PLACEHOLDER]
        pos = item.end
    pieces.append(text[pos:])
    return "".join(pieces)
