"""Split a MIMIC-CXR free-text report into its sections, the way the official MIT-LCP tooling does.

Facts followed from MIT-LCP/mimic-cxr `txt/section_parser.py` and `create_section_files.py`:

- a section header is an upper-case name at the start of a line after one space, then a colon and white space:
  the pattern `\\n ([A-Z ()/,-]+):\\s`; the text before the first header is the `preamble`;
- after a header the search for the next one resumes at the next line break, so a colon inside the first line
  of a section does not start a new one;
- header names are normalised (`COMPARISONS` → comparison, `CONCLUSION` → impression, typos such as
  `IMPRESSON` → impression, `PA AND LATERAL VIEWS OF THE CHEST` → findings …);
- empty FINDINGS/IMPRESSION sections are dropped;
- a report with neither FINDINGS nor IMPRESSION keeps its last paragraph (the text after the first blank line
  of the last section) as `last_paragraph`, which becomes the report's text;
- when a section occurs more than once (addenda restate them), the last occurrence is the one used.

Unlike the official code this module also returns the addenda separately, drops the `FINAL REPORT` /
`FINAL ADDENDUM` title lines (so an addendum at the top does not swallow the report's title), and unwraps the 79-column line
wrapping (runs of white space become one space). The `___` de-identification placeholders are kept as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SECTION_HEADER = re.compile(r"\n ([A-Z ()/,-]+):\s", re.DOTALL)
# Paragraphs in MIMIC-CXR reports are separated by a line holding a single space.
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Title lines ("FINAL REPORT", "FINAL ADDENDUM") and rules of underscores separate an addendum from the report
# it amends; they are not text of the section above them. (A PHI placeholder is three underscores, inline.)
BANNER_LINE = re.compile(r"^[ \t]*(?:FINAL (?:REPORT|ADDENDUM)|_{10,})[ \t]*$", re.MULTILINE)

_SECTION_ALIASES = {
    "comparisons": "comparison",
    "clinical history": "history",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "clinical information": "history",
    "exam": "examination",
    "clinical indication": "indication",
    "conclusion": "impression",
    "chest, two views": "findings",
    "recommendation(s)": "recommendations",
    "recommendation": "recommendations",
    "type of examination": "examination",
    "reference exam": "comparison",
    "patient history": "history",
    "comparison exam": "comparison",
    "findings and impression": "impression",
    "findings/impression": "impression",
    "findings/ impression": "impression",
    "comparison film": "comparison",
    "wetread": "wet read",
    "pfi": "history",
    "finding": "findings",
    "reference findings": "findings",
    # Misspellings seen in the corpus.
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "mpression": "impression",
    "impession": "impression",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findngs": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "idication": "indication",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "comparisions": "comparison",
}
# A header containing one of these words is that section ("FINAL IMPRESSION" → impression).
_MAIN_SECTIONS = ("impression", "findings", "history", "comparison", "addendum")
# Headers that describe the views of the study introduce the findings ("PA AND LATERAL VIEWS OF THE CHEST:").
_VIEW_PREFIXES = (
    "chest",
    "portable",
    "pa and lateral",
    "lateral and pa",
    "ap and lateral",
    "lateral and ap",
    "frontal and",
    "two views",
    "frontal view",
    "pa view",
    "ap view",
    "one view",
    "lateral view",
    "bone window",
    "frontal upright",
    "frontal semi-upright",
    "ribs",
    "right ribs",
    "left ribs",
    "chest abdomen",
    "upright",
)


def normalise_section_name(name: str) -> str:
    """The canonical name of a section header (lower case; aliases and typos mapped)."""
    name = name.lower().strip()
    if name in _SECTION_ALIASES:
        return _SECTION_ALIASES[name]
    if name in ("preamble", "full report"):
        return name
    for main in _MAIN_SECTIONS:
        if main in name:
            return main
    if name.startswith(_VIEW_PREFIXES):
        return "findings"
    return name


def unwrap(text: str) -> str:
    """Collapse the report's line wrapping and indentation into single spaces."""
    return " ".join(text.split())


@dataclass
class ParsedReport:
    """A report split into sections.

    Attributes:
        sections (`list[tuple[str, str]]`): `(name, raw text)` in report order, names normalised.
        findings (`str`): the last FINDINGS section, unwrapped (`""` when absent).
        impression (`str`): the last IMPRESSION section, unwrapped (`""` when absent).
        last_paragraph (`str`): for reports with neither, the final paragraph, unwrapped.
        addenda (`list[str]`): the ADDENDUM sections, unwrapped.
    """

    sections: list[tuple[str, str]] = field(default_factory=list)
    findings: str = ""
    impression: str = ""
    last_paragraph: str = ""
    addenda: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The report text a model learns: findings then impression, or the last paragraph when both are absent."""
        parts = [part for part in (self.findings, self.impression) if part]
        if parts:
            return " ".join(parts)
        return self.last_paragraph

    def section(self, name: str) -> str:
        """The last section called `name`, unwrapped (`""` when absent)."""
        for section_name, body in reversed(self.sections):
            if section_name == name:
                return unwrap(body)
        return ""


def split_sections(report: str) -> list[tuple[str, str]]:
    """Split a report into `(normalised name, raw text)` pairs, following the official splitter."""
    text = report.replace("\r\n", "\n").replace("\r", "\n")
    text = BANNER_LINE.sub(" ", text)
    # The header pattern needs a line break before the header: a report whose first line is a header counts too.
    if not text.startswith("\n"):
        text = "\n" + text
    match = SECTION_HEADER.search(text)
    if match is None:
        return [("full report", text)]
    sections = [("preamble", text[: match.start(1)])]
    while match is not None:
        name = match.group(1)
        start = match.end()
        # Resume the search at the end of the header's line, as the official code does.
        line_end = text.find("\n", start)
        match = SECTION_HEADER.search(text, start + (line_end - start if line_end != -1 else 0))
        end = len(text) if match is None else match.start()
        sections.append((normalise_section_name(name), text[start:end]))
    return sections


def parse_report(report: str) -> ParsedReport:
    """Parse one MIMIC-CXR report (the content of a `sNNNNNNNN.txt` file)."""
    sections = split_sections(report)
    # Empty findings/impression sections do not count (the official code drops them).
    sections = [
        (name, body) for name, body in sections if not (name in ("findings", "impression") and not body.strip())
    ]
    parsed = ParsedReport(sections=sections)
    parsed.findings = parsed.section("findings")
    parsed.impression = parsed.section("impression")
    parsed.addenda = [unwrap(body) for name, body in sections if name == "addendum" and body.strip()]
    if not parsed.findings and not parsed.impression:
        # As the official code: everything after the first paragraph break of the last section. A last
        # section with no break gives no last paragraph (the report then has no usable text).
        _, last_body = sections[-1]
        paragraphs = [p for p in PARAGRAPH_BREAK.split(last_body.strip("\n")) if p.strip()]
        if len(paragraphs) > 1:
            parsed.last_paragraph = unwrap("\n".join(paragraphs[1:]))
    return parsed
