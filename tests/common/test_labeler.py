"""The rule-based CheXpert-style labeler on the cases its users rely on (phantom-style report sentences)."""

from __future__ import annotations

import pytest

from radtune.common.labeler import OBSERVATIONS, label_report, label_reports, positive_findings, split_clauses

# (report, {observation: expected label}); observations not named must be blank, except No Finding,
# which is checked separately where given.
CASES = [
    # negation
    ("No pleural effusion or pneumothorax.", {"Pleural Effusion": 0.0, "Pneumothorax": 0.0, "No Finding": 1.0}),
    ("Lungs are clear without pneumothorax.", {"Pneumothorax": 0.0, "No Finding": 1.0}),
    ("There is no focal consolidation, pleural effusion, or pneumothorax.",
     {"Consolidation": 0.0, "Pleural Effusion": 0.0, "Pneumothorax": 0.0, "No Finding": 1.0}),
    ("Free of effusion. Negative for fracture.", {"Pleural Effusion": 0.0, "Fracture": 0.0, "No Finding": 1.0}),
    ("Pleural effusion or pneumothorax is not seen.", {"Pleural Effusion": 0.0, "Pneumothorax": 0.0, "No Finding": 1.0}),
    ("No focal consolidation to suggest pneumonia.", {"Consolidation": 0.0, "Pneumonia": 0.0, "No Finding": 1.0}),
    ("The endotracheal tube has been removed.", {"Support Devices": 0.0, "No Finding": 1.0}),
    ("There is no evidence of pneumothorax.", {"Pneumothorax": 0.0, "No Finding": 1.0}),
    # uncertainty
    ("Cannot exclude pneumonia.", {"Pneumonia": -1.0}),
    ("Possible atelectasis at the left base.", {"Atelectasis": -1.0}),
    ("Findings may represent pulmonary edema.", {"Edema": -1.0}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": -1.0}),
    ("Atelectasis versus pneumonia in the left lower lobe.", {"Atelectasis": -1.0, "Pneumonia": -1.0}),
    ("Left basilar opacity, possibly atelectasis.", {"Lung Opacity": 1.0, "Atelectasis": -1.0}),
    ("The heart may be enlarged.", {"Cardiomegaly": -1.0}),
    # exclusions
    ("Small pericardial effusion.", {"No Finding": 1.0}),
    ("Mass effect on the trachea.", {"No Finding": 1.0}),
    ("Subcutaneous edema of the chest wall.", {"No Finding": 1.0}),
    ("History of breast cancer.", {"No Finding": 1.0}),
    # scope
    ("No effusion but there is cardiomegaly.", {"Pleural Effusion": 0.0, "Cardiomegaly": 1.0}),
    ("No pneumothorax; there is a new right rib fracture.", {"Pneumothorax": 0.0, "Fracture": 1.0}),
    ("Effusion is present and pneumothorax is not seen.", {"Pleural Effusion": 1.0, "Pneumothorax": 0.0}),
    ("The lungs are clear without evidence of pneumonia; however, there is a small right pleural effusion.",
     {"Pneumonia": 0.0, "Pleural Effusion": 1.0}),
    ("No change in the small left pleural effusion.", {"Pleural Effusion": 1.0}),
    # positives, phantom style
    ("There is a small left pleural effusion.", {"Pleural Effusion": 1.0}),
    ("There is a small left pleural effusion with blunting of the left costophrenic angle.", {"Pleural Effusion": 1.0}),
    ("There is a 2 cm right apical pneumothorax.", {"Pneumothorax": 1.0}),
    ("The heart is enlarged.", {"Cardiomegaly": 1.0}),
    ("The heart size is mildly enlarged.", {"Cardiomegaly": 1.0}),
    ("There is moderate cardiomegaly, with an enlarged heart.", {"Cardiomegaly": 1.0}),
    ("Mediastinum is widened.", {"Enlarged Cardiomediastinum": 1.0}),
    ("A 12 mm nodule is seen in the right upper lobe.", {"Lung Lesion": 1.0}),
    ("A lobulated 4 cm mass occupies the left upper lobe.", {"Lung Lesion": 1.0}),
    ("Right lower lobe consolidation.", {"Consolidation": 1.0}),
    ("Airspace opacity and consolidation in the right lower lobe.", {"Lung Opacity": 1.0, "Consolidation": 1.0}),
    ("Mild pulmonary edema.", {"Edema": 1.0}),
    ("Acute fracture of the left seventh rib.", {"Fracture": 1.0}),
    ("Left pleural thickening.", {"Pleural Other": 1.0}),
    # support devices
    ("Left chest wall pacemaker with leads in the right atrium and right ventricle.", {"Support Devices": 1.0, "No Finding": 1.0}),
    ("Endotracheal tube terminates 4 cm above the carina.", {"Support Devices": 1.0, "No Finding": 1.0}),
    ("A right internal jugular central venous catheter is seen with its tip in the mid SVC.",
     {"Support Devices": 1.0, "No Finding": 1.0}),
    # normal anatomy is a negative mention, unchanged anatomy is none
    ("Heart size is normal.", {"Cardiomegaly": 0.0, "No Finding": 1.0}),
    ("The heart is not enlarged.", {"Cardiomegaly": 0.0, "No Finding": 1.0}),
    ("The mediastinal contours are normal.", {"Enlarged Cardiomediastinum": 0.0, "No Finding": 1.0}),
    ("The heart is unchanged.", {"No Finding": 1.0}),
    ("Normal chest radiograph.", {"No Finding": 1.0}),
]  # fmt: skip


@pytest.mark.parametrize(("report", "expected"), CASES, ids=[c[0][:50] for c in CASES])
def test_labels(report, expected):
    labels = label_report(report)
    assert list(labels) == list(OBSERVATIONS)
    for name in OBSERVATIONS:
        if name == "No Finding" and name not in expected:
            continue
        assert labels[name] == expected.get(name), f"{name}: got {labels[name]}, expected {expected.get(name)}"


def test_no_finding_rule():
    assert label_report("No acute cardiopulmonary process.")["No Finding"] == 1.0
    # Support devices alone keep No Finding; any positive or uncertain finding clears it.
    assert label_report("Pacemaker in place. No effusion.")["No Finding"] == 1.0
    assert label_report("Pacemaker in place. Small effusion.")["No Finding"] is None
    assert label_report("Possible small effusion.")["No Finding"] is None
    assert label_report("") == dict.fromkeys(OBSERVATIONS)


def test_positive_beats_uncertain_beats_negative():
    assert label_report("No effusion on the right. Small left effusion.")["Pleural Effusion"] == 1.0
    assert label_report("No effusion on the right. Possible left effusion.")["Pleural Effusion"] == -1.0


def test_no_is_a_word_not_a_substring():
    assert label_report("Nodule in the left lung.")["Lung Lesion"] == 1.0
    assert label_report("Known pneumothorax.")["Pneumothorax"] == 1.0  # "no" inside "known" is not a negation


def test_hierarchy_is_optional():
    assert label_report("Right lower lobe consolidation.")["Lung Opacity"] is None
    propagated = label_report("Right lower lobe consolidation. Cardiomegaly.", propagate_hierarchy=True)
    assert propagated["Lung Opacity"] == 1.0 and propagated["Enlarged Cardiomediastinum"] == 1.0


def test_mimic_style_report_with_headers_and_wrapped_lines():
    report = (
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
        " FINDINGS:  The lungs are clear.  No pleural effusion or\n pneumothorax.  Heart size is normal.\n\n"
        " IMPRESSION:  No acute cardiopulmonary process.\n"
    )
    labels = label_report(report)
    assert labels["Pleural Effusion"] == 0.0 and labels["Pneumothorax"] == 0.0
    assert labels["Cardiomegaly"] == 0.0 and labels["No Finding"] == 1.0


def test_clause_splitting_keeps_decimals():
    assert split_clauses("A 3.5 cm mass. No effusion but there is edema") == [
        "a 3.5 cm mass",
        "no effusion",
        "there is edema",
    ]


def test_batch_helpers():
    labels = label_reports(["Cardiomegaly.", "No effusion."])
    assert positive_findings(labels[0]) == ["Cardiomegaly"]
    assert positive_findings(labels[1]) == ["No Finding"]
    with pytest.raises(TypeError):
        label_report(None)


def test_clinical_label_metrics():
    import math

    from radtune.common.metrics.clinical import clinical_label_metrics

    generated = ["Cardiomegaly. Small left pleural effusion.", "No effusion. Possible pneumonia.", "Normal chest."]
    references = ["The heart is enlarged. No effusion.", "Small right pleural effusion.", "No acute process."]
    scores = clinical_label_metrics(generated, references)
    assert scores["clinical_f1/Cardiomegaly"] == 1.0
    assert scores["clinical_f1/Pleural Effusion"] == 0.0  # one false positive, one false negative
    assert math.isnan(scores["clinical_f1/Pneumonia"])  # uncertain is "not positive"; nothing positive anywhere
    # Positives: generated {Cardiomegaly, Effusion (1), No Finding (3)}; references {Cardiomegaly, Effusion (2),
    # No Finding (3)}: tp = 2, fp = 1, fn = 1.
    assert scores["clinical_f1/micro"] == pytest.approx(2 / 3)
    assert scores["clinical_f1/macro"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert scores["clinical_f1/macro_5"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="2 generated reports but 1"):
        clinical_label_metrics(["a", "b"], ["a"])


def test_clinical_evaluate_module_equals_direct_function():
    import evaluate

    from radtune.common.evaluate_modules import module_path
    from radtune.common.metrics.clinical import clinical_label_metrics

    generated, references = ["Cardiomegaly.", "No effusion."], ["The heart is enlarged.", "Small effusion."]
    via_evaluate = evaluate.load(module_path("radtune_clinical")).compute(predictions=generated, references=references)
    assert via_evaluate == pytest.approx(clinical_label_metrics(generated, references), nan_ok=True)
