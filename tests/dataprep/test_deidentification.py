"""De-identification of free text before it leaves the machine: recall per kind of identifier on a corpus of annotated
report sentences, and clinical sentences that must come out unchanged (tests/fixtures/phi_corpus/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from radtune.dataprep.deidentify import KINDS, find_identifiers, scrub

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "phi_corpus"
_MARK = re.compile(r"<(\w+)>(.*?)</\1>")


def _lines(name: str) -> list[str]:
    return [line for line in (CORPUS / name).read_text(encoding="utf-8").splitlines() if line and line[0] != "#"]


def _annotated(line: str) -> tuple[str, list[tuple[str, int, int]]]:
    """The plain sentence and its `(kind, start, end)` spans from `<kind>text</kind>` marks."""
    text, spans, pos = "", [], 0
    for mark in _MARK.finditer(line):
        text += line[pos : mark.start()]
        spans.append((mark.group(1), len(text), len(text) + len(mark.group(2))))
        text += mark.group(2)
        pos = mark.end()
    return text + line[pos:], spans


PHI = [_annotated(line) for line in _lines("phi_sentences.txt")]
CLINICAL = _lines("clinical_sentences.txt")
ASKED_FOR = ("name", "phone", "date", "email", "url", "ssn", "record", "age")


def _covered(text: str, start: int, end: int) -> bool:
    """True when every letter and digit of `text[start:end]` lies inside an identifier that `find_identifiers` finds."""
    inside = set()
    for item in find_identifiers(text):
        inside.update(range(item.start, item.end))
    return all(i in inside for i in range(start, end) if text[i].isalnum())


def test_corpus_holds_every_kind_and_enough_sentences():
    kinds = defaultdict(int)
    for text, spans in PHI:
        for kind, start, end in spans:
            assert kind in KINDS and text[start:end].strip(), (kind, text)
            kinds[kind] += 1
    assert len(PHI) >= 60 and len(CLINICAL) >= 40
    assert all(kinds[kind] >= 4 for kind in ASKED_FOR), dict(kinds)


@pytest.mark.parametrize("kind", [*ASKED_FOR, "time"])
def test_every_identifier_of_each_kind_is_found(kind):
    spans = [(text, start, end) for text, marks in PHI for k, start, end in marks if k == kind]
    missed = [f"{text[start:end]!r} in {text!r}" for text, start, end in spans if not _covered(text, start, end)]
    recall = 1 - len(missed) / len(spans)
    assert recall == 1.0, f"{kind}: recall {recall:.3f} ({len(spans) - len(missed)}/{len(spans)}); missed: {missed}"


@pytest.mark.parametrize("line", _lines("phi_sentences.txt"), ids=[f"phi{i}" for i in range(len(PHI))])
def test_scrub_replaces_exactly_the_marked_spans(line):
    # Written by hand from the marks: each identifier becomes `___`, every other character stays.
    expected = _MARK.sub("___", line)
    text, _ = _annotated(line)
    assert scrub(text) == expected


def test_clinical_sentences_come_out_unchanged():
    changed = [(text, out) for text in CLINICAL if (out := scrub(text)) != text]
    assert changed == [], f"{len(changed)}/{len(CLINICAL)} clinical sentences changed: {changed}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Called to dr smith at 555-1234.", "Called to dr ___ at ___."),
        ("Dictated by John Smith, MD", "Dictated by ___, MD"),
        ("Attending: Smith, John MD", "Attending: ___ MD"),
        ("Signed: Jane Doe RN", "Signed: ___ RN"),
        ("Discussed with Drs. Smith and Jones.", "Discussed with Drs. ___."),
        ("Dr. Smith's note", "Dr. ___'s note"),
        ("Dr. José Müller agrees.", "Dr. ___ agrees."),
        ("Prior from 12/03; e-mail jd@example.org, SSN 123-45-6789.", "Prior from ___; e-mail ___, SSN ___."),
        ("A 92-year-old and an 89-year-old.", "A ___-year-old and an 89-year-old."),
        ("Fever to 101 F. 95M with cough.", "Fever to 101 F. ___M with cough."),
        ("Impression: Stable, DO NOT RESUSCITATE.", "Impression: Stable, DO NOT RESUSCITATE."),
        ("___-year-old man. Dr. ___ was notified on ___.", "___-year-old man. Dr. ___ was notified on ___."),
        ("DRAIN in place. Portable DR chest. May 5 mm nodule.", "DRAIN in place. Portable DR chest. May 5 mm nodule."),
    ],
)
def test_scrub_examples(text, expected):
    assert scrub(text) == expected


def test_find_identifiers_reports_kinds_and_merges_overlaps():
    text = "Dr. Lee (lee@example.org) at +1 617 555 1234 ext. 22 on March 3, 2021."
    found = [(item.kind, text[item.start : item.end]) for item in find_identifiers(text)]
    assert found == [
        ("name", "Lee"),
        ("email", "lee@example.org"),
        ("phone", "+1 617 555 1234 ext. 22"),
        ("date", "March 3, 2021"),
    ]


def test_phone_library_is_imported_only_when_text_is_scrubbed():
    code = (
        "import sys, radtune.dataprep.cli, radtune.dataprep.deidentify as d\n"
        "before = 'phonenumbers' in sys.modules\n"
        "d.scrub('call 555-1234')\n"
        "print(before, 'phonenumbers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True"]
