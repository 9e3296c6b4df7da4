"""Suite-wide set-up: an isolated, offline Hugging Face environment and session-scoped tiny models.

The environment is set at import time, before any test module imports huggingface_hub, datasets or
transformers: they read it once, at import.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

_HF_HOME = tempfile.mkdtemp(prefix="radtune-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the real Hub
# The Hub tests talk to a local Hub-compatible server (`hub_server` below) from a subprocess whose environment points
# at it before anything imports huggingface_hub; this process stays offline.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """`tiny_model(kind)` → folder of a tiny model of that kind, built once per test session."""
    from radtune.common.tiny import build_tiny

    built = {}

    def get(kind: str):
        if kind not in built:
            built[kind] = build_tiny(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
        return built[kind]

    return get


@pytest.fixture(scope="session")
def hub_server():
    """A local Hub-compatible server (tests/hub_server.py) on 127.0.0.1, port 0, for the whole session.

    Clients must run in a subprocess started with `env={**os.environ, **hub_server.client_env(hf_home)}`:
    huggingface_hub, datasets and transformers read the endpoint and offline mode once, at import.
    """
    spec = importlib.util.spec_from_file_location("radtune_test_hub_server", Path(__file__).with_name("hub_server.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # any pytest import mode
    spec.loader.exec_module(module)
    with module.HubServer() as server:
        yield server


@pytest.fixture(scope="session")
def lora_step():
    """`lora_step(model, loss_fn, target_modules)`: wrap `model` in LoRA, take one AdamW step on `loss_fn(model)` and
    check the loss is finite, only adapter weights are trainable, and the step changed some of them and nothing
    else. The tiny-model tests of each task package share it."""
    import torch
    from peft import LoraConfig, get_peft_model

    def step(model, loss_fn, target_modules):
        torch.manual_seed(0)
        assert torch.isfinite(loss_fn(model))
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=target_modules))
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        assert trainable and all("lora_" in name for name in trainable)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        loss = loss_fn(model)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        after = dict(model.named_parameters())
        changed = {name for name in before if not torch.equal(before[name], after[name].detach())}
        assert changed, "the optimizer step changed no adapter weight"
        assert changed <= trainable, f"frozen weights changed: {sorted(changed - trainable)[:5]}"

    return step


@pytest.fixture(scope="session")
def fresh_cli():
    """`fresh_cli(*args)`: run `radtune ARGS` through click in a fresh interpreter (the test process has torch and
    the task packages loaded already) and return `(exit_code, output, loaded)`, `loaded` being every module whose
    top-level package is torch, transformers, tokenizers, datasets, trl, peft or accelerate, or that belongs to a task
    package."""
    import json
    import subprocess

    code = (
        "import sys, json\n"
        "from click.testing import CliRunner\n"
        "from radtune.common.cli import cli\n"
        "result = CliRunner().invoke(cli, sys.argv[1:])\n"
        "heavy = ('torch', 'transformers', 'tokenizers', 'datasets', 'trl', 'peft', 'accelerate')\n"
        "tasks = ('radtune.llava_vqa', 'radtune.captioning', 'radtune.contrastive')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(tasks))\n"
        "print(json.dumps({'code': result.exit_code, 'output': result.output, 'loaded': loaded}))\n"
    )

    def run(*args: str) -> tuple[int, str, list[str]]:
        completed = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
        report = json.loads(completed.stdout.strip().splitlines()[-1])
        return report["code"], report["output"], report["loaded"]

    return run


@pytest.fixture(scope="session")
def generation_spies():
    """`spy(trainer)` → `(generated, returned)`: the rows of each generation call the trainer's `generation_eval`
    makes, and for each batch of the Trainer's own eval loop whether it returned predictions (logits or ids)."""

    def spy(trainer) -> tuple[list[int], list[bool]]:
        generated: list[int] = []
        returned: list[bool] = []
        generate, prediction_step = trainer.generation_eval.generate, trainer.prediction_step

        def recording_generate(model, rows):
            generated.append(len(rows))
            return generate(model, rows)

        def recording_step(*args, **kwargs):
            loss, predictions, labels = prediction_step(*args, **kwargs)
            returned.append(predictions is not None)
            return loss, predictions, labels

        trainer.generation_eval.generate, trainer.prediction_step = recording_generate, recording_step
        return generated, returned

    return spy


@pytest.fixture(scope="session")
def exact_resume(tmp_path_factory):
    """`exact_resume(train, name, steps=4, save_steps=2, resume_at=2)`: the check every trainer's resume passes.

    `train(output_dir, *flags)` runs a training module's `main` with its own fast flags (`--logging_steps 1`, no
    final evaluation) plus `flags`. The run is trained `steps` steps uninterrupted, saving every `save_steps`; then
    `checkpoint-<resume_at>` alone is copied into a fresh output_dir and training resumes from it with
    `--resume_from_checkpoint true`. The losses logged after the resume point must equal the uninterrupted run's,
    and so must the final saved weights (relative tolerance 1e-5: float32). `damage(folder)`, when given, also copies
    the next checkpoint and damages it (an incomplete save), which the resume must skip. Returns both output
    folders.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import load_file

    def losses(folder) -> dict[int, float]:
        history = json.loads((folder / "trainer_state.json").read_text())["log_history"]
        return {row["step"]: row["loss"] for row in history if "loss" in row}

    def weights(folder) -> dict[str, torch.Tensor]:
        files = [path for path in sorted(folder.rglob("*.safetensors"))
                 if not path.relative_to(folder).parts[0].startswith("checkpoint-")]  # fmt: skip
        assert files, f"no saved weights in {folder}"
        return {f"{path.relative_to(folder)}:{key}": value for path in files for key, value in load_file(path).items()}

    def check(train, name: str, steps: int = 4, save_steps: int = 2, resume_at: int = 2, damage=None):
        root = tmp_path_factory.mktemp(f"resume-{name}")
        flags = ["--max_steps", str(steps), "--save_strategy", "steps", "--save_steps", str(save_steps)]
        train(root / "full", *flags)
        checkpoint = f"checkpoint-{resume_at}"
        shutil.copytree(root / "full" / checkpoint, root / "resumed" / checkpoint)
        if damage is not None:  # the next checkpoint, as a kill while it was being written leaves it
            later = root / "resumed" / f"checkpoint-{resume_at + save_steps}"
            shutil.copytree(root / "full" / later.name, later)
            damage(later)
        train(root / "resumed", *flags, "--resume_from_checkpoint", "true")

        full, resumed = losses(root / "full"), losses(root / "resumed")
        after = sorted(step for step in full if step > resume_at)
        assert after and sorted(step for step in resumed if step > resume_at) == after
        assert [resumed[step] for step in after] == pytest.approx([full[step] for step in after], rel=1e-5), (
            f"losses after step {resume_at} differ from the uninterrupted run's"
        )
        expected, actual = weights(root / "full"), weights(root / "resumed")
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            scale = float(value.abs().max()) if value.numel() and value.is_floating_point() else 0.0
            torch.testing.assert_close(actual[key], value, rtol=1e-5, atol=1e-5 * scale, msg=f"final weight {key}")
        return root / "full", root / "resumed"

    return check
