"""The example configs load, and every backend option they set is one the backend accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ste_core.config import load_config
from ste_core.plugins import get_host

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIGS = sorted(EXAMPLES.glob("*.toml"))


def test_there_are_example_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"together-small.toml", "openai-compatible.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    if cfg.data.path is not None:  # a bundled example must run as shipped
        assert Path(cfg.data.path).exists(), f"{path.name}: data.path {cfg.data.path} is missing"
    host = get_host()
    roles = [
        (cfg.generator.backend, cfg.generator.options, "inference"),
        (cfg.judge.backend, cfg.judge.options, "inference"),
        (cfg.finetune.backend, cfg.finetune.options, "finetune"),
    ]
    for name, options, kind in roles:
        info = host.backends.get(name)
        assert info is not None, f"{path.name}: no backend {name!r} ({host.load_errors})"
        cls = getattr(info, kind)
        assert cls is not None, f"{name} has no {kind} backend"
        params = inspect.signature(cls.__init__).parameters
        unknown = [k for k in options if k not in params]
        assert not unknown, f"{path.name}: {name} does not accept {unknown}"


def test_every_config_key_is_documented() -> None:
    """docs/pipeline.md's key table has a row for every key of every section."""
    import re

    from pydantic import BaseModel

    from ste_core.config import Config

    doc = (EXAMPLES.parent / "docs" / "pipeline.md").read_text(encoding="utf-8")
    documented: set[str] = set()
    for line in doc.splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split("|")[1])
        section = names[0].split(".")[0]
        for name in names:
            documented.add(section + name if name.startswith(".") else name)
    expected = set()
    for section, field in Config.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        expected |= {f"{section}.{key}" for key in model.model_fields}
    assert sorted(expected - documented) == []
