"""Every TOML snippet in the README and the docs is a configuration that works as printed.

A snippet is usually a fragment (a `[judge]` section, say): it is laid over a minimal complete
configuration and validated like a config file, and every backend it names is constructed with
the options it gives, through the plugin host, the way `ste run` does before its first call. A
misspelt key, an option the backend does not take or a value it refuses fails here, not on a
user's first run. No backend makes a network call when it is constructed.
"""

from __future__ import annotations

import re
import tomllib
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from ste_core.config import Config, config_from_dict
from ste_core.plugins import get_finetune_backend, get_inference_backend

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "ste-plugin-example" / "README.md",
]

#: the smallest complete configuration a fragment is laid over
BASE: dict[str, Any] = {
    "run": {"name": "doc-snippet", "iterations": 1},
    "data": {"path": "examples/data/instructions.jsonl"},
    "generator": {"backend": "openai", "model": "gpt-4o-mini"},
    "judge": {"backend": "openai", "model": "gpt-4o-mini"},
    "finetune": {"backend": "together"},
}
#: top-level tables of a pyproject.toml: snippets showing a plugin's packaging, not a run
PYPROJECT_TABLES = {"project", "build-system", "tool"}


def _snippets() -> list[Any]:
    params = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        for block in re.finditer(r"```toml\n(.*?)```", text, re.S):
            line = text.count("\n", 0, block.start()) + 1
            name = f"{doc.relative_to(ROOT)}:{line}"
            params.append(pytest.param(block.group(1), id=name))
    return params


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def test_the_documents_hold_snippets() -> None:
    # the README's own configuration, the three provider examples, and the docs' examples
    assert len(_snippets()) >= 10


@pytest.mark.parametrize("snippet", _snippets())
def test_a_documented_snippet_validates_and_builds_its_backends(
    snippet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys as a user would have them: in the environment (the config file refuses them).
    for var in ("OPENAI_API_KEY", "TOGETHER_API_KEY", "ANTHROPIC_API_KEY", "TOGETHERAI_API_KEY"):
        monkeypatch.setenv(var, "doc-test-key")
    fragment = tomllib.loads(snippet)
    if fragment.keys() <= PYPROJECT_TABLES:
        assert "entry-points" in fragment.get("project", {}), "a pyproject snippet shows the hook"
        return
    unknown = fragment.keys() - Config.model_fields.keys()
    assert not unknown, f"neither a run configuration nor a pyproject.toml: {sorted(unknown)}"
    data = _merge(BASE, fragment)
    if "run" in fragment:
        data = fragment  # a complete configuration: validated exactly as printed
    config = config_from_dict(data, base_dir=ROOT)

    built = []
    for role in ("generator", "judge"):
        if role in fragment:
            section = getattr(config, role)
            built.append(get_inference_backend(section.backend, **dict(section.options)))
    if "finetune" in fragment:
        ft = config.finetune
        built.append(get_finetune_backend(ft.backend, **dict(ft.options)))
        if ft.inference_options:
            built.append(get_inference_backend(ft.backend, **dict(ft.inference_options)))
    assert built or not ({"generator", "judge", "finetune"} & fragment.keys())


@pytest.mark.parametrize("backend", ["together", "openai", "litellm", "local"])
def test_every_backend_option_has_a_row_in_its_page(backend: str) -> None:
    """The option tables of docs/<backend>.md name every option of the backend's Options."""
    from ste_core.plugins import get_host

    text = (ROOT / "docs" / f"{backend}.md").read_text(encoding="utf-8")
    documented = {
        name
        for line in text.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([^`]+)`", line.split("|")[1])
    }
    info = get_host().backend(backend)
    declared = {o.name for kind in info.kinds for o in info.cls(kind).Options.option_infos()}
    assert sorted(declared - documented) == []
