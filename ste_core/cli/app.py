"""Entry point of the `ste` console script: assembles the commands from their modules, then
the plugins' (`register_commands`: `ste demo` comes from the local backend's plugin)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

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
from ste_core.plugins import PluginHost, get_host


def _show_version(value: bool) -> None:
    if value:
        from ste_core import __version__

        typer.echo(f"ste {__version__}")
        raise typer.Exit()


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


def build_app(host: PluginHost | None = None) -> typer.Typer:
    """The `ste` app: the built-in commands, then those the plugins of `host` (default: the
    installed ones) add through `register_commands`, which cannot replace a built-in one."""
    cli = typer.Typer(
        name="ste",
        help="Self-Taught Evaluators: train an LLM-as-a-Judge without human labels.",
        no_args_is_help=True,
        add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
        pretty_exceptions_enable=False,
    )
    cli.callback()(_root)
    # In the order a user meets them: the loop, measuring judges, then what is installed.
    commands: list[tuple[str, Callable[..., Any]]] = [
        ("init", init_cmd.init),
        ("run", run_cmd.run),
        ("evaluate", evaluate_cmd.evaluate),
        ("score", evaluate_cmd.score),
        ("status", status_cmd.status),
        ("runs", status_cmd.runs),
        ("report", report_cmd.report),
        ("view", view_cmd.view),
        ("cleanup", cleanup_cmd.cleanup),
        ("backends", backends_cmd.backends),
    ]
    for name, function in commands:
        cli.command(name, short_help=_summary(function))(function)
    cli.add_typer(templates_cmd.app, name="templates")
    _add_plugin_commands(cli, host)
    return cli


def _summary(function: Callable[..., Any]) -> str:
    """The first paragraph of `function`'s docstring on one line, for the commands table of
    `ste --help`, which would keep the docstring's line breaks and cut sentences mid-way."""
    doc = inspect.getdoc(function) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _add_plugin_commands(cli: typer.Typer, host: PluginHost | None) -> None:
    # Loading the plugins here is cheap (they import their SDKs when used), and a plugin's
    # problem is one warning line, not the default warning format with a file and line.
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (host or get_host()).add_commands(cli)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)


app = build_app()


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
