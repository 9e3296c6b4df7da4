"""Fixtures of the common tests: Java checks and one METEOR process for the whole session (its JVM takes 10-30 s
to start, so tests borrow this one instead of starting their own)."""

from __future__ import annotations

import shutil
import types

import pytest

NO_JAVA = "needs Java for pycocoevalcap's PTB tokenizer and METEOR (apt-get install default-jre-headless)"


@pytest.fixture
def java():
    """Skip the test cleanly when no `java` executable is on the PATH."""
    if shutil.which("java") is None:
        pytest.skip(NO_JAVA)


@pytest.fixture(scope="session")
def shared_meteor():
    """A started pycocoevalcap `Meteor`, shared by every test that needs one."""
    if shutil.which("java") is None:
        pytest.skip(NO_JAVA)
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    yield meteor
    del meteor


def lend_meteor(monkeypatch: pytest.MonkeyPatch, meteor) -> None:
    """Make radtune's CaptionScorer use `meteor` and leave it running when the scorer closes."""
    from radtune.common.metrics import captioning

    process = types.SimpleNamespace(
        stdin=types.SimpleNamespace(close=lambda: None), kill=lambda: None, wait=lambda: None
    )
    borrowed = types.SimpleNamespace(compute_score=meteor.compute_score, meteor_p=process)
    monkeypatch.setattr(captioning, "start_meteor", lambda: borrowed)


@pytest.fixture
def borrowed_meteor(shared_meteor, monkeypatch):
    """The shared METEOR, lent to every CaptionScorer the test creates."""
    lend_meteor(monkeypatch, shared_meteor)
    return shared_meteor


@pytest.fixture(scope="module")
def module_meteor(shared_meteor):
    """Like `borrowed_meteor`, for module-scoped fixtures."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        lend_meteor(monkeypatch, shared_meteor)
        yield shared_meteor
