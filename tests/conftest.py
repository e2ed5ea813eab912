"""Fixtures every test group may use."""

from __future__ import annotations

import socket
from collections.abc import Iterator

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
