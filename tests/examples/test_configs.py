"""The example configs load, and the backend options they set validate against the backends'
Options models."""

from __future__ import annotations

from pathlib import Path

import pytest

from ste_core.config import load_config
from ste_core.plugins import finetune_options, inference_options

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
    # A wrong key or value raises ConfigurationError naming it under `where`.
    inference_options(cfg.generator.backend, cfg.generator.options, where="generator.options")
    inference_options(cfg.judge.backend, cfg.judge.options, where="judge.options")
    finetune_options(cfg.finetune.backend, cfg.finetune.options, where="finetune.options")
    if cfg.finetune.inference_options:
        inference_options(
            cfg.finetune.backend,
            cfg.finetune.inference_options,
            where="finetune.inference_options",
        )


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
