"""The Hub layer against the local Hub-compatible server: push, pull, visibility, cards, datasets, adapters, errors.

All round-trips run once, in one subprocess (`tests/hub_roundtrips.py`) whose environment points at the server
before the clients import; each test below checks one part of its report. The resolver's local and offline paths
run in-process (this process is offline).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import radtune.common.hub as hub_module
from radtune.common.hub import (
    HubError,
    MissingPathError,
    looks_like_local_path,
    require_model_files,
    resolve_model_path,
)

ROUNDTRIPS = Path(__file__).parents[1] / "hub_roundtrips.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(hub_server, tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("hub-work")
    out = work / "report.json"
    env = {**os.environ, **hub_server.client_env(tmp_path_factory.mktemp("hub-hf-home"))}
    done = subprocess.run(
        [sys.executable, str(ROUNDTRIPS), str(out), str(work), str(tiny_model("clip"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"hub_roundtrips.py failed:\n{done.stdout[-4000:]}\n{done.stderr[-8000:]}"
    report = json.loads(out.read_text())
    report["_server_requests"] = hub_server.requests
    return report


def scenario(report: dict, name: str) -> dict:
    result = report[name]
    assert "error" not in result, f"scenario {name} raised:\n{result['error']}"
    return result


def assert_cli_ok(run: dict) -> None:
    assert run["rc"] == 0, f"radtune {' '.join(run['args'])} failed:\n{run['stdout']}\n{run['stderr']}"


def assert_no_differences(comparison: dict) -> None:
    assert comparison["files"], "nothing was compared"
    assert comparison["missing"] == [] and comparison["different"] == [], comparison


def test_push_then_download_gives_identical_bytes(report):
    result = scenario(report, "model_push")
    assert_cli_ok(result["push"])
    assert_no_differences(result["snapshot"])
    assert_no_differences(result["hf_hub_download"])
    assert {"config.json", "model.safetensors", "metrics.json", "eval/predictions.jsonl"} <= set(
        result["snapshot"]["files"]
    )
    assert "model.safetensors" in result["lfs_files"], "binary weights must travel through LFS"
    assert "config.json" not in result["lfs_files"]
    assert not any(name.startswith("checkpoint-") for name in result["repo_files"])


def test_repo_is_private_unless_public(report):
    private = scenario(report, "model_push")
    assert private["private"] is True
    assert private["anonymous_can_read"] is False
    assert "(private)" in private["push"]["stdout"]
    public = scenario(report, "public_push")
    assert_cli_ok(public["push"])
    assert public["private"] is False
    assert public["anonymous_can_read"] is True
    assert "(public)" in public["push"]["stdout"]


def test_model_card_yaml_validates(report):
    result = scenario(report, "model_push")
    card = result["card"]
    assert card["base_model"] == "openai/clip-vit-base-patch32"
    assert card["library_name"] == "transformers"
    assert card["datasets"] == ["radtune/chest-xray"]
    assert card["license"] == "other"
    assert {"medical", "radiology"} <= set(card["tags"])
    results = card["model-index"][0]["results"]
    assert {m["type"]: m["value"] for r in results for m in r["metrics"]} == {"auc": 0.8125, "accuracy": 0.75}
    # The server's validator really checks, so this test would catch a card the Hub refuses.
    refused = result["refused_cards"]
    assert "base_model" in refused.get("local_base_model", "")
    assert refused["broken_model_index"].startswith("400:")
    assert ".dataset" in refused["broken_model_index"] and ".value" in refused["broken_model_index"]


def test_dataset_with_image_column_round_trips(report):
    result = scenario(report, "dataset_push")
    pushed = result["push_to_hub"]
    assert pushed["rows"] == 6
    assert pushed["features"]["image"] == "Image"
    assert pushed["same_pixels"] and pushed["same_reports"]
    assert pushed["private"] is True
    cli = result["cli"]
    assert_cli_ok(cli["push"])
    assert_cli_ok(cli["pull"])
    assert_no_differences(cli["files"])
    assert cli["splits"] == {"train": 6, "test": 2}
    assert cli["image_feature"] == "Image"
    assert cli["same_pixels"]
    assert cli["no_model_card"], "datasets get no generated model card"
    assert cli["private"] is True


def test_adapter_round_trips_with_identical_weights(report):
    result = scenario(report, "adapter_push")
    assert_cli_ok(result["push"])
    assert result["lora_tensors"] > 0
    assert result["from_hub_same_weights"], "PeftModel.from_pretrained(base, repo_id) changed the LoRA weights"
    assert_cli_ok(result["pull"])
    assert_no_differences(result["pulled_files"])
    assert result["pulled_same_weights"]
    assert_cli_ok(result["pull_one_file"])
    assert result["pull_one_file"]["files"] == ["adapter_config.json"]
    card = result["card"]
    assert card["library_name"] == "peft"
    assert {"medical", "radiology", "lora", "peft"} <= set(card["tags"])
    assert "base_model" not in card, "a local base model path must not become the card's base_model"
    assert result["private"] is True
    assert result["resolved_local"] == result["pulled_dir"]
    assert "models--" in result["resolved_repo"] and "tiny-clip-lora" in result["resolved_repo"]


@pytest.mark.parametrize(
    "case, named",
    [
        ("missing_repo", "no-such-repo"),
        ("missing_dataset_repo", "tiny-clip-lora"),
        ("missing_file", "no_such_weights.safetensors"),
        ("missing_revision", "no-such-branch"),
        ("missing_folder", "no-such-folder"),
    ],
)
def test_missing_things_give_a_clear_error(report, case, named):
    run = scenario(report, "errors")[case]
    output = run["stdout"] + run["stderr"]
    assert run["rc"] != 0
    assert named in output
    assert "Traceback" not in output
    assert output.strip().startswith("Usage:") or output.strip().startswith("Error:")


def test_resolver_names_a_missing_repo(report):
    raised = scenario(report, "errors")["resolver"]["raised"]
    assert raised and "no-such-model" in raised and "not found" in raised


def test_token_is_never_printed_or_written(report):
    result = scenario(report, "token_never_shown")
    assert result["outputs_checked"] >= 8
    assert result["in_output"] is False
    assert result["in_files"] == []


def test_clients_used_lfs_and_validation_endpoints(report):
    called = {(method, status) for method, _path, status in report["_server_requests"]}
    paths = " ".join(path for _method, path, _status in report["_server_requests"])
    assert "/info/lfs/objects/batch" in paths and "/lfs-storage/" in paths
    assert "/api/validate-yaml" in paths
    assert ("POST", 500) not in called


def test_resolver_returns_local_paths_unchanged(tmp_path):
    assert resolve_model_path(tmp_path) == tmp_path
    assert resolve_model_path(str(tmp_path)) == tmp_path


def test_resolver_errors_name_the_repo_offline():
    with pytest.raises(HubError, match="radtune-tests/not-cached"):
        resolve_model_path("radtune-tests/not-cached")


@pytest.mark.parametrize(
    "name", ["./ph-qaX", "../runs/x", "/no/such/folder", "~/no-such-folder", "runs/a/b", "runs/x/"]
)
def test_a_name_that_can_only_be_a_path_is_not_looked_up_on_the_hub(name, monkeypatch):
    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(hub_module.HfApi, "repo_info", no_hub)
    monkeypatch.setattr(hub_module, "snapshot_download", no_hub)
    assert looks_like_local_path(name)
    started = time.monotonic()
    with pytest.raises(MissingPathError, match=f"^no such folder: {re.escape(name)}") as excinfo:
        resolve_model_path(name)
    assert time.monotonic() - started < 1
    assert isinstance(excinfo.value, FileNotFoundError) and isinstance(excinfo.value, HubError)
    if not name.startswith(("/", "~")):
        assert f"(cwd {Path.cwd()})" in str(excinfo.value)


def test_repo_shaped_names_are_not_local_paths():
    assert not looks_like_local_path("runs/x") and not looks_like_local_path("gpt2")
    assert not looks_like_local_path("openai/clip-vit-base-patch32")


def test_a_two_part_name_offline_names_both_readings_fast(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(MissingPathError) as excinfo:
        resolve_model_path("runs/x")
    assert time.monotonic() - started < 10
    assert str(excinfo.value) == (
        f"runs/x is not a folder here (cwd {tmp_path}) and not a model repo on the Hub: offline mode "
        "(HF_HUB_OFFLINE=1) and not in the local cache"
    )
    with pytest.raises(MissingPathError, match="bad name! is not a folder here .* not a valid repo id"):
        resolve_model_path("bad name!")
    (tmp_path / "runs" / "x").mkdir(parents=True)
    assert resolve_model_path("runs/x") == Path("runs/x")  # a folder here wins, no Hub involved


@pytest.fixture
def silent_hub(monkeypatch):
    """An endpoint that accepts connections and never answers: a Hub out of reach without failing DNS."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    monkeypatch.setattr(hub_module.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module.constants, "ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    server.close()


