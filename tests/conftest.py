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
