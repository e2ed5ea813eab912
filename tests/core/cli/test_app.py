"""The `ste` console script: --version, and errors as one message without a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from ste_core import __version__
from ste_core.cli import app as app_module
from ste_core.cli.app import app, main


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


def test_shell_completion_is_offered() -> None:
    out = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in out.output
