"""`ste templates`: the prompt templates available by name (built-in and from plugins)."""

from __future__ import annotations

import json

import typer


def templates(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    show: str | None = typer.Option(None, "--show", help="Print one template's full text."),
) -> None:
    """List prompt templates: name, purpose, version, variables, parser, origin."""
    from ste_core.plugins import get_host

    host = get_host()
    if show is not None:
        t = host.template(show)
        if t.system:
            typer.echo(f"--- system ---\n{t.system}")
        typer.echo(f"--- user ---\n{t.user}")
        return
    rows = [
        {
            "name": t.name,
            "purpose": t.purpose,
            "version": t.version,
            "variables": list(t.variables),
            "parser": t.parser,
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
    for col in ("name", "purpose", "version", "variables", "parser", "from"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["purpose"],
            str(r["version"]),
            ", ".join(r["variables"]),
            r["parser"],
            r["from"] or "-",
        )
    Console().print(table)
