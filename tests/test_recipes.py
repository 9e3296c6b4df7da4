"""Every shipped recipe (`packages/*/recipes/*.yaml`) runs as its header documents it, on replicas, with tiny models.

A recipe's header lists the commands from the download to the evaluation. This module runs them in one shared
working folder (`runs/...` paths resolve there, as they would in a user's checkout):

- `radtune data build SOURCE SRC OUT`: SRC is the download (`~/data/...`); it is replaced by a replica of the
  source's on-disk layout written by `tests/dataprep/dataprep_layouts.py` (VQA-RAD, SLAKE and PathVQA with their
  published test sizes: 451, 1,061 and 6,719 questions). `radtune data phantoms` runs with `--n 48`.
  `radtune data qa ... --generator openai ...` runs with `--generator rules --no-balance` (no LLM endpoint here;
  same export format; every pair kept, so the replica's one validation report keeps a question). Each data command runs once per session; recipes sharing a dataset share its replica.
- the recipe's own training command (the one whose `--config` is the recipe) runs its module's `main` in-process with
  the recipe as written plus only: the tiny model of its architecture, CPU and float32, one step with a tiny
  batch, no trackers, the first 4 rows of the eval/test splits, and METEOR off (it starts a JVM).
- the evaluation command(s) run through `radtune`'s click group as written, plus `--max-samples 4` (and
  `--no-meteor` for captions). For the VQA benchmarks the test split holds the published number of rows (asserted
  on the built dataset); only its first 4 rows are answered here, to stay within the suite's budget.

Commands that only make the model the test replaces with a tiny one (`radtune tiny ...`, another recipe's training)
are not run. A recipe whose `dataset_name` no documented data command writes fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(ROOT.glob("packages/*/recipes/*.yaml"))
sys.path.insert(0, str(ROOT / "tests" / "dataprep"))

# The published test sizes the replicas copy (shared/docs/datasets.md; SLAKE: English questions).
PUBLISHED_TEST_ROWS = {"vqa-rad": 451, "slake": 1061, "pathvqa": 6719}
EVAL_ROWS = 4
TRAINING_MODULES = {
    ("vqa", "train"): "radtune.llava_vqa.train",
    ("caption", "train"): "radtune.captioning.train",
    ("caption", "train-vqa"): "radtune.captioning.train_vqa",
    ("clip", "train"): "radtune.contrastive.train",
}
EVALUATION_COMMANDS = {("vqa", "evaluate"), ("caption", "evaluate"), ("clip", "zero-shot"), ("clip", "retrieve")}

pytestmark = pytest.mark.slow


def header_commands(recipe: Path) -> list[list[str]]:
    """The commands of a recipe's leading comment block (`radtune …`, `python -m …`, `accelerate launch …`), with
    continuation lines joined and trailing comments dropped."""
    lines = []
    for line in recipe.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    commands, pending = [], ""
    for line in lines:
        text = f"{pending} {line}".strip() if pending else line
        if text.endswith("\\"):
            pending = text[:-1].strip()
            continue
        pending = ""
        if text.startswith(("radtune ", "python -m ", "accelerate launch ")):
            commands.append(shlex.split(text.split("  #")[0]))
    return commands


def _write_replica(source: str, root: Path) -> Path:
    import dataprep_layouts as layouts

    writers = {
        "vqa-rad": lambda: layouts.make_vqa_rad(root, rows={"train": 16, "test": PUBLISHED_TEST_ROWS["vqa-rad"]}),
        "slake": lambda: layouts.make_slake(
            root, rows={"train": 16, "validation": 8, "test": PUBLISHED_TEST_ROWS["slake"]}
        ),
        "pathvqa": lambda: layouts.make_pathvqa(
            root, rows={"train": 16, "validation": 8, "test": PUBLISHED_TEST_ROWS["pathvqa"]}
        ),
        "roco": lambda: layouts.make_roco_original(root),
        "rocov2": lambda: layouts.make_rocov2(root),
        "mimic-cxr": lambda: layouts.make_mimic(root),
        "chexpert-plus": lambda: layouts.make_chexpert_plus(root),
        "nih": lambda: layouts.make_nih(root),
    }
    if source not in writers:
        raise AssertionError(f"no replica writer for `radtune data build {source}`; add one to dataprep_layouts")
    return writers[source]()


def _radtune(args: list[str]):
    from click.testing import CliRunner

    from radtune.common.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, f"radtune {shlex.join(args)} failed:\n{result.output[-3000:]}"
    return result


class Workspace:
    """The shared working folder: replicas, data commands run once, the tiny models of each architecture."""

    def __init__(self, root: Path, tiny_model):
        self.root, self.tiny_model = root, tiny_model
        self.done: dict[str, list[str]] = {}  # normalized data command → the folders it wrote

    @contextlib.contextmanager
    def inside(self):
        with contextlib.chdir(self.root):
            yield

    def data_command(self, command: list[str]) -> str | None:
        """Run a documented data command (as the module docstring says); returns the folder it writes."""
        verb = command[2]
        args = list(command[1:])
        if verb == "build":
            source, src, out = command[3], command[4], command[5]
            if src.startswith(("~", "/")):
                replica = self.root / "downloads" / source
                if not replica.exists():
                    _write_replica(source, replica)
                args[3] = str(replica)
        elif verb == "qa":
            if "--generator" in args and args[args.index("--generator") + 1] == "openai":
                # every pair (no yes/no balancing): the 4-row replica's one validation report keeps a question
                args = args[: args.index("--generator")] + ["--generator", "rules", "--no-balance"]
            out = command[4]
        elif verb == "phantoms":
            args[args.index("--n") + 1] = "48"
            out = command[3]
        else:
            return None
        key = shlex.join(args)
        if key not in self.done:
            with self.inside():
                _radtune(args)
            self.done[key] = [out]
        return out


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, tiny_model):
    return Workspace(tmp_path_factory.mktemp("recipes"), tiny_model)


def _training(command: list[str], recipe: Path) -> tuple[str, list[str]] | None:
    """`(module, args)` of a training command whose `--config` is `recipe`, else None."""
    if command[0] == "radtune" and tuple(command[1:3]) in TRAINING_MODULES:
        module, args = (
            TRAINING_MODULES[tuple(command[1:3])],
            command[command.index("--") + 1 :] if "--" in command else [],
        )
    elif "-m" in command:
        position = command.index("-m")
        module, args = command[position + 1], command[position + 2 :]
    else:
        return None
    if "--config" not in args or Path(args[args.index("--config") + 1]).name != recipe.name:
        return None
    args = list(args)
    args[args.index("--config") + 1] = str(recipe)
    return module, args


def _overrides(module: str, parsed, workspace: Workspace) -> list[str]:
    """The flags the module docstring allows: tiny model, CPU/float32, one step, tiny batch, few evaluated rows."""
    script_args, training_args, model_args = parsed
    flags = ["--use_cpu", "true", "--bf16", "false", "--fp16", "false", "--max_steps", "1",
             "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2",
             "--gradient_accumulation_steps", "1", "--report_to", "none", "--dataloader_num_workers", "0",
             "--max_eval_samples", str(EVAL_ROWS)]  # fmt: skip
    if module == "radtune.llava_vqa.train":
        from radtune.llava_vqa.families import family_of_checkpoint

        try:  # the tiny kind of the recipe's architecture (a Hub checkpoint a family lists)
            kind = family_of_checkpoint(model_args.model_name_or_path).name
        except ValueError:  # a local model (the phantom recipe's runs/tiny-llava)
            kind = "llava"
        flags += ["--model_name_or_path", str(workspace.tiny_model(kind)), "--dtype", "float32"]
    elif module == "radtune.captioning.train_vqa":
        flags += ["--model_name_or_path", str(workspace.tiny_model("blip-vqa"))]
    elif module == "radtune.captioning.train":
        kind = {"vit-gpt2": "vit-gpt2", "blip": "blip-caption"}[script_args.architecture]
        flags += ["--model_name_or_path", str(workspace.tiny_model(kind)), "--meteor", "false"]
    elif module == "radtune.contrastive.train":
        if model_args.architecture == "dual-encoder":
            tiny = workspace.tiny_model("dual-encoder")
            flags += [
                "--text_model_name_or_path",
                str(tiny / "text"),
                "--image_model_name_or_path",
                str(tiny / "image"),
            ]
        else:
            flags += ["--model_name_or_path", str(workspace.tiny_model("clip"))]
    return flags


def _parse(module: str, args: list[str]):
    import importlib

    from radtune.common.config import parse_args_and_config

    return parse_args_and_config(importlib.import_module(module).make_parser(), args)


def _dataset_of(recipe: Path) -> str:
    import yaml

    config = yaml.safe_load(recipe.read_text())
    return config.get("dataset_name") or config["dataset"]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: f"{path.parents[1].name}/{path.stem}")
def test_recipe_runs_as_its_header_documents(recipe, workspace):
    import importlib

    from datasets import load_from_disk

    commands = header_commands(recipe)
    written = []
    for command in commands:
        if command[:2] == ["radtune", "data"]:
            written.append(workspace.data_command(command))

    # The dataset is what a documented command writes
    dataset = _dataset_of(recipe)
    assert dataset in written, f"{recipe.name}: no documented data command writes {dataset} (writes: {written})"
    built = load_from_disk(str(workspace.root / dataset))
    source = built[next(iter(built))][0].get("source") if "source" in built[next(iter(built))].column_names else None
    if source in PUBLISHED_TEST_ROWS:
        assert len(built["test"]) == PUBLISHED_TEST_ROWS[source], f"{dataset}: the test split is not the published one"

    # Train, with the recipe as written plus the allowed overrides
    trainings = [found for found in (_training(command, recipe) for command in commands) if found]
    evaluations = [c for c in commands if c[0] == "radtune" and tuple(c[1:3]) in EVALUATION_COMMANDS]
    assert trainings or evaluations, f"{recipe.name}: its header documents neither a training nor an evaluation"
    if trainings:
        module, args = trainings[0]
        with workspace.inside():
            parsed = _parse(module, [*args, "--use_cpu", "true"])  # transformers refuses bf16 without a GPU otherwise
            output_dir = Path(parsed[1].output_dir)
            parsed = _parse(module, args + _overrides(module, parsed, workspace))
            importlib.import_module(module).main(*parsed)
        state = json.loads((workspace.root / output_dir / "trainer_state.json").read_text())
        assert state["global_step"] == 1
        assert (workspace.root / output_dir / "run_info.json").is_file()
        losses = [row["train_loss"] for row in state["log_history"] if "train_loss" in row]
        assert losses and all(math.isfinite(loss) for loss in losses)

    # Evaluate as documented
    assert evaluations, f"{recipe.name}: its header documents no evaluation command"
    for command in evaluations:
        args = list(command[1:]) + ["--max-samples", str(EVAL_ROWS)]
        if command[1:3] == ["caption", "evaluate"]:
            args.append("--no-meteor")
        if not trainings:  # an evaluation config (nih_zero_shot): its model is a tiny CLIP here
            args = [str(recipe) if arg.endswith(recipe.name) else arg for arg in args]
            args += ["--model", str(workspace.tiny_model("clip"))]
        with workspace.inside():
            output = _radtune(args).output
        wrote = re.findall(r"(\S+metrics\.json)", output)
        assert wrote, f"{shlex.join(args)} wrote no metrics.json:\n{output[-2000:]}"
        metrics = json.loads((workspace.root / wrote[-1]).read_text())
        split = args[args.index("--split") + 1] if "--split" in args else "test"
        expected_rows = min(EVAL_ROWS, len(built[split]))
        assert metrics["meta"]["n"] == expected_rows, metrics["meta"]


def test_readme_reproduction_commands_are_the_recipes_headers():
    """The README's "Reproduce LLaVA-Med's table" commands are the VQA recipes' header commands, which the test
    above runs; so the README's commands run as written (on replicas)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Reproduce LLaVA-Med's table", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    listed = [shlex.split(line) for line in block.splitlines() if line and not line.startswith("#")]
    documented = [command for stem in ("vqa_rad", "slake", "pathvqa")
                  for command in header_commands(ROOT / "packages" / "llava_vqa" / "recipes" / f"{stem}.yaml")]  # fmt: skip
    assert listed == documented
