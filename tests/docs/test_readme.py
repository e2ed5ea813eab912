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


def _first_bash_block(section: str) -> str:
    part = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)\n```", part, re.S)
    assert block, f"the {section} section has a bash block"
    return block.group(1).strip()


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """The Tests section starts with one command that installs the test dependencies and runs
    the whole suite, and CI runs exactly that (after the CPU torch)."""
    test_command = _first_bash_block("Tests")
    assert "\n" not in test_command, "one line, to copy and paste"
    install, _, run = test_command.partition(" && ")
    assert (
        install.startswith("pip install -e '.[dev,") and "./examples/ste-plugin-example" in install
    )
    assert run.startswith("pytest ") and "--record-mode=none --block-network" in run
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    lines = [line.strip() for line in ci.splitlines()]
    assert test_command in lines, ".ci/run runs the README's test command verbatim"
    assert lines.index("python -m pip install --quiet torch==2.13.0") < lines.index(test_command)
    assert [line for line in lines if line and not line.startswith("#")][-1] == test_command


def test_the_quickstart_says_torch_first_then_demo_then_the_real_quickstart() -> None:
    quickstart = README.split("## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    torch_note = quickstart.index(
        "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    )
    assert _first_bash_block("Quickstart") == "pip install '.[local]' && ste demo"
    demo = quickstart.index("ste demo")
    real = quickstart.index("ste run examples/quickstart.toml")
    assert torch_note < demo < real


def test_every_command_in_the_readme_exists() -> None:
    help_text = CliRunner().invoke(app, ["--help"]).output
    listed = set(re.findall(r"^\| `ste (\w+)", README, re.M))
    assert {"demo", "run", "evaluate", "report", "view", "backends", "templates"} <= listed
    for name in listed:
        assert re.search(rf"│ {name}\s", help_text), f"`ste {name}` is in the README, not the CLI"


def test_linked_documents_exist() -> None:
    for target in re.findall(r"\]\(((?:docs|examples|benchmarks)/[^)#]+)\)", README):
        assert (ROOT / target).exists(), target
