"""Every Hub round-trip of radtune's tests, run in one process against the local Hub (`tests/hub_server.py`).

huggingface_hub, datasets and transformers read `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import, and the rest of
the suite runs offline; so the Hub tests run here, in a process whose environment points at the local server from
the start, and `tests/common/test_hub.py` asserts on the JSON report this script writes.

    python tests/hub_roundtrips.py REPORT.json WORK_DIR TINY_MODEL_DIR

Each scenario's result is recorded under its name; a scenario that raises records the traceback under "error"
instead, so one failure does not hide the others. `radtune` itself runs as a real command (a subprocess), so
its exit code and output are what a user would see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

if not os.environ.get("HF_ENDPOINT") or os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
    sys.exit("set HF_ENDPOINT (the local Hub) and HF_HUB_OFFLINE=0 before running this script")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset, DatasetDict, Image, load_dataset  # noqa: E402
from huggingface_hub import HfApi, ModelCard, constants, get_session, hf_hub_download, snapshot_download  # noqa: E402
from huggingface_hub.errors import RepositoryNotFoundError  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from PIL import Image as PILImage  # noqa: E402
from transformers import AutoModel  # noqa: E402

from radtune.common.hub import HubError, resolve_model_path  # noqa: E402
from radtune.common.model_card import build_model_card  # noqa: E402

USER = HfApi().whoami()["name"]
METRICS = {
    "metrics": {"auc": 0.8125, "accuracy": 0.75},
    "ci": {"auc": [0.79, 0.83]},
    "meta": {
        "task": "zero-shot",
        "model": "tiny-clip",
        "dataset": "radtune/chest-xray",
        "split": "test",
        "n": 64,
        "seed": 0,
    },
}
BROKEN_MODEL_INDEX = """
- name: tiny-clip
  results:
  - task:
      type: zero-shot-image-classification
    metrics:
    - type: auc
