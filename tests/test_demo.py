"""The demo command's pipeline, shortened (`scripts/demo.py --quick`), end to end."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_demo():
    spec = importlib.util.spec_from_file_location("radtune_demo_under_test", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_runs(out: Path, accuracy: float, cider: float, macro: float) -> None:
    """The six runs' metrics.json as the evaluate commands write them (only the keys the summary reads)."""
    runs = {
        "llava": ({"strict/closed_accuracy": accuracy, "majority_baseline/strict/closed_accuracy": 0.5},
                  {"strict/closed_accuracy": [accuracy - 0.03, accuracy + 0.03]}),
        "llava-untrained": ({"strict/closed_accuracy": 0.0}, {}),
        "caption-trained": ({"cider": cider, "constant_baseline/cider": 1.645}, {"cider": [cider - 0.3, cider + 0.3]}),
        "caption-untrained": ({"cider": 0.1}, {}),
        "zero-shot": ({"auc_macro": macro}, {"auc_macro": [macro - 0.03, macro + 0.03]}),
        "retrieval": ({"i2t/recall@5": 0.16, "chance/recall@5": 0.011}, {"i2t/recall@5": [0.13, 0.19]}),
    }  # fmt: skip
    for name, (metrics, ci) in runs.items():
        (out / name).mkdir(parents=True)
        (out / name / "metrics.json").write_text(json.dumps({"metrics": metrics, "ci": ci, "meta": {"n": 10}}))


def test_summary_marks_targets_with_margins_and_says_what_to_check_when_missed(tmp_path):
    demo = load_demo()
    write_runs(tmp_path, accuracy=0.929, cider=2.053, macro=0.831)
    demo.write_summary(tmp_path, 600.0, seed=3, threads=2)

    with (tmp_path / "results.csv").open() as file:
        rows = {row["task"]: row for row in csv.DictReader(file)}
    # The target's words stay exactly `met` / `NOT met`; the margin has its own columns.
    assert rows["LLaVA VQA"]["target"] == ">= 0.90 and >= baseline + 0.25: met"
    assert rows["CLIP zero-shot"]["target"] == ">= 0.85: NOT met"
    assert rows["CLIP retrieval"]["target"] == "" and rows["CLIP retrieval"]["margin"] == ""
    # Margins by hand: 0.929 - max(0.90, 0.5 + 0.25); 2.053 - max(3 * 0.1, 1.645); 0.831 - 0.85; the interval's
    # lower end minus the same thresholds.
    assert float(rows["LLaVA VQA"]["margin"]) == pytest.approx(0.029)
    assert float(rows["LLaVA VQA"]["margin_ci_low"]) == pytest.approx(-0.001)
    assert float(rows["ViT-GPT2 captioning"]["margin"]) == pytest.approx(0.408)
    assert float(rows["CLIP zero-shot"]["margin"]) == pytest.approx(-0.019)
    assert float(rows["CLIP zero-shot"]["margin_ci_low"]) == pytest.approx(-0.049)

    report = (tmp_path / "report.md").read_text()
    assert "| target | margin |" in report
    assert "| >= 0.85: NOT met | -0.019 (interval low -0.049) |" in report
    assert "seed 3, 2 torch threads" in report
    # The miss names what to check: its interval (which holds the threshold here), the seed and the thread count.
    advice = report.split("## Targets not met")[1]
    assert "CLIP zero-shot" in advice and "LLaVA VQA" not in advice
    assert "[0.801, 0.861] contains the threshold" in advice
    assert "--seed 3" in advice and "2 torch threads" in advice and "demo_seeds.py" in advice


def test_summary_without_misses_has_no_advice(tmp_path):
    demo = load_demo()
    write_runs(tmp_path, accuracy=0.95, cider=2.5, macro=0.9)
    rows = demo.write_summary(tmp_path, 600.0, seed=0, threads=1)
    assert [row.met for row in rows] == [True, True, True, None]
    assert "Targets not met" not in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_reports(tmp_path):
    out = tmp_path / "demo"
    completed = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--quick", "--out", str(out)],
                               capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    commands = (out / "commands.sh").read_text().splitlines()
    # The real commands a user would copy, in order, with nothing radtune-internal in between.
    firsts = [line.split()[0] for line in commands]
    assert set(firsts) == {"radtune", "accelerate"}
    stages = ["radtune data phantoms", "radtune data build mimic-cxr", "radtune data qa", "radtune tiny clip",
              "-m radtune.contrastive.train", "radtune clip zero-shot", "radtune tiny llava",
              "accelerate launch --cpu --num_processes 1 -m radtune.llava_vqa.train", "radtune caption evaluate",
              "-m radtune.captioning.train", "radtune eval report"]  # fmt: skip
    positions = [next(i for i, line in enumerate(commands) if stage in line) for stage in stages]
    assert positions == sorted(positions)

    for run in ("llava-untrained", "llava", "caption-untrained", "caption-trained", "zero-shot", "retrieval"):
        metrics = json.loads((out / run / "metrics.json").read_text())
        assert metrics["meta"]["n"] > 0, run
    for curve in ("llava", "caption", "contrastive"):
        assert (out / curve / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"

    with (out / "results.csv").open() as file:
        rows = {row["task"]: row for row in csv.DictReader(file)}
    assert set(rows) == {"LLaVA VQA", "ViT-GPT2 captioning", "CLIP zero-shot", "CLIP retrieval"}
    assert 0.0 <= float(rows["LLaVA VQA"]["trained"]) <= 1.0
    assert 0.0 <= float(rows["CLIP zero-shot"]["trained"]) <= 1.0
    # The LLaVA starts from the CLIP trained above: its vision tower holds the CLIP's vision weights.
    assert any("radtune tiny llava" in line and "--vision-tower" in line for line in commands)
    report = (out / "report.md").read_text()
    assert "| LLaVA VQA | strict closed accuracy |" in report and (out / "all-metrics.png").is_file()
    # Every target row says `met` or `NOT met` and carries its margin.
    for task in ("LLaVA VQA", "ViT-GPT2 captioning", "CLIP zero-shot"):
        assert rows[task]["target"].endswith((": met", ": NOT met")) and rows[task]["margin"], rows[task]
    assert float(rows["CLIP zero-shot"]["margin"]) == pytest.approx(
        float(rows["CLIP zero-shot"]["trained"]) - 0.85, abs=1e-6
    )
