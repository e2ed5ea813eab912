"""`ste report`: the report files of a run directory."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ste_core.cli.app import app
from tests.core.rundirs import make_run

runner = CliRunner()


def test_report_command(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", [0.6, 0.8])
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    for name in ("report.md", "report.html", "accuracy.png", "funnel.png", "cost.png"):
        assert (run / name).stat().st_size > 0
        assert f"wrote {run / name}" in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 2


def test_report_open_hands_the_html_to_the_browser(tmp_path: Path, monkeypatch) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    run = make_run(tmp_path, "r", [0.6, 0.8])
    res = runner.invoke(app, ["report", str(run), "--open"])
    assert res.exit_code == 0, res.output
    assert opened == [(run / "report.html").resolve().as_uri()]
