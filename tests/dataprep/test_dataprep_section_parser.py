"""MIMIC-CXR report sections, following the official MIT-LCP splitter's behaviour."""

from __future__ import annotations

import re

from radtune.dataprep.section_parser import normalise_section_name, parse_report, split_sections


def mimic(text: str) -> str:
    """MIMIC-CXR reports separate paragraphs by a line holding one space (kept out of the source for linting)."""
    return re.sub(r"\n(?=\n)", "\n ", text)


REPORT = mimic("""                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with new onset ascites  // eval for infection

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows. The
 cardiomediastinal silhouette is normal.  Clips project over the left lung,
 potentially within the breast. The imaged upper abdomen is unremarkable.

 IMPRESSION:

 No acute cardiopulmonary process.
""")


def test_sections_in_order_with_normalised_names():
    names = [name for name, _ in split_sections(REPORT)]
    assert names == ["preamble", "examination", "indication", "technique", "comparison", "findings", "impression"]


def test_findings_unwrapped_and_placeholders_kept():
    parsed = parse_report(REPORT)
    assert parsed.findings.startswith("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral")
    assert "\n" not in parsed.findings and "  " not in parsed.findings
    assert parsed.impression == "No acute cardiopulmonary process."
    assert parsed.text == f"{parsed.findings} {parsed.impression}"
    assert parsed.section("indication") == "___F with new onset ascites // eval for infection"


def test_no_findings_keeps_the_last_paragraph():
    report = mimic("""                                 FINAL REPORT
 PA AND LATERAL CHEST RADIOGRAPH

 HISTORY: Cough.

 Comparison is made to the prior study.

 Heart size is normal. Lungs are clear. Dr. ___ was
 notified.
""")
    parsed = parse_report(report)
    assert parsed.findings == "" and parsed.impression == ""
    # As the official code: the last section's text after its first paragraph break.
    assert parsed.last_paragraph == "Comparison is made to the prior study. Heart size is normal. Lungs are clear. Dr. ___ was notified."
    assert parsed.text == parsed.last_paragraph


def test_report_without_any_header_uses_its_last_paragraphs():
    report = "   FINAL REPORT\n CHEST.\n \n Lungs are clear.\n"
    parsed = parse_report(report)
    assert [name for name, _ in parsed.sections] == ["full report"]
    assert parsed.text == "Lungs are clear."


def test_empty_findings_section_is_dropped_and_impression_used():
    report = " FINAL REPORT\n FINDINGS: \n \n IMPRESSION:  Small left effusion.\n"
    parsed = parse_report(report)
    assert "findings" not in [name for name, _ in parsed.sections]
    assert parsed.text == "Small left effusion."


def test_addendum_is_separate_and_last_sections_win():
    report = mimic("""                                 FINAL ADDENDUM
 ADDENDUM:  Findings were discussed with Dr. ___ at 10:15 on ___.


 FINAL REPORT
 FINDINGS:  Old findings text.

 IMPRESSION:  Old impression.

 FINDINGS:  Revised findings text.

 IMPRESSION:  Revised impression.
""")
    parsed = parse_report(report)
    assert parsed.addenda == ["Findings were discussed with Dr. ___ at 10:15 on ___."]
    assert parsed.findings == "Revised findings text."
    assert parsed.impression == "Revised impression."


def test_colon_inside_the_first_line_of_a_section_is_not_a_header():
    report = " FINAL REPORT\n INDICATION:  Eval\n COMPARISON:  None\n FINDINGS:  The tube tip: see below\n NOTE: x\n"
    names = [name for name, _ in split_sections(report)]
    assert names[:4] == ["preamble", "indication", "comparison", "findings"]


def test_header_aliases_and_typos():
    assert normalise_section_name("CONCLUSION") == "impression"
    assert normalise_section_name("IMPRESSON") == "impression"
    assert normalise_section_name("FINAL IMPRESSION") == "impression"
    assert normalise_section_name("COMPARISONS") == "comparison"
    assert normalise_section_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"
    assert normalise_section_name("REASON FOR EXAM") == "indication"
    assert normalise_section_name("WET READ") == "wet read"
