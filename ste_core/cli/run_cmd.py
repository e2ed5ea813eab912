"""`ste run CONFIG.toml`: run (or resume) the Self-Taught Evaluator loop of a config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    try:
        if plan:
            from ste_core.config import load_config

            _print_plan(load_config(config, overrides=overrides))
            return
        pipeline = Pipeline.from_config(config, fresh=fresh, reporter=reporter, overrides=overrides)
        if stage:
            targets = [_parse_stage(s) for s in stage]

            async def only() -> None:
                try:
                    for name, it in targets:
                        await pipeline.stage(name, it)
                finally:
                    await pipeline.aclose()

            asyncio.run(only())
        else:
            result = pipeline.run_sync()
            reporter.close()
            _print_result(result, quiet=quiet or log_json)
    except ConfigurationError as exc:
        code = EXIT_CONFIG
        _fail(reporter, f"configuration error: {exc}")
    except BudgetExceeded as exc:
        code = EXIT_BUDGET
        _fail(reporter, f"stopped at the budget: {exc}")
    except FineTuneFailed as exc:
        code = EXIT_FINETUNE
        _fail(reporter, str(exc))
    except SteError as exc:
        code = EXIT_FAILED
        _fail(reporter, f"{type(exc).__name__}: {exc}")
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM (cancels the run)
        code = EXIT_INTERRUPTED
        _fail(reporter, "interrupted; state is saved: re-run the same command to resume")
    finally:
        reporter.close()
    if code:
        raise typer.Exit(code)


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
        typer.echo(
            f"  {step.iteration:>9}  {step.stage.name:<14} {judge:<8} {status:<8} "
            f"{step.stage.summary}"
        )
    typer.echo(
        "Adjacent steps that call the same judge share one serving session. "
        "`--stage NAME@ITERATION` runs one step."
    )


def _fail(reporter: object, message: str) -> None:
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
