"""The `ste` console script: --version, errors as one message without a traceback, and the
commands plugins add (`register_commands`)."""

from __future__ import annotations

import json
import re
import sys

import pytest
import typer
from typer.testing import CliRunner

from ste_core import __version__, hookimpl
from ste_core.cli import app as app_module
from ste_core.cli.app import app, build_app, main
from ste_core.plugins import PluginHost


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ste", *args])
    monkeypatch.setattr(app_module, "_debug", False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_version_alone_prints_the_version() -> None:
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and out.output.strip() == f"ste {__version__}"


def test_a_user_error_is_one_line_and_no_traceback(monkeypatch, capsys) -> None:
    code = run_main(monkeypatch, "templates", "show", "judge_shortt")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: unknown template 'judge_shortt' (did you mean \"judge_short\"?)")
    assert "Traceback" not in err


def test_a_bug_says_so_and_debug_shows_the_traceback(monkeypatch, capsys) -> None:
    from ste_core.plugins import get_host

    def broken(name: str) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(get_host(), "template", broken)
    assert run_main(monkeypatch, "templates", "--show", "x") == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "ste --debug" in err
    assert "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["ste", "--debug", "templates", "--show", "x"])
    with pytest.raises(RuntimeError, match="boom"):
        main()


def test_templates_lists_and_shows_one() -> None:
    listing = CliRunner().invoke(app, ["templates", "--json"])
    assert listing.exit_code == 0 and '"name": "judge_short"' in listing.output
    shown = CliRunner().invoke(app, ["templates", "show", "judge_short"])
    assert shown.exit_code == 0 and "--- user ---" in shown.output
    assert CliRunner().invoke(app, ["templates", "--show", "judge_short"]).output == shown.output
    assert "--- verdict rule: final" in shown.output


def test_templates_show_the_verdict_rule_of_judge_templates() -> None:
    rows = json.loads(CliRunner().invoke(app, ["templates", "--json"]).output)
    rules = {r["name"]: r["verdict_rule"] for r in rows}
    assert rules["judge_meta_rewardbench"] == "meta" and rules["judge_short"] == "final"
    assert rules["worse_response"] is None
    table = CliRunner().invoke(app, ["templates"], env={"COLUMNS": "200"}).output
    assert "verdict (meta)" in table and "verdict (final)" in table


def test_shell_completion_is_offered() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in out.output


def test_the_commands_table_keeps_each_summary_whole() -> None:
    """The table of `ste --help` reflows a command's summary: its docstring's line breaks do
    not cut sentences in two."""
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    lines = [" ".join(line.strip("│ ").split()) for line in out.splitlines()]
    assert (
        "init Write a commented starting config for a provider; it runs as written once the data "
        "file and the key are there." in lines
    )
    assert any(
        line.startswith("status Show a run's state:")
        and line.endswith("Safe while the run is going.")
        for line in lines
    )


class _HelloPlugin:
    """A plugin that adds `ste hello` (and tries to replace `ste run`, when told to)."""

    def __init__(self, *, usurp: bool = False, fail: bool = False) -> None:
        self.usurp, self.fail = usurp, fail

    @hookimpl
    def register_commands(self, cli: typer.Typer) -> None:
        @cli.command("hello")
        def hello(name: str = "world") -> None:
            """Say hello from a plugin."""
            typer.echo(f"hello {name}")

        if self.usurp:

            @cli.command("run")
            def run() -> None:
                """Not the real run."""

        if self.fail:
            raise RuntimeError("half-way")


def _app_with(plugin: object) -> typer.Typer:
    host = PluginHost()
    host.register_plugin(plugin, name="hello-plugin")
    return build_app(host)


def test_a_plugin_command_is_in_help_and_runs() -> None:
    cli = _app_with(_HelloPlugin())
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert re.search(r"│ hello\s+Say hello from a plugin\.", help_text)
    assert re.search(r"│ run\s", help_text)  # the built-in commands are all still there
    out = CliRunner().invoke(cli, ["hello", "--name", "ste"])
    assert out.exit_code == 0 and out.output == "hello ste\n"


def test_a_plugin_cannot_replace_a_built_in_command(capsys: pytest.CaptureFixture[str]) -> None:
    cli = _app_with(_HelloPlugin(usurp=True))
    err = capsys.readouterr().err
    assert "warning: plugin 'hello-plugin'" in err and "`ste run`, which already exists" in err
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "Run the loop" in run_help and "Not the real run" not in run_help
    assert CliRunner().invoke(cli, ["hello"]).output == "hello world\n"


def test_a_failing_plugin_keeps_none_of_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    cli = _app_with(_HelloPlugin(fail=True))
    err = capsys.readouterr().err
    assert "failed in register_commands: RuntimeError('half-way')" in err
    assert "Traceback" not in err
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "hello" not in help_text and re.search(r"│ run\s", help_text)
