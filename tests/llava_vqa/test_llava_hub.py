"""A trained LLaVA adapter pushed to the local Hub server is evaluated straight from its repo id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


def test_adapter_pushed_to_hub_is_evaluated_by_repo_id(hub_server, trained, qa_dataset_dir, tmp_path):
    adapter_dir, _ = trained
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home")}
    radtune = str(Path(sys.executable).with_name("radtune"))
    repo_id = "radtune-tester/llava-phantom-lora"

    push = subprocess.run([radtune, "hub", "push", str(adapter_dir), repo_id], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert push.returncode == 0, push.stderr[-3000:]

    out_dir = tmp_path / "eval"
    evaluate = subprocess.run(
        [radtune, "vqa", "evaluate", "--model", repo_id, "--dataset", str(qa_dataset_dir), "--split", "test",
         "--out", str(out_dir), "--max-new-tokens", "4"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["meta"]["model"] == repo_id and metrics["meta"]["n"] == 8
    # Same adapter, same data, greedy decoding: the Hub copy answers exactly like the local folder.
    local = subprocess.run(
        [radtune, "vqa", "evaluate", "--model", str(adapter_dir), "--dataset", str(qa_dataset_dir), "--split",
         "test", "--out", str(tmp_path / "local"), "--max-new-tokens", "4"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    predictions = [line.split(",")[1] for line in (out_dir / "evaluation_results.csv").read_text().splitlines()]
    local_predictions = [
        line.split(",")[1] for line in (tmp_path / "local" / "evaluation_results.csv").read_text().splitlines()
    ]
    assert predictions == local_predictions

    missing = subprocess.run([radtune, "vqa", "evaluate", "--model", "radtune-tester/no-such-adapter",
                              "--dataset", str(qa_dataset_dir)], env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert missing.returncode != 0
    assert "radtune-tester/no-such-adapter" in missing.stderr and "Traceback" not in missing.stderr
