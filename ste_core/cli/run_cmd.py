"""`ste run CONFIG.toml`: run (or resume) the Self-Taught Evaluator loop of a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

# Exit codes: distinct per kind of failure so batch jobs can react.
EXIT_CONFIG = 2
EXIT_BUDGET = 3
EXIT_FINETUNE = 4
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def run(
    config: Annotated[Path, typer.Argument(help="The run's TOML config file.")],
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Start over: delete this run's directory (store included)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars; warnings only.")
    ] = False,
    log_json: Annotated[
        bool, typer.Option("--log-json", help="One JSON object per line on stdout (batch jobs).")
    ] = False,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", "-n", min=1, help="Override run.iterations (extend a run)."),
    ] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            help="Run only this stage, as NAME or NAME@ITERATION (repeatable), e.g. --stage load "
            "--stage baseline@1. `--plan` lists the stages.",
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Print the plan (every stage at every iteration, in order, with the judge it "
            "calls and whether it is done) and exit; runs nothing.",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Preflight only: check the backends (options, packages, credentials) and print "
            "what the run still needs (requests, tokens, cost, fine-tune jobs, endpoints) against "
            "the budget. Sends nothing and writes nothing. Exit 0: ready; 2: a problem to fix; "
            "3: the estimate exceeds the budget.",
        ),
    ] = False,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="With --check: also send each model a 1-token request (costs one request per "
            "model) to prove it is reachable.",
        ),
    ] = False,
) -> None:
    """Run the loop: load -> split -> pairs -> judge -> select -> fine-tune -> evaluate, K times.

    Re-running the same command resumes: finished stages are skipped and answered requests come
    from the run's cache. Secrets come from the environment (e.g. TOGETHER_API_KEY).
    """
    import asyncio
    import logging

    from ste_core.errors import BudgetExceeded, ConfigurationError, FineTuneFailed, SteError
    from ste_core.pipeline import Pipeline
    from ste_core.run.progress import make_reporter

    reporter = make_reporter(quiet=quiet, log_json=log_json)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = {"run.iterations": iterations} if iterations is not None else None
    code = 0
    where: Path | None = None  # the run directory, once known: named at the start and on failure
    try:
        if plan:
            from ste_core.config import load_config

            _print_plan(load_config(config, overrides=overrides))
            return
        if probe and not check:
            raise ConfigurationError("--probe goes with --check (it probes before a run, only)")
        if check:
            code = _check(config, overrides, probe=probe, fresh=fresh)
        elif stage:
            pipeline = Pipeline.from_config(
                config, fresh=fresh, reporter=reporter, overrides=overrides
            )
            where = pipeline.rundir.root.resolve()
            reporter.info(f"run directory: {where}")
            targets = [_parse_stage(s) for s in stage]

            async def only() -> None:
                try:
                    for name, it in targets:
                        await pipeline.stage(name, it)
                finally:
                    await pipeline.aclose()

            asyncio.run(only())
        else:
            pipeline = Pipeline.from_config(
                config, fresh=fresh, reporter=reporter, overrides=overrides
            )
            where = pipeline.rundir.root.resolve()
            reporter.info(f"run directory: {where}")
            result = pipeline.run_sync()
            reporter.close()
            _print_result(result, quiet=quiet or log_json)
    except ConfigurationError as exc:
        code = EXIT_CONFIG
        _fail(reporter, f"configuration error: {exc}", where)
    except BudgetExceeded as exc:
        code = EXIT_BUDGET
        _fail(reporter, f"stopped at the budget: {exc}", where)
    except FineTuneFailed as exc:
        code = EXIT_FINETUNE
        _fail(reporter, str(exc), where)
    except SteError as exc:
        code = EXIT_FAILED
        _fail(reporter, f"{type(exc).__name__}: {exc}", where)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (cancels the run)
        code = EXIT_INTERRUPTED
        _fail(reporter, "interrupted; state is saved: re-run the same command to resume", where)
    finally:
        reporter.close()
    if code:
        raise typer.Exit(code)


def _check(config_path: Path, overrides: dict[str, Any] | None, *, probe: bool, fresh: bool) -> int:
    """`--check`: the preflight, printed; the exit code (ConfigurationError for a problem)."""
    import asyncio
    import contextlib

    from ste_core.config import load_config
    from ste_core.engine.store import RunStore
    from ste_core.errors import ConfigurationError
    from ste_core.run.preflight import preflight

    config = load_config(config_path, overrides=overrides)
    store_path = config.run_dir / "store.sqlite"
    with contextlib.ExitStack() as stack:
        # Read only, and only when it exists: --check never creates or changes a run.
        store = (
            stack.enter_context(RunStore.open_read_only(store_path))
            if store_path.exists() and not fresh
            else None
        )
        checked = asyncio.run(preflight(config, store=store, probe=probe))
    if checked.problems:
        raise ConfigurationError(
            "preflight: nothing was sent.\n" + "\n".join(f"  {p}" for p in checked.problems)
        )
    assert checked.estimate is not None
    over = checked.estimate.over_budget()
    _print_estimate(checked.estimate, over)
    return EXIT_BUDGET if over else 0


def _print_estimate(estimate: object, over: list[str]) -> None:
    """The estimate as a table, then its totals, notes and budget problems."""
    import shutil

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ste_core.run.preflight import PlanEstimate, Work

    assert isinstance(estimate, PlanEstimate)
    # Piped or captured output still gets the whole table rather than columns cut to 80.
    console = Console(width=max(shutil.get_terminal_size((120, 24)).columns, 120))

    def figures(work: Work) -> list[str]:
        bound = "≤" if work.upper_bound else ""
        cost = estimate.cost_usd(work)
        requests = "unknown" if work.requests is None else f"{bound}{work.requests}"
        jobs = ""
        if work.finetune_jobs:
            ft = work.finetune_cost_usd
            jobs = f"{work.finetune_jobs} × " + ("$?" if ft is None else f"${ft:.4f}")
        return [
            requests,
            str(work.cached) if work.cached else "",
            f"{bound}{work.prompt_tokens}" if work.prompt_tokens else "",
            f"{bound}{work.completion_tokens}" if work.completion_tokens else "",
            ("unpriced" if cost is None else f"{bound}${cost:.4f}") if work.requests else "",
            jobs,
        ]

    config = estimate.config
    table = Table(title=escape(f"preflight of run '{config.run.name}' ({config.run_dir})"))
    table.add_column("iter", justify="right")
    for name in ("stage", "status"):
        table.add_column(name, no_wrap=True)
    for name in ("requests", "cached", "prompt tok", "output tok", "cost", "ft jobs"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("note")
    for step in estimate.steps:
        if step.done:
            table.add_row(str(step.iteration), step.stage, "done", *[""] * 6, "")
            continue
        table.add_row(
            str(step.iteration), step.stage, "to do", *figures(step.work), escape(step.work.note)
        )
    table.add_section()
    table.add_row("", "total", "", *figures(estimate.total), "")
    console.print(table)
    console.print(estimate.summary(), markup=False, highlight=False)
    b = config.budget
    limits = [f"max_requests = {b.max_requests}"] if b.max_requests is not None else []
    if b.max_cost_usd is not None:
        limits.append(f"max_cost_usd = ${b.max_cost_usd:.4f}")
    spent = f"spent so far: {estimate.spent_requests} requests, ${estimate.spent_usd:.4f}"
    console.print(f"budget: {', '.join(limits) or 'no limit'}; {spent}", markup=False)
    for note in estimate.notes():
        console.print(f"note: {note}", markup=False, highlight=False)
    for line in over:
        console.print(f"problem: {line}", style="bold red", markup=False, highlight=False)
    if not over:
        console.print("ready: nothing was sent; `ste run` without --check starts the run.")


def _parse_stage(text: str) -> tuple[str, int]:
    """NAME@ITERATION; a bare NAME means the first iteration the stage runs at."""
    from ste_core.errors import ConfigurationError
    from ste_core.stages import stage_named

    name, _, it = text.partition("@")
    if it:
        if not it.isdigit():
            raise ConfigurationError(f"--stage {text!r}: the iteration after '@' must be a number")
        return name, int(it)
    return name, stage_named(name).iterations(1)[0]


def _print_plan(config: object) -> None:
    """The schedule of a config, one line per step, with what the run directory says is done."""
    from ste_core.config import Config
    from ste_core.engine.store import RunStore
    from ste_core.pipeline import schedule

    assert isinstance(config, Config)
    steps = schedule(config, config.run.iterations)
    store_path = config.run_dir / "store.sqlite"
    done: dict[int, dict[str, dict[str, int]]] = {}
    if store_path.exists():
        with RunStore.open_read_only(store_path) as store:
            done = store.all_stage_counts()
    typer.echo(f"plan of run '{config.run.name}' ({config.run_dir}), {len(steps)} steps:")
    typer.echo(f"  {'iteration':>9}  {'stage':<14} {'judge':<8} {'status':<8} what")
    for step in steps:
        judge = "–" if step.judge is None else f"M_{step.judge}"
        status = "done" if step.stage.name in done.get(step.iteration, {}) else "to do"
        what = step.stage.summary
        if step.stage.note is not None:
            what += f" ({step.stage.note(config, step.iteration)})"
        typer.echo(f"  {step.iteration:>9}  {step.stage.name:<14} {judge:<8} {status:<8} {what}")
    typer.echo(
        "Adjacent steps that call the same judge share one serving session. "
        "`--stage NAME@ITERATION` runs one step."
    )


def _fail(reporter: object, message: str, run_dir: Path | None = None) -> None:
    if run_dir is not None:
        message += f"\nrun directory: {run_dir}"
    from ste_core.run.progress import JsonReporter

    if isinstance(reporter, JsonReporter):
        reporter.emit("error", message=message)
    typer.echo(message, err=True)


def _print_result(result: object, *, quiet: bool) -> None:
    if quiet:
        return
    run_dir = result.run_dir  # type: ignore[attr-defined]
    summary = Path(run_dir) / "summary.md"
    if summary.exists():
        typer.echo(summary.read_text(encoding="utf-8"))
    typer.echo(f"run directory: {run_dir}")
