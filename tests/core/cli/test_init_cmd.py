"""`ste init`: a starting config per provider that loads as written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ste_core.cli.app import app
from ste_core.config import load_config
from ste_core.config.scaffold import PROVIDERS

runner = CliRunner()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_provider_config_loads_as_written(tmp_path: Path, provider: str) -> None:
    out = tmp_path / "ste.toml"
    (tmp_path / "mine.jsonl").write_text('{"instruction": "hi"}\n')
    res = runner.invoke(
        app, ["init", "--provider", provider, "--out", str(out), "--data", "mine.jsonl"]
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {out.resolve()}" in res.output and "next: ste run" in res.output
    text = out.read_text()
    assert text.startswith(f"# ste config for the {provider} provider")
    config = load_config(out)  # every key is one the loader accepts; backends and options too
    assert Path(config.data.path or "") == (tmp_path / "mine.jsonl").resolve()
    assert "API_KEY=" not in text.replace("export TOGETHER_API_KEY=...", "")
    assert tomllib.loads(text)["run"]["name"] == "my-judge"


def test_init_refuses_to_overwrite_and_names_the_choices(tmp_path: Path) -> None:
    out = tmp_path / "ste.toml"
    out.write_text("# mine\n")
    res = runner.invoke(app, ["init", "-p", "local", "-o", str(out)])
    assert res.exit_code == 2 and "exists; --force overwrites it" in res.output
    assert out.read_text() == "# mine\n"
    res = runner.invoke(app, ["init", "-p", "vllm", "-o", str(tmp_path / "x.toml")])
    assert res.exit_code == 2 and "choose one of: local, together" in res.output
    res = runner.invoke(app, ["init", "-o", str(tmp_path / "y.toml")], input="")
    assert res.exit_code == 2 and "give --provider" in res.output
    res = runner.invoke(
        app, ["init", "-p", "together", "-m", "my/model", "-o", str(out), "--force"]
    )
    assert res.exit_code == 0 and 'model = "my/model"' in out.read_text()
