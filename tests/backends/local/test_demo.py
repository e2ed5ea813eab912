"""`ste demo` (ste_backends/local/demo.py) without running it: the command is there, says what
to install when the extra is missing, keeps its model in the cache dir, and its config is valid.
The demo itself runs end to end in tests/e2e/test_demo.py."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ste_backends.local import demo as demo_module
from ste_core.cli.app import app
from ste_core.config import config_from_dict


def test_the_local_plugin_adds_ste_demo() -> None:
    help_text = CliRunner().invoke(app, ["--help"]).output
    assert re.search(r"│ demo\s+Try the whole loop", help_text)
    demo_help = CliRunner().invoke(app, ["demo", "--help"]).output
    assert "--out" in demo_help and "--fresh" in demo_help


@pytest.mark.parametrize("missing", ["torch", "trl"])
def test_without_the_local_extra_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, missing: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a, **k: None if name == missing else real(name)
    )
    out = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert out.exit_code == 2
    assert f"needs {missing}" in out.output
    assert "pip install 'self-taught-evaluators[local]'" in out.output
    assert "--index-url https://download.pytorch.org/whl/cpu" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "demo").exists()  # nothing written before the check


def test_the_cache_dir_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("STE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo_module.cache_dir() == tmp_path / "xdg" / "ste"
    monkeypatch.setenv("STE_CACHE_DIR", str(tmp_path / "mine"))
    assert demo_module.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("STE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert demo_module.cache_dir() == tmp_path / "home" / ".cache" / "ste"


def test_the_demo_config_and_its_bundled_instructions_are_valid(tmp_path: Path) -> None:
    from importlib import resources

    bundled = resources.files("ste_backends.local") / "data" / "demo_instructions.jsonl"
    rows = [json.loads(line) for line in bundled.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10 and all(row["instruction"] for row in rows)
    data = demo_module.demo_config(tmp_path, tmp_path / "model", tmp_path / "i.jsonl")
    config = config_from_dict(data, base_dir=tmp_path)
    assert config.run_dir == tmp_path / "runs" / "demo"
    assert config.run.iterations == 1  # M0 and M1: every stage once
    assert {config.generator.backend, config.judge.backend, config.finetune.backend} == {"local"}


def test_a_run_that_stops_says_where_it_is_and_how_to_start_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ste_core.errors import SteError
    from ste_core.pipeline import Pipeline

    def stop(self: Pipeline) -> None:
        raise SteError("eval_pairs: no eval pair survived generation")

    monkeypatch.setenv("STE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(demo_module, "demo_model", lambda cache, on_build=None: tmp_path / "m")
    monkeypatch.setattr(Pipeline, "run_sync", stop)
    out = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert out.exit_code == 1
    assert "error: the demo's run stopped: eval_pairs: no eval pair survived" in out.output
    assert f"run directory: {tmp_path / 'd' / 'runs' / 'demo'}" in out.output
    assert "`ste demo --fresh` starts it over" in out.output and "Traceback" not in out.output
