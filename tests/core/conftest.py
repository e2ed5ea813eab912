"""Fixtures of the core tests that run on the scripted backends (which live in
tests/core/helpers.py: `from tests.core.helpers import ...`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ste_core.plugins import get_host, reset_host
from tests.core.helpers import ScriptedFineTune, ScriptedInference, _Plugin


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[ScriptedInference]]:
    """Register the scripted backends (fresh counters); only them: STE_PLUGINS is empty."""
    monkeypatch.setenv("STE_PLUGINS", "")
    reset_host()
    get_host().register_plugin(_Plugin(), name="scripted-test")
    ScriptedInference.calls = []
    ScriptedInference.fail_every = None
    ScriptedInference.delay_s = 0.0
    ScriptedInference.refuse = None
    ScriptedFineTune.jobs = {}
    ScriptedFineTune.submits = 0
    ScriptedFineTune.served = []
    ScriptedFineTune.torn_down = []
    ScriptedFineTune.fail_jobs = False
    ScriptedFineTune.endpoints = {}
    ScriptedFineTune.created = []
    ScriptedFineTune.reused = []
    yield ScriptedInference
    reset_host()


@pytest.fixture
def scripted_and_builtins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The scripted backends registered next to the built-in ones (configs of either validate)."""
    monkeypatch.delenv("STE_PLUGINS", raising=False)
    reset_host()
    get_host().register_plugin(_Plugin(), name="scripted-test")
    yield
    reset_host()
