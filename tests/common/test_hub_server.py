"""The local Hub server's own rules, checked with plain HTTP (no Hub client), so the round-trip tests can trust it."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from radtune.common.model_card import build_model_card


def call(server, method: str, path: str, body=None, token: bool = True) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {server.token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def info(server, kind: str, repo_id: str, token: bool = True) -> tuple[int, dict]:
    status, headers, body = call(server, "GET", f"/api/{kind}/{repo_id}", token=token)
    return status, json.loads(body) | {"_error_code": headers.get("X-Error-Code")}


@pytest.mark.parametrize(
    "name, payload, private",
    [
        ("visibility-private", {"visibility": "private"}, True),
        ("visibility-public", {"visibility": "public"}, False),
        ("legacy-private", {"private": True}, True),
        ("default", {}, False),
    ],
)
def test_create_repo_records_visibility(hub_server, name, payload, private):
    status, _, _ = call(hub_server, "POST", "/api/repos/create", {"name": name, "organization": None, **payload})
    assert status == 200
    status, repo = info(hub_server, "models", f"radtune-tester/{name}")
    assert status == 200 and repo["private"] is private
    status, anonymous = info(hub_server, "models", f"radtune-tester/{name}", token=False)
    assert status == (404 if private else 200)
    if private:
        assert anonymous["_error_code"] == "RepoNotFound"


def test_anonymous_cannot_create(hub_server):
    status, _, _ = call(hub_server, "POST", "/api/repos/create", {"name": "nope"}, token=False)
    assert status == 401


def test_preupload_sends_binary_to_lfs(hub_server):
    call(hub_server, "POST", "/api/repos/create", {"name": "modes", "type": "dataset"})
    files = [
        {"path": "notes.md", "sample": base64.b64encode("résumé: no acute findings".encode()).decode(), "size": 26},
        {"path": "blob.dat", "sample": base64.b64encode(b"\x89PNG\r\n\x1a\n\0\0").decode(), "size": 10},
        {"path": "weights.safetensors", "sample": base64.b64encode(b"{}").decode(), "size": 2},
    ]
    status, _, body = call(hub_server, "POST", "/api/datasets/radtune-tester/modes/preupload/main", {"files": files})
    assert status == 200
    modes = {item["path"]: item["uploadMode"] for item in json.loads(body)["files"]}
    assert modes == {"notes.md": "regular", "blob.dat": "lfs", "weights.safetensors": "lfs"}


def test_lfs_storage_checks_the_sha256(hub_server):
    status, _, _ = call(hub_server, "PUT", "/lfs-storage/" + "0" * 64, body="not the content")
    assert status == 400


@pytest.mark.parametrize(
    "content, ok",
    [
        ("---\nlicense: apache-2.0\ntags:\n- medical\n---\n# card\n", True),
        ("---\n- just\n- a list\n---\n", False),
        ("---\nlicense: [unclosed\n---\n", False),
        ("---\nlibrary_name:\n- peft\n- transformers\n---\n", False),
        ("---\nmodel-index:\n- name: x\n  results: []\n---\n", False),
    ],
)
def test_validate_yaml(hub_server, content, ok):
    status, _, body = call(hub_server, "POST", "/api/validate-yaml", {"repoType": "model", "content": content})
    assert (status == 200) is ok, body


def test_generated_card_passes_and_a_broken_one_fails(hub_server, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/base"}))
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"auc": 0.9}, "meta": {"dataset": "org/data"}}))
    card = str(build_model_card(tmp_path, "me/adapter"))
    status, _, body = call(hub_server, "POST", "/api/validate-yaml", {"repoType": "model", "content": card})
    assert status == 200, body
    broken = card.replace("      value: 0.9\n", "")
    status, _, body = call(hub_server, "POST", "/api/validate-yaml", {"repoType": "model", "content": broken})
    assert status == 400 and b"metrics[0].value" in body


def test_missing_things_carry_the_hub_error_codes(hub_server):
    call(hub_server, "POST", "/api/repos/create", {"name": "codes"})
    cases = {
        "/radtune-tester/no-such-repo/resolve/main/config.json": "RepoNotFound",
        "/radtune-tester/codes/resolve/no-such-branch/config.json": "RevisionNotFound",
        "/radtune-tester/codes/resolve/main/no-such-file.json": "EntryNotFound",
    }
    for path, code in cases.items():
        status, headers, _ = call(hub_server, "GET", path)
        assert (status, headers.get("X-Error-Code")) == (404, code), path
