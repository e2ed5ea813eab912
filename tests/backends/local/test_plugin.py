"""The local backend's plugin: registration, light import, and the missing-extra message."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from ste_core.errors import MissingDependencyError

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys, json\n"
        "import ste_backends.local.plugin\n"
        "from ste_backends.local import LocalFineTune, LocalInference\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "ste_backends.local.plugin" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_registered_through_the_entry_point() -> None:
    from ste_core.plugins import PluginHost

    host = PluginHost()
    host.load_entry_points({"local"})
    host._collect()
    info = host.backend("local")
    from ste_backends.local import LocalFineTune, LocalInference

    assert info.inference is LocalInference and info.finetune is LocalFineTune
    assert info.extra == "local"
    assert info.inference.capabilities.batch is True
    assert {m.value for m in info.finetune.capabilities.methods} == {"sft", "dpo", "grpo"}
    assert info.finetune.capabilities.continue_from_previous is True


@pytest.mark.parametrize("missing", ["trl", "torch"])
def test_missing_extra_names_the_pip_command(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    from ste_backends.local import LocalFineTune, LocalInference

    real = importlib.util.find_spec

    def fake_find_spec(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None if name == missing else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    with pytest.raises(MissingDependencyError) as info:
        LocalFineTune()
    assert "pip install 'self-taught-evaluators[local]'" in str(info.value)
    assert missing in info.value.missing
    if missing == "torch":
        with pytest.raises(MissingDependencyError, match=r"self-taught-evaluators\[local\]"):
            LocalInference()
    else:  # inference does not need TRL
        LocalInference()


def test_missing_extra_through_the_plugin_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from ste_core.plugins import PluginHost

    host = PluginHost()
    host.load_entry_points({"local"})
    host._collect()
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "peft" else real(name, *a, **k),
    )
    with pytest.raises(
        MissingDependencyError, match=r"pip install 'self-taught-evaluators\[local\]'"
    ):
        host.finetune_backend("local")
