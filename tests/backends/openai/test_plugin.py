"""The openai plugin: registered through the entry point, imported without the SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ste_backends.openai import OpenAIInference


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_registered_through_the_entry_point():
    from ste_core.plugins import PluginHost

    host = PluginHost()
    host.load_entry_points({"openai"})
    host._collect()
    info = host.backend("openai")
    assert info.inference is OpenAIInference and info.distribution == "self-taught-evaluators"
    backend = host.inference_backend("openai", base_url="http://127.0.0.1:1/v1", max_n=2)
    assert backend.name == "openai" and backend.capabilities.max_n == 2


def test_plugin_import_does_not_import_the_sdk():
    code = (
        "import sys, ste_backends.openai.plugin, ste_backends.openai; "
        "assert 'openai' not in sys.modules, 'openai imported'; "
        "assert 'httpx2' not in sys.modules, 'httpx2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
