"""The Together plugin: registered through the entry point, imported without the SDK."""

from __future__ import annotations

import sys
from pathlib import Path

from ste_backends.together.inference import TogetherInference

KEY = "tgp_v1_unit-test-secret-key"


def test_plugin_registers_together_without_importing_the_sdk():
    code = (
        "import sys; import ste_backends.together.plugin, ste_backends.together.finetune, "
        "ste_backends.together.inference; "
        "assert not any(m == 'together' or m.startswith('together.') for m in sys.modules)"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_through_the_entry_point(monkeypatch):
    from ste_core import get_inference_backend, reset_host

    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("STE_PLUGINS", "together")
    reset_host()
    try:
        backend = get_inference_backend("together")
        assert isinstance(backend, TogetherInference) and backend.name == "together"
    finally:
        reset_host()


def test_files_here_are_named_for_the_test_package():
    # A `together` test package would shadow the SDK; this directory must stay a plain folder.
    assert not (Path(__file__).parent / "__init__.py").exists()
