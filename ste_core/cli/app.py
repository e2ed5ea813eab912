"""Entry point of the `ste` console script: assembles the commands from their modules."""

from __future__ import annotations

import typer

from ste_core.cli import (
    backends_cmd,
    cleanup_cmd,
    evaluate_cmd,
    init_cmd,
    report_cmd,
    run_cmd,
    status_cmd,
    templates_cmd,
    view_cmd,
)

app = typer.Typer(
    name="ste",
    help="Self-Taught Evaluators: train an LLM-as-a-Judge without human labels.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)

# In the order a user meets them: the loop, measuring judges, then what is installed.
app.command("init")(init_cmd.init)
app.command("run")(run_cmd.run)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("score")(evaluate_cmd.score)
app.command("status")(status_cmd.status)
app.command("runs")(status_cmd.runs)
app.command("report")(report_cmd.report)
app.command("view")(view_cmd.view)
app.command("cleanup")(cleanup_cmd.cleanup)
app.command("backends")(backends_cmd.backends)
app.add_typer(templates_cmd.app, name="templates")


def _show_version(value: bool) -> None:
    if value:
        from ste_core import __version__

        typer.echo(f"ste {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,  # before the "missing command" check: `ste --version` alone works
        callback=_show_version,
        help="Show the version and exit.",
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the traceback of an error (for a bug report)."
    ),
) -> None:
    global _debug
    _debug = debug


#: set by --debug: errors are raised with their traceback instead of summarised
_debug = False


def _short_warning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
    # A user of the CLI needs the sentence, not the file and line of the warnings.warn call.
    return f"warning: {message}\n"


def main() -> None:
    """The console script: every error a person can meet is one message and an exit code, never
    a traceback (unless --debug)."""
    import warnings

    from ste_core.errors import SteError
    from ste_prompts.template import TemplateError

    warnings.formatwarning = _short_warning
    try:
        app()  # usage errors and --help are typer's (standalone mode); the rest comes here
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None
    except (SteError, TemplateError) as exc:
        if _debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2 if isinstance(exc, TemplateError) else 1) from None
    except Exception as exc:
        if _debug:
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in ste or a plugin: run the same command with `ste --debug ...` for "
            "the traceback and report it.",
            err=True,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":  # python -m ste_core.cli.app
    main()
