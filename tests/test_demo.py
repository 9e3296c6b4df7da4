"""The demo command's pipeline, shortened (`scripts/demo.py --quick`), end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