"""
CLI_OUTPUTS: list[str] = []


def radtune(*args: str) -> dict:
    """Run the `radtune` command line for real, as a user would."""
    done = subprocess.run([sys.executable, "-m", "radtune.common.cli", *args], capture_output=True, text=True)
    CLI_OUTPUTS.append(done.stdout + done.stderr)
    return {"args": list(args), "rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def local_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (not huggingface_hub's `.cache` bookkeeping) → its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] != ".cache"
    }


def compare_files(expected: dict[str, bytes], got: dict[str, bytes]) -> dict:
    return {
        "files": sorted(expected),
        "missing": sorted(set(expected) - set(got)),
        "different": sorted(name for name in expected if name in got and got[name] != expected[name]),
    }


def lora_state(model) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.state_dict().items() if "lora_" in name}


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[name], b[name]) for name in a)


def anonymous_can_read(repo_id: str, filename: str, repo_type: str = "model") -> bool:
    try:
        hf_hub_download(repo_id, filename, repo_type=repo_type, token=False, cache_dir=WORK / "anonymous-cache")
    except RepositoryNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Scenarios


def model_push() -> dict:
    """`radtune hub push` of a model folder: private by default, every file back byte for byte, a valid card."""
    folder = WORK / "model"
    shutil.copytree(TINY, folder)
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    (folder / "eval").mkdir()
    (folder / "eval" / "predictions.jsonl").write_text('{"id": 1, "prediction": "no acute findings"}\n')
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0" * 64)  # left out by default
    repo_id = f"{USER}/tiny-clip"
    push = radtune("hub", "push", str(folder), repo_id, "--base-model", "openai/clip-vit-base-patch32")

    expected = {name: data for name, data in local_files(folder).items() if not name.startswith("checkpoint-")}
    card_text = str(build_model_card(folder, repo_id, base_model="openai/clip-vit-base-patch32"))
    expected["README.md"] = card_text.encode()  # the generated card replaces any README.md in the folder
    snapshot = Path(snapshot_download(repo_id))
    single = {name: Path(hf_hub_download(repo_id, name)).read_bytes() for name in expected}
    info = HfApi().repo_info(repo_id, files_metadata=True)

    card = ModelCard.load(repo_id)
    card.validate()  # raises ValueError when the server's YAML checks fail
    # The server's checks are real: a local path as base_model (through ModelCard.validate, which parses the
    # model-index itself) and a model-index result with no dataset and a metric with no value are both refused.
    refused = {}
    try:
        ModelCard(
            card_text.replace("base_model: openai/clip-vit-base-patch32", "base_model: /tmp/my-model")
        ).validate()
    except ValueError as error:
        refused["local_base_model"] = str(error)
    model_index = card_text.split("model-index:")[1].split("\n---")[0]
    response = get_session().post(
        f"{constants.ENDPOINT}/api/validate-yaml",
        json={"repoType": "model", "content": card_text.replace(model_index, BROKEN_MODEL_INDEX.rstrip("\n"))},
    )
    refused["broken_model_index"] = f"{response.status_code}: {response.text}"
    return {
        "push": push,
        "snapshot": compare_files(expected, local_files(snapshot)),
        "hf_hub_download": compare_files(expected, single),
        "repo_files": sorted(sibling.rfilename for sibling in info.siblings),
        "lfs_files": sorted(sibling.rfilename for sibling in info.siblings if sibling.lfs is not None),
        "private": info.private,
        "anonymous_can_read": anonymous_can_read(repo_id, "config.json"),
        "card": card.data.to_dict(),
        "refused_cards": refused,
    }


def public_push() -> dict:
    """`--public` makes a public repo that anyone can read."""
    folder = WORK / "public-model"
    shutil.copytree(TINY, folder)
    repo_id = f"{USER}/tiny-clip-public"
    push = radtune("hub", "push", str(folder), repo_id, "--public")
    return {
        "push": push,
        "private": HfApi().repo_info(repo_id).private,
        "anonymous_can_read": anonymous_can_read(repo_id, "config.json"),
    }


def _image_dataset(n: int = 6) -> tuple[Dataset, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8) for _ in range(n)]
    rows = {
        "image": [PILImage.fromarray(array) for array in pixels],
        "report": [f"finding {i}: no acute cardiopulmonary process" for i in range(n)],
    }
    return Dataset.from_dict(rows).cast_column("image", Image()), pixels


def _same_pixels(loaded, pixels: list[np.ndarray]) -> bool:
    images = [np.asarray(row["image"].convert("RGB")) for row in loaded]
    return len(images) == len(pixels) and all(np.array_equal(a, b) for a, b in zip(images, pixels, strict=True))


def dataset_push() -> dict:
    """An `Image` column survives `push_to_hub` → plain `load_dataset(repo_id)`, and `radtune hub push` of a
    `save_to_disk` folder → `load_dataset(repo_id)` too.
    """
    dataset, pixels = _image_dataset()
    repo_id = f"{USER}/tiny-chest-images"
    dataset.push_to_hub(repo_id, private=True)
    loaded = load_dataset(repo_id, split="train")
    result = {
        "push_to_hub": {
            "rows": len(loaded),
            "features": {name: type(feature).__name__ for name, feature in loaded.features.items()},
            "same_pixels": _same_pixels(loaded, pixels),
            "same_reports": loaded["report"] == dataset["report"],
            "private": HfApi().repo_info(repo_id, repo_type="dataset").private,
        }
    }

    # What `radtune data build` writes: a `save_to_disk` folder with one subfolder per split.
    folder = WORK / "dataset-folder"
    DatasetDict({"train": dataset, "test": dataset.select(range(2))}).save_to_disk(str(folder))
    cli_repo = f"{USER}/tiny-chest-images-cli"
    push = radtune("hub", "push", str(folder), cli_repo, "--repo-type", "dataset")
    pulled = WORK / "dataset-pulled"
    pull = radtune("hub", "pull", cli_repo, str(pulled), "--repo-type", "dataset")
    loaded = load_dataset(cli_repo)
    result["cli"] = {
        "push": push,
        "pull": pull,
        "files": compare_files(local_files(folder), local_files(pulled)),
        "splits": {name: len(split) for name, split in loaded.items()},
        "image_feature": type(loaded["train"].features["image"]).__name__,
        "same_pixels": _same_pixels(loaded["train"], pixels),
        "no_model_card": "README.md" not in local_files(pulled),
        "private": HfApi().repo_info(cli_repo, repo_type="dataset").private,
    }
    return result


def adapter_push() -> dict:
    """A LoRA adapter: `radtune hub push` → `PeftModel.from_pretrained(base, repo_id)`; `radtune hub pull`."""
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModel.from_pretrained(TINY),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    expected = lora_state(model)
    folder = WORK / "adapter"
    model.save_pretrained(folder)
    (folder / "metrics.json").write_text(json.dumps(METRICS))
    repo_id = f"{USER}/tiny-clip-lora"
    push = radtune("hub", "push", str(folder), repo_id)

    from_hub = PeftModel.from_pretrained(AutoModel.from_pretrained(TINY), repo_id)
    pulled = WORK / "adapter-pulled"
    pull = radtune("hub", "pull", repo_id, str(pulled))
    from_folder = PeftModel.from_pretrained(AutoModel.from_pretrained(TINY), pulled)
    only_config = WORK / "adapter-config-only"
    pull_one = radtune("hub", "pull", repo_id, str(only_config), "-f", "adapter_config.json")
    original = {name: data for name, data in local_files(folder).items() if name != "README.md"}
    return {
        "push": push,
        "pull": pull,
        "pull_one_file": {**pull_one, "files": sorted(local_files(only_config))},
        "lora_tensors": len(expected),
        "from_hub_same_weights": same_tensors(expected, lora_state(from_hub)),
        "pulled_same_weights": same_tensors(expected, lora_state(from_folder)),
        "pulled_files": compare_files(original, local_files(pulled)),
        "card": ModelCard.load(repo_id).data.to_dict(),
        "private": HfApi().repo_info(repo_id).private,
        "resolved_repo": str(resolve_model_path(repo_id)),
        "resolved_local": str(resolve_model_path(pulled)),
        "pulled_dir": str(pulled),
    }


def errors() -> dict:
    """A missing repo, file or revision: a non-zero exit and a message naming it, through the CLI and the API."""
    cases = {
        "missing_repo": radtune("hub", "pull", f"{USER}/no-such-repo", str(WORK / "missing-repo")),
        "missing_dataset_repo": radtune(
            "hub", "pull", f"{USER}/tiny-clip-lora", str(WORK / "wrong-type"), "--repo-type", "dataset"
        ),
        "missing_file": radtune(
            "hub", "pull", f"{USER}/tiny-clip-lora", str(WORK / "missing-file"), "-f", "no_such_weights.safetensors"
        ),
        "missing_revision": radtune(
            "hub", "pull", f"{USER}/tiny-clip-lora", str(WORK / "missing-revision"), "--revision", "no-such-branch"
        ),
        "missing_folder": radtune("hub", "push", str(WORK / "no-such-folder"), f"{USER}/anything"),
    }
    try:
        resolve_model_path(f"{USER}/no-such-model")
        cases["resolver"] = {"raised": None}
    except HubError as error:
        cases["resolver"] = {"raised": str(error)}
    return cases


def token_never_shown() -> dict:
    """The token appears in no command output and in no file radtune or the clients wrote."""
    token = os.environ["HF_TOKEN"].encode()
    leaked = [
        str(path)
        for root in (WORK, Path(os.environ["HF_HOME"]))
        for path in root.rglob("*")
        if path.is_file() and token in path.read_bytes()
    ]
    return {
        "in_output": any(os.environ["HF_TOKEN"] in text for text in CLI_OUTPUTS),
        "in_files": leaked,
        "outputs_checked": len(CLI_OUTPUTS),
    }


SCENARIOS = (model_push, public_push, dataset_push, adapter_push, errors, token_never_shown)

if __name__ == "__main__":
    report_path, WORK, TINY = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    report = {}
    for scenario in SCENARIOS:
        try:
            report[scenario.__name__] = scenario()
        except Exception:  # recorded for the test to show; the other scenarios still run
            report[scenario.__name__] = {"error": traceback.format_exc()}
    report_path.write_text(json.dumps(report, indent=2, default=str))
