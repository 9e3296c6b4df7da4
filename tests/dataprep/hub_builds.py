"""`radtune data build SOURCE hf://datasets/...` against the local Hub (`tests/hub_server.py`), in one process.

huggingface_hub and datasets read `HF_ENDPOINT` once, at import, and the test suite runs offline; so this script runs
in a subprocess whose environment points at the local server (`hub_server.client_env`), and
`tests/dataprep/test_benchmark_datasets.py` asserts on the JSON report it writes and the folders it builds.

    python tests/dataprep/hub_builds.py REPORT.json WORK_DIR

Each scenario uploads a replica of a Hub copy (the real column and split names, see `dataprep_layouts`), then runs
`radtune data build` through its click command (exit code and output as a user sees them). A scenario that raises
records its traceback under "error", so one failure does not hide the others.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

if not os.environ.get("HF_ENDPOINT") or os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0"):
    sys.exit("set HF_ENDPOINT (the local Hub) and HF_HUB_OFFLINE=0 before running this script")

sys.path.insert(0, str(Path(__file__).parent))

from click.testing import CliRunner  # noqa: E402
from dataprep_layouts import (  # noqa: E402
    make_pathvqa_hub,
    make_rocov2_hub,
    make_slake_hub,
    make_vqa_rad_hub,
    vqa_plan,
)
from huggingface_hub import HfApi  # noqa: E402

from radtune.dataprep.build_cli import build  # noqa: E402

API = HfApi()
USER = API.whoami()["name"]


def upload(folder: Path, name: str, message: str) -> str:
    """Upload `folder` to the dataset repo `USER/name` (created if missing); returns the new commit's sha."""
    repo_id = f"{USER}/{name}"
    API.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    info = API.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder), commit_message=message)
    return info.oid


def run_build(*args: str) -> dict:
    result = CliRunner().invoke(build, [str(arg) for arg in args])
    return {
        "args": [str(arg) for arg in args],
        "rc": result.exit_code,
        "output": result.output,
        "exception": None
        if result.exception is None or isinstance(result.exception, SystemExit)
        else "".join(traceback.format_exception(result.exception)),
    }


def vqa_rad(work: Path) -> dict:
    """Two commits; the build pins the first by its sha, then `@main` reads the second."""
    first = make_vqa_rad_hub(work / "vqa-rad-v1", leaked=1, train_repeats=1, test_repeats=1)
    sha_v1 = upload(first, "vqa-rad", "v1")
    # v2 as the real copy: the published sizes (train 1,793 / test 451), plus 3 repeated train triplets and 1 train
    # copy of a test triplet that the build must take out of train.
    second = make_vqa_rad_hub(work / "vqa-rad-v2", rows={"train": 1793, "test": 451}, leaked=1, train_repeats=3)
    sha_v2 = upload(second, "vqa-rad", "v2: the published sizes")
    return {
        "sha_v1": sha_v1,
        "sha_v2": sha_v2,
        "plan_v1": vqa_plan({"train": 6, "test": 4}, leaked=1, train_repeats=1, test_repeats=1),
        "pinned": run_build("vqa-rad", f"hf://datasets/{USER}/vqa-rad@{sha_v1}", work / "out-vqa-rad-v1"),
        "main": run_build("vqa-rad", f"hf://datasets/{USER}/vqa-rad@main", work / "out-vqa-rad-main"),
        "latest": run_build("vqa-rad", f"hf://datasets/{USER}/vqa-rad", work / "out-vqa-rad-latest"),
    }


def pathvqa(work: Path) -> dict:
    sha = upload(make_pathvqa_hub(work / "path-vqa", test_repeats=1), "path-vqa", "replica")
    return {"sha": sha, "build": run_build("pathvqa", f"hf://datasets/{USER}/path-vqa", work / "out-pathvqa")}


def slake(work: Path) -> dict:
    sha = upload(make_slake_hub(work / "slake", leaked=1), "SLAKE", "replica")
    return {
        "sha": sha,
        "english": run_build("slake", f"hf://datasets/{USER}/SLAKE", work / "out-slake-en"),
        "both": run_build(
            "slake",
            f"hf://datasets/{USER}/SLAKE@{sha}",
            work / "out-slake-en-zh",
            "--reader-option",
            "languages=en,zh",
        ),
    }


def rocov2(work: Path) -> dict:
    sha = upload(make_rocov2_hub(work / "rocov2"), "ROCOv2-radiology", "replica")
    return {"sha": sha, "build": run_build("rocov2", f"hf://datasets/{USER}/ROCOv2-radiology", work / "out-rocov2")}


def errors(work: Path) -> dict:
    folder = make_vqa_rad_hub(work / "no-question")
    import pyarrow.parquet as pq

    for path in (folder / "data").glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.rename_columns(["image", "query", "answer"]), path)
    upload(folder, "vqa-rad-renamed", "question renamed query")
    return {
        "missing_repo": run_build("vqa-rad", f"hf://datasets/{USER}/no-such-dataset", work / "out-missing"),
        "missing_revision": run_build("vqa-rad", f"hf://datasets/{USER}/vqa-rad@no-such-branch", work / "out-rev"),
        "missing_column": run_build("vqa-rad", f"hf://datasets/{USER}/vqa-rad-renamed", work / "out-renamed"),
        "unknown_option": run_build(
            "vqa-rad", f"hf://datasets/{USER}/vqa-rad", work / "out-option", "--reader-option", "languages=en"
        ),
        "no_hub_reader": run_build("nih", f"hf://datasets/{USER}/vqa-rad", work / "out-nih"),
        "malformed": run_build("vqa-rad", "hf://datasets/only-a-name", work / "out-malformed"),
    }


SCENARIOS = {"vqa_rad": vqa_rad, "pathvqa": pathvqa, "slake": slake, "rocov2": rocov2, "errors": errors}


def main(report_path: str, work_dir: str) -> None:
    work = Path(work_dir)
    report = {"user": USER}
    for name, scenario in SCENARIOS.items():
        try:
            report[name] = scenario(work)
        except Exception:  # noqa: BLE001 - recorded, asserted on by the test
            report[name] = {"error": traceback.format_exc()}
    Path(report_path).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
