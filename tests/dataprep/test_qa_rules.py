"""The offline rules generator: agreement with the phantoms' ground truth, details, uncertainty, balance."""

from __future__ import annotations

import pytest

from radtune.dataprep.qa.rules_generator import NORMAL_QUESTION, QUESTIONS, generate_rules_qa

QUESTION_TO_OBSERVATION = {question: observation for observation, (question, _name) in QUESTIONS.items()}


@pytest.fixture(scope="module")
def phantom_build(tmp_path_factory):
    """300 phantom studies in the MIMIC-CXR layout, built by `radtune data build`'s own code."""
    from datasets import load_from_disk

    from radtune.dataprep.build import build_dataset
    from radtune.dataprep.phantoms import generate_phantoms

    root = tmp_path_factory.mktemp("qa-phantoms")
    generate_phantoms(root / "src", n=300, layout="mimic-cxr", image_size=32, seed=7, workers=1)
    build_dataset("mimic-cxr", root / "src", root / "built")
    return load_from_disk(str(root / "built"))


def _truth(question: str, labels: list[str]) -> bool:
    if question == NORMAL_QUESTION:
        return "No Finding" in labels
    observation = QUESTION_TO_OBSERVATION[question]
    if observation == "No Finding":  # "Are there any abnormal findings?"
        return "No Finding" not in labels
    return observation in labels


def test_closed_answers_agree_with_phantom_ground_truth(phantom_build):
    agree = total = 0
    yes = no = 0
    for split in phantom_build.values():
        for row in split.select_columns(["text", "findings", "impression", "labels"]).to_list():
            pairs = generate_rules_qa(row["text"], row["findings"], row["impression"], n=0)
            for pair in pairs:
                if pair["category"] != "presence":
                    continue
                assert pair["answer"] in ("Yes.", "No."), pair  # phantom reports never hedge
                total += 1
                agree += (pair["answer"] == "Yes.") == _truth(pair["question"], row["labels"])
            chosen = generate_rules_qa(row["text"], row["findings"], row["impression"], n=5)
            assert 1 <= len(chosen) <= 5
            yes += sum(pair["answer"] == "Yes." for pair in chosen)
            no += sum(pair["answer"] == "No." for pair in chosen)
    assert total > 1000
    assert agree / total >= 0.98, f"{agree}/{total}"
    assert 0.35 <= yes / (yes + no) <= 0.65  # balanced, although reports negate far more than they affirm


def test_laterality_size_and_location_agree_with_the_drawn_phantom():
    from radtune.dataprep.phantoms import iter_phantoms
    from radtune.dataprep.phantoms.generator import describe_study
    from radtune.dataprep.phantoms.reports import render_mimic

    checked = 0
    for index, (phantom, _image) in enumerate(iter_phantoms(300, seed=11, image_size=32)):
        report = render_mimic(describe_study(phantom, 11, index, 60, "F", first_study=True))
        answers = {pair["question"]: pair["answer"] for pair in generate_rules_qa(report, n=0)}
        if phantom.effusion:
            side = "Both sides." if phantom.effusion == "bilateral" else f"{phantom.effusion.capitalize()}."
            assert answers["Which side is the pleural effusion on?"] == side
            assert answers["How large is the pleural effusion?"] == f"{phantom.effusion_size.capitalize()}."
            checked += 1
        if phantom.pneumothorax:
            assert answers["Which side is the pneumothorax on?"] == f"{phantom.pneumothorax.capitalize()}."
            assert answers["How large is the pneumothorax?"] == f"{phantom.pneumothorax_size.capitalize()}."
            checked += 1
        if phantom.consolidation:
            assert answers["Where is the consolidation?"] == f"In the {phantom.consolidation}."
            checked += 1
        if phantom.lesion:
            assert answers["Where is the lesion?"] == f"In the {phantom.lesion_lobe}."
            checked += 1
        if phantom.devices:
            listed = answers["What support devices are present?"].lower()
            for device in phantom.devices:
                assert device.split()[0] in listed
            checked += 1
        else:
            assert "What support devices are present?" not in answers
    assert checked > 100