def test_a_two_part_name_fails_within_seconds_when_the_hub_never_answers(silent_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    with pytest.raises(MissingPathError, match=r"^runs/x is not a folder here .* could not be reached \(timed out\)"):
        resolve_model_path("runs/x")
    assert time.monotonic() - started < 10


def test_a_missing_repo_on_a_reachable_hub_names_both_readings(hub_server, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hub_module.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_module.constants, "ENDPOINT", hub_server.url)
    started = time.monotonic()
    with pytest.raises(MissingPathError) as excinfo:
        resolve_model_path("runs/no-such-run")
    assert time.monotonic() - started < 10
    message = str(excinfo.value)
    assert message.startswith(
        f"runs/no-such-run is not a folder here (cwd {tmp_path}) and not a model repo on the Hub"
    )
    assert "not found" in message


def test_require_model_files_names_the_checkpoints(tmp_path):
    run = tmp_path / "run"
    for step in (10, 200, 30):
        (run / f"checkpoint-{step}").mkdir(parents=True)
        (run / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    (run / "runs").mkdir()
    with pytest.raises(ValueError) as excinfo:
        require_model_files(run)
    assert str(excinfo.value) == (
        f"{run} holds no saved model, only checkpoints (checkpoint-10, checkpoint-30, checkpoint-200): training "
        f"stopped before saving it. Pass --model {run / 'checkpoint-200'} to use the newest one."
    )
    with pytest.raises(ValueError, match="--adapter .*checkpoint-200"):
        require_model_files(run, flag="--adapter")
    require_model_files(run / "checkpoint-30")  # an adapter folder passes
    (run / "config.json").write_text("{}")
    require_model_files(run)  # a finished run passes, checkpoints or not
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no model or adapter"):
        require_model_files(empty)
