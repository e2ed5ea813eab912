"""`ste report`: report.md, report.html and accuracy.png for one or several run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (runs/NAME).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help=r"Output directory \[default: the run dir; ./ste-report for several]."
        ),
    ] = None,
    open_: Annotated[
        bool, typer.Option("--open", help="Open report.html in the web browser afterwards.")
    ] = False,
) -> None:
    """Write a report (Markdown, self-contained HTML, accuracy plot) for run directories."""
    from ste_core.evaluation.report import write_report

    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        typer.echo(f"error: not a directory: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    files = write_report(run_dirs, out)
    for note in files.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {files.markdown}")
    typer.echo(f"wrote {files.html}")
    if files.png is not None:
        typer.echo(f"wrote {files.png}")
    if open_:
        import webbrowser

        if not webbrowser.open(Path(files.html).resolve().as_uri()):
            typer.echo("note: no web browser found here; open the HTML file above", err=True)
