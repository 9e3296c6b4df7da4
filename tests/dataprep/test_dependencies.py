"""radtune-dataprep and radtune-common install and run without the deep-learning stack.

The training stack comes with `radtune-common[train]`, which only the task packages require. Two checks: the
installed metadata (no plain requirement of dataprep or common reaches torch & co.), and a real `radtune data` flow
in a process where those libraries cannot be imported, as in an environment that never installed them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from packaging.requirements import Requirement

TRAINING_STACK = ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "tensorboard")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _reachable(root: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution `root[extras]` pulls in through the installed metadata, with their requested extras."""
    seen: set[tuple[str, frozenset[str]]] = set()
    reached: set[str] = set()
    todo = [(_normalize(root), extras)]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        reached.add(name)
        try:
            requirements = distribution(name).requires or []
        except PackageNotFoundError:  # not installed here (another platform's or Python's requirement): a leaf
            continue
        for line in requirements:
            requirement = Requirement(line)
            active = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in ("", *wanted)
            )
            if active:
                todo.append((_normalize(requirement.name), frozenset(requirement.extras)))
    return reached


@pytest.mark.parametrize("package", ["radtune-dataprep", "radtune-common"])
def test_installing_dataprep_or_common_brings_no_training_stack(package):
    reached = _reachable(package)
    assert {"datasets", "huggingface-hub", "numpy", "pillow"} <= reached  # the walk does follow the requirements
    assert not reached & set(TRAINING_STACK), sorted(reached & set(TRAINING_STACK))


@pytest.mark.parametrize("package", ["radtune-llava-vqa", "radtune-captioning", "radtune-contrastive"])
def test_task_packages_bring_the_training_stack_through_the_extra(package):
    reached = _reachable(package)
    assert {"torch", "transformers", "trl", "peft", "accelerate"} <= reached
    assert ("bitsandbytes" in reached) == (package == "radtune-llava-vqa")


# Runs in a fresh interpreter: every meta-path finder is wrapped so that the training stack is "not installed" for
# `import` and for `importlib.util.find_spec` alike (datasets probes torch that way).
FLOW = textwrap.dedent(
    """
    import importlib
    import json
    import pkgutil
    import sys
    from pathlib import Path

    HIDDEN = {hidden!r}


    class WithoutTrainingStack:
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, fullname, path=None, target=None):
            if fullname.partition(".")[0] in HIDDEN:
                return None
            find_spec = getattr(self.finder, "find_spec", None)
            return find_spec(fullname, path, target) if find_spec else None

        def __getattr__(self, name):  # find_distributions (importlib.metadata), invalidate_caches, ...
            return getattr(self.finder, name)


    sys.meta_path[:] = [WithoutTrainingStack(finder) for finder in sys.meta_path]
    for name in HIDDEN:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit(f"{{name}} is still importable")

    import radtune.dataprep

    for module in pkgutil.walk_packages(radtune.dataprep.__path__, "radtune.dataprep."):
        importlib.import_module(module.name)

    from radtune.common.cli import cli

    work = Path(sys.argv[1])
    for args in (
        ["data", "phantoms", str(work / "phantoms"), "--n", "12", "--image-size", "64", "--workers", "1"],
        ["data", "build", "mimic-cxr", str(work / "phantoms"), str(work / "built"), "--num-proc", "1"],
        ["data", "qa", str(work / "built"), str(work / "qa"), "--generator", "rules", "--n-per-report", "3"],
        ["data", "info", str(work / "built")],
    ):
        cli.main(args, standalone_mode=False)
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in HIDDEN)
    print(json.dumps({{"loaded": loaded}}))
    """
)


def test_data_commands_run_without_the_training_stack(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", FLOW.format(hidden=set(TRAINING_STACK)), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"loaded": []}
    assert "wrote 12 mimic-cxr phantoms" in result.stdout
    built = json.loads((tmp_path / "built" / "build_report.json").read_text())
    assert sum(built["splits"].values()) == 12, built
    report = json.loads((tmp_path / "qa" / "qa_report.json").read_text())
    assert report["generator"] == "rules" and report["reports"] == 12
    assert sum(report["rows"].values()) > 12 and report["failures"] == []
    assert (tmp_path / "qa" / "dataset_dict.json").is_file() and (tmp_path / "qa" / "README.md").is_file()
