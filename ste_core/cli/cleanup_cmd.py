"""`ste cleanup RUN_DIR`: list, and with --yes tear down, what a run left live at a provider."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def cleanup(
    run_dir: Annotated[Path, typer.Argument(help="The run directory (runs/NAME).")],
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Tear down what is live (without it: only list, a dry run)."),
    ] = False,
) -> None:
    """List what a run left live (and billing) at the provider; --yes tears it down.

    Endpoints, batch jobs and fine-tune jobs the run's ledger holds open, with the provider's
    state and the cost so far. For a run you abandon: a run you resume cleans up by itself.
    """
    import asyncio

    from ste_core.config import load_config
    from ste_core.engine.store import RunStore
    from ste_core.errors import ConfigurationError
    from ste_core.run.cleanup import find_open, tear_down
    from ste_core.run.rundir import RunDir

    rundir = RunDir(run_dir)
    if not rundir.store_path.exists() or not rundir.config_path.exists():
        typer.echo(
            f"error: {run_dir} is not a run directory (no store.sqlite / config.toml)", err=True
        )
        raise typer.Exit(2)
    try:
        config = load_config(rundir.config_path)
    except ConfigurationError as exc:
        typer.echo(f"error: {rundir.config_path}: {exc}", err=True)
        raise typer.Exit(2) from None
    store = RunStore(rundir.store_path)
    try:
        manifest = store.manifest()
        if yes and manifest is not None and manifest.status == "running":
            typer.echo(
                "warning: the run's last session is marked running; if it is still alive, stop "
                "it first (Ctrl-C): this tears down what it is using.",
                err=True,
            )
        found = asyncio.run(find_open(config, store))
        if not found:
            typer.echo(f"{run_dir}: nothing the run created is open; nothing to clean up.")
            return
        now = time.time()
        typer.echo(f"{run_dir}: {len(found)} open in the run's ledger:")
        for item in found:
            r = item.resource
            cost = r.accrued_usd(now)
            money = f", about ${cost:.2f} so far" if cost is not None else ""
            if item.error is not None:
                where = f"could not be looked up ({item.error})"
            elif item.state is None:
                where = "gone at the provider"
            else:
                where = f"live: {item.state}"
            minutes = r.uptime_s(now) / 60
            typer.echo(
                f"  {r.label()} [{r.backend}], created {minutes:.0f} min ago{money}: {where}"
            )
        if not yes:
            live = sum(item.live for item in found)
            typer.echo(f"dry run: {live} to tear down. Re-run with --yes to stop and delete them.")
            return
        failed = 0
        for item, what in asyncio.run(tear_down(config, store, found)):
            failed += what.startswith("FAILED")
            typer.echo(f"  {item.resource.label()}: {what}")
        if failed:
            typer.echo(
                f"{failed} could not be torn down: remove them in the provider's console.", err=True
            )
            raise typer.Exit(1)
    finally:
        store.close()