def test_open_question_is_answered_by_the_impression_and_only_stated_findings_are_asked():
    pairs = generate_rules_qa(
        "Left apical pneumothorax. No pleural effusion.",
        findings="Left apical pneumothorax. No pleural effusion.",
        impression="1. Small left pneumothorax. 2. No effusion.",
        n=0,
    )
    answers = {pair["question"]: pair for pair in pairs}
    assert answers["What are the main findings?"]["answer"] == "Small left pneumothorax. No effusion."
    assert answers["What are the main findings?"]["answer_type"] == "open"
    assert answers["Is there a pneumothorax?"]["answer"] == "Yes."
    assert answers["Is there a pleural effusion?"]["answer"] == "No."
    assert answers["Which side is the pneumothorax on?"]["answer"] == "Left."
    assert "Is there a fracture?" not in answers  # never mentioned: never asked
    # The indication is not a finding: a full report is parsed and only findings + impression are labelled.
    report = "INDICATION: evaluate for pneumonia.\n FINDINGS: The lungs are clear.\n IMPRESSION: No acute process."
    questions = [pair["question"] for pair in generate_rules_qa(report, n=0)]
    assert "Is there evidence of pneumonia?" not in questions


def test_uncertain_mentions_give_possibly_or_are_skipped_with_any_labeler():
    def stub(text):
        return {"Pneumonia": -1.0, "Pleural Effusion": 1.0, "Pneumothorax": 0.0}

    possibly = generate_rules_qa("x", findings="Possible pneumonia.", n=0, labeler=stub)
    assert {"question": "Is there evidence of pneumonia?", "answer": "Possibly.", "answer_type": "closed",
            "category": "presence"} in possibly  # fmt: skip
    skipped = generate_rules_qa("x", findings="Possible pneumonia.", n=0, uncertain="skip", labeler=stub)
    assert "Is there evidence of pneumonia?" not in [pair["question"] for pair in skipped]
    with pytest.raises(ValueError, match="uncertain"):
        generate_rules_qa("x", uncertain="maybe")


def test_output_is_deterministic_and_capped():
    text = "Large right pleural effusion. Moderate cardiomegaly. No pneumothorax. ET tube in place."
    first = generate_rules_qa(text, findings=text, impression="Large right effusion.", n=4)
    assert first == generate_rules_qa(text, findings=text, impression="Large right effusion.", n=4)
    assert len(first) == 4 and first[0]["question"] == "What are the main findings?"
    assert len({pair["question"] for pair in generate_rules_qa(text, findings=text, n=0)}) > 4


def test_balance_makes_every_closed_question_half_yes():
    from collections import Counter

    from radtune.dataprep.qa.rules_generator import balance_closed_answers

    def pair(question, answer, kind="closed"):
        return {"question": question, "answer": answer, "answer_type": kind, "category": "presence"}

    reports = [
        [pair("Is there a pneumothorax?", "No."), pair("What are the main findings?", "Normal.", "open")],
        [pair("Is there a pneumothorax?", "No."), pair("Is there a pleural effusion?", "Possibly.")],
        [pair("Is there a pneumothorax?", "Yes."), pair("Are there any support devices, lines or tubes?", "Yes.")],
        None,
        [pair("Is there a pneumothorax?", "No.")],
    ]
    kept, dropped = balance_closed_answers(reports)
    counts = Counter((p["question"], p["answer"]) for pairs in kept if pairs for p in pairs)
    assert counts[("Is there a pneumothorax?", "Yes.")] == counts[("Is there a pneumothorax?", "No.")] == 1
    # A question with a single answer in the split teaches nothing about the image: dropped.
    assert ("Are there any support devices, lines or tubes?", "Yes.") not in counts
    # Open and uncertain pairs are kept; failed reports stay None; the count adds up.
    assert counts[("What are the main findings?", "Normal.")] == 1 and counts[("Is there a pleural effusion?", "Possibly.")] == 1
    assert kept[3] is None and dropped == 3
    assert balance_closed_answers(reports, seed=0) == (kept, dropped)
