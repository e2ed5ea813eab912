"""Entry point of the `ste` console script: assembles the commands from their modules."""

from __future__ import annotations

import typer

from ste_core.cli import (
    backends_cmd,
    cleanup_cmd,
    evaluate_cmd,
    report_cmd,
    run_cmd,
    templates_cmd,
    view_cmd,
)

app = typer.Typer(
    name="ste",
    help="Self-Taught Evaluators: train an LLM-as-a-Judge without human labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In the order a user meets them: the loop, measuring judges, then what is installed.
app.command("run")(run_cmd.run)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("score")(evaluate_cmd.score)
app.command("report")(report_cmd.report)
app.command("view")(view_cmd.view)
app.command("cleanup")(cleanup_cmd.cleanup)
app.command("backends")(backends_cmd.backends)
app.command("templates")(templates_cmd.templates)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Show the version and exit."),
) -> None:
    if version:
        from ste_core import __version__

        typer.echo(f"ste {__version__}")
        raise typer.Exit()


def _short_warning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
    # A user of the CLI needs the sentence, not the file and line of the warnings.warn call.
    return f"warning: {message}\n"


def main() -> None:
    import warnings

    warnings.formatwarning = _short_warning
    app()


if __name__ == "__main__":  # python -m ste_core.cli.app
    main()
