"""The README is part of the product: its examples must be true."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from ste_core.cli.app import app
from ste_core.config import config_from_dict

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def test_the_readme_config_example_is_a_valid_config() -> None:
    configs = [tomllib.loads(b) for b in _blocks("toml") if "[run]" in b]
    assert configs, "the README shows a run configuration"
    for data in configs:
        config_from_dict(data, base_dir=ROOT)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    section = README.split("## Tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.S)
    assert command, "the Tests section starts with the command"
    test_command = command.group(1).strip()
    assert test_command.startswith("pytest ")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"python -m {test_command}" in ci


def test_every_command_in_the_readme_exists() -> None:
    help_text = CliRunner().invoke(app, ["--help"]).output
    listed = set(re.findall(r"^\| `ste (\w+)", README, re.M))
    assert {"run", "evaluate", "report", "backends", "templates"} <= listed
    for name in listed:
        assert re.search(rf"│ {name}\s", help_text), f"`ste {name}` is in the README, not the CLI"


def test_linked_documents_exist() -> None:
    for target in re.findall(r"\]\(((?:docs|examples|benchmarks)/[^)#]+)\)", README):
        assert (ROOT / target).exists(), target
