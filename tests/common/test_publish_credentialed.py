"""Runs trained or evaluated on credentialed data (MIMIC-CXR, CheXpert Plus), pushed to the local Hub server:
public only with --allow-credentialed-public, never with per-item files, and the trainers' `publish_run` alike.

All pushes run in one subprocess whose environment points at the server before huggingface_hub is imported (as in
test_hub.py); the checks read the server's own record of repos and committed files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from radtune.common.credentialed import CredentialedPublishError, check_publish, folder_marks
from radtune.common.metrics.io import write_metrics

pytestmark = pytest.mark.slow

USER = "radtune-tester"
REPORT_TEXT = "Small left pleural effusion. Discussed with Dr. Who."

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from click.testing import CliRunner
    from radtune.common.hub_cli import hub
    from radtune.common.run import PushRequest, publish_run
    out = {}
    for name, kind, args in json.loads(sys.argv[1]):
        if kind == "cli":
            result = CliRunner().invoke(hub, args)
            out[name] = {"rc": result.exit_code, "output": result.output}
        else:
            folder, repo, private = args
            try:
                publish_run(folder, PushRequest(repo, private=private), base_model=None)
                out[name] = {"rc": 0, "output": ""}
            except Exception as error:
                out[name] = {"rc": 1, "output": f"{type(error).__name__}: {error}"}
    print(json.dumps(out))
    """
)


def _run_folder(path: Path, credentialed: bool, eval_marked: bool = False) -> Path:
    """A finished run as `finish_run` and the final evaluation leave it, with a test evaluation folder inside."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    (path / "run_info.json").write_text(json.dumps({"task": "vqa", "dataset": "./qa", "credentialed": credentialed}))
    (path / "evaluation_results.csv").write_text(f"id,prediction,references\n1,yes,{REPORT_TEXT}\n")
    (path / "zero_shot_scores.csv").write_text("id,Effusion\n50414267-dicom,0.9\n")
    write_metrics(path, {"accuracy": 0.5}, task="vqa", model=str(path), dataset="./x")
    evaluation = path / "eval-vqa-test"
    evaluation.mkdir()
    (evaluation / "evaluation_results.csv").write_text(f"id,prediction,references\n1,no,{REPORT_TEXT}\n")
    write_metrics(evaluation, {"accuracy": 0.4}, task="vqa", model="m", dataset="./x",
                  extra_meta={"credentialed": True} if eval_marked else None)  # fmt: skip
    return path


def _files(hub_server, repo_id: str, repo_type: str = "model") -> set[str]:
    repo = hub_server.state.repos[(repo_type, repo_id)]
    return set(repo.commits[repo.branches["main"]].files)


def test_marks_and_rules_offline(tmp_path):
    run = _run_folder(tmp_path / "run", credentialed=True)
    assert folder_marks(run) == {"run_info.json", "metrics.json"}  # the final evaluation took the run's mark
    with pytest.raises(CredentialedPublishError, match="--allow-credentialed-public"):
        check_publish(run, repo_type="model", private=False)
    rule = check_publish(run, repo_type="model", private=False, allow_public=True)
    assert rule.marked and not rule.private_only and "*/evaluation_results.csv" in rule.leave_out
    plain = _run_folder(tmp_path / "plain", credentialed=False, eval_marked=True)
    rule = check_publish(plain, repo_type="model", private=False)
    assert not rule.marked and rule.leave_out == ["eval-vqa-test/evaluation_results.csv",
                                                  "eval-vqa-test/zero_shot_scores.csv"]  # fmt: skip


def test_credentialed_runs_are_published_by_the_rules(hub_server, tmp_path):
    cred = _run_folder(tmp_path / "cred", credentialed=True)
    plain = _run_folder(tmp_path / "plain", credentialed=False, eval_marked=True)
    trained = _run_folder(tmp_path / "trained", credentialed=True)
    steps = [
        ("public", "cli", ["push", str(cred), f"{USER}/cred-public", "--public"]),
        ("allowed", "cli", ["push", str(cred), f"{USER}/cred-allowed", "--public", "--allow-credentialed-public"]),
        ("private", "cli", ["push", str(cred), f"{USER}/cred-private"]),
        ("plain", "cli", ["push", str(plain), f"{USER}/plain", "--public"]),
        ("trainer_public", "publish_run", [str(trained), f"{USER}/trained-public", False]),
        ("trainer_private", "publish_run", [str(trained), f"{USER}/trained-private", True]),
    ]
    env = {**os.environ, **hub_server.client_env(tmp_path / "hf-home")}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(steps)], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    runs = json.loads(done.stdout.strip().splitlines()[-1])
    repos = hub_server.state.repos
    per_item = {"evaluation_results.csv", "zero_shot_scores.csv", "eval-vqa-test/evaluation_results.csv"}

    # A public push without the flag: refused before the repo exists.
    assert runs["public"]["rc"] != 0 and "--allow-credentialed-public" in runs["public"]["output"]
    assert ("model", f"{USER}/cred-public") not in repos

    # With the flag: public, without a single per-item file, and it says so.
    assert runs["allowed"]["rc"] == 0, runs["allowed"]["output"]
    assert repos[("model", f"{USER}/cred-allowed")].private is False
    files = _files(hub_server, f"{USER}/cred-allowed")
    assert {"model.safetensors", "run_info.json", "metrics.json", "eval-vqa-test/metrics.json"} <= files
    assert not files & per_item
    assert "notice: left out" in runs["allowed"]["output"] and "eval-vqa-test/evaluation_results.csv" in runs[
        "allowed"]["output"]  # fmt: skip

    # Private: pushed, per-item files still left here.
    assert runs["private"]["rc"] == 0 and repos[("model", f"{USER}/cred-private")].private is True
    assert not _files(hub_server, f"{USER}/cred-private") & per_item

    # A run not trained on credentialed data goes public, but a test on credentialed data keeps its rows here.
    assert runs["plain"]["rc"] == 0, runs["plain"]["output"]
    files = _files(hub_server, f"{USER}/plain")
    assert "evaluation_results.csv" in files and "eval-vqa-test/evaluation_results.csv" not in files

    # The trainers' push path reads run_info.json the same way.
    assert runs["trainer_public"]["rc"] == 1
    assert runs["trainer_public"]["output"].startswith("CredentialedPublishError")
    assert f"radtune hub push {trained}" in runs["trainer_public"]["output"]
    assert ("model", f"{USER}/trained-public") not in repos
    assert runs["trainer_private"]["rc"] == 0, runs["trainer_private"]["output"]
    assert repos[("model", f"{USER}/trained-private")].private is True
    assert not _files(hub_server, f"{USER}/trained-private") & per_item
