"""An unreachable Hub costs one short probe, not huggingface_hub's minute of retries."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ste_core import hub
from tests.conftest import closed_port


def test_probe_tells_a_listening_endpoint_from_a_closed_one() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert hub.probe(f"http://127.0.0.1:{port}")
    assert not hub.probe(f"http://127.0.0.1:{closed_port()}")


def test_only_hub_ids_of_an_unreachable_hub_are_read_from_the_cache(
    unreachable_hub: str, tmp_path: Path
) -> None:
    assert hub.cache_only("org/model")
    assert not hub.cache_only(str(tmp_path))  # a local directory never goes to the Hub
    assert hub.cache_only(str(tmp_path), local_files_only=True)


def test_the_environment_skips_the_probe(
    unreachable_hub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe", lambda *a, **k: pytest.fail("probed"))
    assert not hub.cache_only("org/model")  # transformers reads HF_HUB_OFFLINE itself
