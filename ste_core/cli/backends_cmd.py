"""`ste backends`: every registered backend with its origin and capabilities."""

from __future__ import annotations

import json
from typing import Any

import typer


def backends(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every backend plugins provide: kind, distribution, version, capabilities."""
    from ste_core.plugins import get_host, list_backends

    host = get_host()
    rows: list[dict[str, Any]] = []
    for info in list_backends():
        caps: dict[str, Any] = {}
        if info.inference is not None:
            caps["inference"] = info.inference.capabilities.model_dump(mode="json")
        if info.finetune is not None:
            ft = info.finetune.capabilities.model_dump(mode="json")
            ft["methods"] = sorted(ft["methods"])
            caps["finetune"] = ft
        missing = info.missing
        rows.append(
            {
                "name": info.name,
                "kinds": info.kinds,
                "distribution": info.distribution,
                "version": info.version,
                "plugin": info.plugin,
                "capabilities": caps,
                "installed": not missing,
                "missing": missing,
                "install": f"pip install 'self-taught-evaluators[{info.extra}]'"
                if missing and info.extra
                else None,
            }
        )
    if as_json:
        typer.echo(json.dumps({"backends": rows, "warnings": host.load_errors}, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title="ste backends")
    for col in ("name", "kind", "distribution", "capabilities", "installed"):
        table.add_column(col)
    for row in rows:
        caps_text = []
        inf = row["capabilities"].get("inference")
        if inf:
            n_text = "any n" if inf["max_n"] is None else f"n≤{inf['max_n']}"
            caps_text.append(
                f"{n_text}, batch={'yes' if inf['batch'] else 'no'}, "
                f"concurrency {inf['suggested_concurrency']}"
            )
        ft = row["capabilities"].get("finetune")
        if ft:
            cont = ", continue-from-previous" if ft["continue_from_previous"] else ""
            caps_text.append(f"fine-tune {'/'.join(ft['methods'])}{cont}")
        installed = "yes" if row["installed"] else f"no: {row['install'] or row['missing']}"
        table.add_row(
            row["name"],
            "+".join(row["kinds"]),
            f"{row['distribution'] or '-'} {row['version'] or ''}".strip(),
            "\n".join(caps_text),
            installed,
        )
    Console().print(table)
