"""Fixtures every test group may use."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ste_core import hub


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def unreachable_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Hugging Face Hub endpoint that refuses connections, probed afresh (see ste_core.hub)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    hub.reset()
    yield endpoint
    hub.reset()


@pytest.fixture(scope="session")
def taught_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model taught for a few seconds to answer our templates parseably, its verdicts
    "[[A]]" or "[[B]]" at random (see ste_backends.local.testing): built once per session for
    the local backend's GRPO test and the local end-to-end runs."""
    pytest.importorskip("torch")
    from ste_backends.local.testing import PIPELINE_REPLIES, build_tiny_chat_model

    return build_tiny_chat_model(
        tmp_path_factory.mktemp("taught") / "tiny", replies=PIPELINE_REPLIES
    )
