"""`ste view`: browse runs' judgements in the browser (a local server; Ctrl-C stops it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def view(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run directories (runs/NAME).")],
    host: Annotated[
        str, typer.Option("--host", help="Address to serve on (keep 127.0.0.1: no login).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help=r"Port \[default: a free one].")] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the viewer in a web browser.")
    ] = False,
) -> None:
    """Browse judgements, accuracy, funnel and cost of runs in a local web app."""
    from ste_core.run.rundir import RunDir
    from ste_core.view.server import make_server

    missing = [str(d) for d in run_dirs if not d.is_dir()]
    if missing:
        typer.echo(f"error: not a directory: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    not_runs = [str(d.resolve()) for d in run_dirs if not RunDir(d).looks_like_run()]
    if not_runs:
        typer.echo(
            f"error: not a ste run directory (no store.sqlite or manifest.json): "
            f"{', '.join(not_runs)}. Give a run directory such as runs/NAME.",
            err=True,
        )
        raise typer.Exit(2)
    try:
        server = make_server([d.resolve() for d in run_dirs], host=host, port=port)
    except OSError as exc:
        typer.echo(
            f"error: cannot serve on {host}:{port} ({exc.strerror or exc}). Choose another "
            "--port, or leave it out for a free one.",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(f"ste view: {len(run_dirs)} run(s) at {server.url}  (Ctrl-C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        server.server_close()
