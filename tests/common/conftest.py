"""Fixtures of the common tests: one METEOR process for the whole session (its JVM takes 10-30 s to start)."""

from __future__ import annotations

import shutil
import types

import pytest

requires_java = pytest.mark.skipif(
    shutil.which("java") is None,
    reason="needs Java for pycocoevalcap's PTB tokenizer and METEOR (apt-get install default-jre-headless)",
)


@pytest.fixture(scope="session")
def shared_meteor():
    """A started pycocoevalcap `Meteor`, shared by every test that needs one."""
    if shutil.which("java") is None:
        pytest.skip("needs Java for METEOR (apt-get install default-jre-headless)")
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    yield meteor
    del meteor


@pytest.fixture
def borrowed_meteor(shared_meteor, monkeypatch):
    """Make radtune's CaptionScorer use the shared METEOR process (and leave it running when it closes)."""
    from radtune.common.metrics import captioning

    noop = types.SimpleNamespace(close=lambda: None)
    borrowed = types.SimpleNamespace(
        compute_score=shared_meteor.compute_score,
        meteor_p=types.SimpleNamespace(stdin=noop, kill=lambda: None, wait=lambda: None),
    )
    monkeypatch.setattr(captioning, "start_meteor", lambda: borrowed)
    return shared_meteor
