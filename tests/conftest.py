"""Suite-wide set-up: an isolated, offline Hugging Face environment and session-scoped tiny models.

The environment is set at import time, before any test module imports huggingface_hub, datasets or
transformers: they read it once, at import.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_HF_HOME = tempfile.mkdtemp(prefix="radtune-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the suite may reach the real Hub
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
