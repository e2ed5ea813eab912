"""The TOML writer (ste_core.config.toml) and the resolved config it writes."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ste_core.config import config_from_dict, dumps_toml, load_config
from tests.core.helpers import base_config, write_config

# Configs name backends, whose options are checked when the file is loaded.
pytestmark = pytest.mark.usefixtures("scripted_and_builtins")


def test_resolved_toml_round_trips(tmp_path: Path) -> None:
    data = base_config(tmp_path)
    data["evaluation"]["benchmarks"] = [{"name": "rb", "path": "rb.jsonl", "limit": 5}]
    data["generator"] = {
        "backend": "openai",
        "model": "g",
        "options": {"extra_body": {"a": [1, 2], "b": 'x\ny "q"'}},
    }
    cfg = load_config(write_config(tmp_path, data))
    text = cfg.model_dump_toml()
    again = config_from_dict(tomllib.loads(text))
    assert again == cfg


def test_dumps_toml_handles_odd_keys_and_values() -> None:
    data = {"a": {"weird key": 1.5, "s": 'tab\tquote"', "lst": [1, "x"], "t": {"k": True}}}
    assert tomllib.loads(dumps_toml(data)) == data
