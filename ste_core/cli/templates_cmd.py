"""`ste templates`: the prompt templates available by name (built-in and from plugins)."""

from __future__ import annotations

import json

import typer

app = typer.Typer(
    help="List prompt templates (name, purpose, version, variables, parser and verdict rule, "
    "origin); "
    "`ste templates show NAME` prints one.",
    no_args_is_help=False,
    invoke_without_command=True,
)


@app.command("show")
def show_template(name: str = typer.Argument(help="A template name (or a .toml file).")) -> None:
    """Print one template's full text (system and user prompts) and its verdict rule."""
    from ste_core.plugins import get_host

    t = get_host().template(name)
    if t.system:
        typer.echo(f"--- system ---\n{t.system}")
    typer.echo(f"--- user ---\n{t.user}")
    if t.verdict_rule is not None:
        typer.echo(f"--- verdict rule: {t.verdict_rule} (docs/evaluation.md, 'Verdict rules') ---")


@app.callback()
def templates(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    show: str | None = typer.Option(
        None, "--show", help="Same as `ste templates show NAME`.", hidden=True
    ),
) -> None:
    """List prompt templates: name, purpose, version, variables, parser (with the verdict rule
    of a judge template), origin."""
    from ste_core.plugins import get_host

    if ctx.invoked_subcommand is not None:
        return
    if show is not None:
        show_template(show)
        return
    host = get_host()
    rows = [
        {
            "name": t.name,
            "purpose": t.purpose,
            "version": t.version,
            "variables": list(t.variables),
            "parser": t.parser,
            "verdict_rule": t.verdict_rule,
            "description": t.description,
            "from": host.template_owner.get(t.name),
        }
        for t in sorted(host.templates.values(), key=lambda t: (t.purpose, t.name))
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ste templates")
    # The version is in --json; at 80 columns every column counts.
    for col in ("name", "purpose", "variables", "parser", "from"):
        # Names are copied into configs: never cut them; the other columns wrap.
        table.add_column(col, no_wrap=col == "name", overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["purpose"],
            ", ".join(r["variables"]),
            r["parser"] if r["verdict_rule"] is None else f"{r['parser']} ({r['verdict_rule']})",
            r["from"] or "-",
        )
    Console().print(table)
