"""`ste status RUN_DIR` (one run, also while it runs) and `ste runs [DIR]` (every run in DIR)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer


def status(
    run_dir: Annotated[Path, typer.Argument(help="The run directory (runs/NAME).")],
) -> None:
    """Show a run's state: stages done, the current stage and its progress, budget used, what is
    open at the provider, and each judge's accuracy. Safe while the run is going."""
    from ste_core.run.status import read_status

    try:
        st = read_status(run_dir)
    except FileNotFoundError:
        typer.echo(f"error: {run_dir.resolve()} is not a run directory (no store.sqlite)", err=True)
        raise typer.Exit(2) from None
    m = st.manifest
    name = m.name if m and m.name else run_dir.name
    typer.echo(f"run {name!r} ({st.root.resolve()}): {st.state}")
    if m is not None and m.sessions:
        typer.echo(f"  sessions: {len(m.sessions)}, the last started {m.sessions[-1].started}")
    typer.echo(f"  stages done: {st.stages_done}{_of_plan(st.root)}")
    typer.echo(f"  now: {_current(st.live, st.alive)}")
    typer.echo(f"  spent: {st.requests} provider requests, ${st.spent_usd:.4f}")
    for r in st.open_resources:
        cost = r.accrued_usd()
        money = f", about ${cost:.2f} so far" if cost is not None else ""
        typer.echo(f"  open at {r.backend}: {r.label()} ({r.state}{money})")
    for it, metrics in sorted(st.metrics.items()):
        typer.echo(f"  M{it} {metrics.judge_model}: {metrics.eval.summary()}")


def _of_plan(root: Path) -> str:
    """' of N' steps in the run's plan (from its resolved config), or '' if it cannot be read."""
    from ste_core.config import load_config
    from ste_core.pipeline import schedule

    try:
        config = load_config(root / "config.toml")
    except Exception:  # an old or edited config: the count alone still says something
        return ""
    return f" of {len(schedule(config, config.run.iterations))}"


def _current(live: dict[str, Any] | None, alive: bool | None) -> str:
    if live is None:
        return "unknown (no status.json: the run has not started a session with this version)"
    if alive is False or live.get("closed"):
        return "no session is running"
    stage = live.get("stage")
    if not stage:
        return "between stages" + (
            f" (last: {live['last_finished']})" if live.get("last_finished") else ""
        )
    label = f"{stage}@{live.get('iteration', 0)}"
    if live.get("phase"):
        label += f" ({live['phase']})"
    done, total = live.get("done") or 0, live.get("total")
    parts = [f"{done}/{total}" if total else f"{done} done"]
    if live.get("errors"):
        parts.append(f"{live['errors']} errors")
    rate = live.get("rate_per_s") or 0
    if rate:
        parts.append(f"{rate:.1f}/s")
        if total and done < total:
            parts.append(f"about {(total - done) / rate:.0f} s left")
    ft = live.get("finetune")
    if ft:
        what = ft.get("phase") or ft["status"]
        if ft.get("step") is not None and ft.get("total_steps"):
            what += f", step {ft['step']}/{ft['total_steps']}"
        elif ft.get("progress") is not None:
            what += f" {ft['progress']:.0%}"
        if ft.get("loss") is not None:
            what += f", loss {ft['loss']:.3f}"
        if (ft.get("metrics") or {}).get("reward") is not None:
            what += f", reward {ft['metrics']['reward']:.3f}"
        parts.append(f"fine-tune job {ft['job_id']}: {what}")
    age = time.time() - float(live.get("updated") or 0)
    return f"{label}: {', '.join(parts)} (updated {age:.0f} s ago)"


def runs(
    directory: Annotated[Path, typer.Argument(help="Where runs live (run.output_dir).")] = Path(
        "runs"
    ),
) -> None:
    """List the runs in a directory: status, iterations, best judge and its accuracy, cost."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from ste_core.run.status import read_status

    found = sorted(p.parent for p in directory.glob("*/store.sqlite"))
    if not found:
        typer.echo(f"no runs in {directory.resolve()}")
        return
    table = Table(title=f"runs in {directory}")
    for col in ("run", "status", "judges", "best judge", "accuracy", "requests", "cost"):
        table.add_column(col, overflow="fold")
    for root in found:
        try:
            st = read_status(root)
        except Exception as exc:  # one unreadable run must not hide the others
            table.add_row(Text(root.name), Text(f"unreadable: {exc}"), "", "", "", "", "")
            continue
        best = st.best()
        cells = (
            root.name,
            st.state.split(" (")[0],
            str(len(st.metrics)),
            f"M{best.iteration} {best.judge_model}" if best else "–",
            f"{best.eval.accuracy or 0.0:.3f} ({best.eval.errors_note()})" if best else "–",
            str(st.requests),
            f"${st.spent_usd:.2f}",
        )
        table.add_row(*(Text(c) for c in cells))  # names are text, never rich markup
    Console().print(table)
