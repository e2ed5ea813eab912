"""`ste backends`: every registered backend with its origin and capabilities; with `--options
NAME`, the options one backend takes."""

from __future__ import annotations

import json
import shutil
import textwrap
from dataclasses import asdict
from typing import Any

import typer


def backends(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    options_of: str | None = typer.Option(
        None,
        "--options",
        metavar="NAME",
        help="List the options of backend NAME: type, default, whether they change results, "
        "the environment variable of each secret.",
    ),
) -> None:
    """List every backend plugins provide: kind, distribution, version, capabilities."""
    if options_of is not None:
        _options(options_of, as_json)
        return
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
    from rich.markup import escape
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
            escape(row["name"]),
            "+".join(row["kinds"]),
            escape(f"{row['distribution'] or '-'} {row['version'] or ''}".strip()),
            "\n".join(caps_text),
            escape(installed),  # "pip install '...[local]'": rich would eat "[local]"
        )
    Console().print(table)


def _options(name: str, as_json: bool) -> None:
    from ste_core.errors import UnknownBackendError
    from ste_core.plugins import get_host

    try:
        info = get_host().backend(name)
    except UnknownBackendError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    kinds = {kind: info.cls(kind).Options.option_infos() for kind in info.kinds}
    if as_json:
        data = {kind: [asdict(o) for o in found] for kind, found in kinds.items()}
        typer.echo(json.dumps({"backend": name, "options": data}, indent=2))
        return

    # Plain text, not a rich table: the help needs the width, and option help may hold brackets
    # ("[input, output]") that rich markup would swallow.
    width = min(shutil.get_terminal_size().columns, 100)
    for kind, found in kinds.items():
        typer.echo(f"{name} {kind} options" + (":" if found else ": none"))
        for o in found:
            if o.secret:
                where = f"from env {o.secret_env}" if o.secret_env else "from the environment"
                default = f", {where}; never in a config file"
            else:
                default = f" = {json.dumps(o.default, ensure_ascii=False)}"
            mark = "  (changes results)" if o.changes_results else ""
            typer.echo(f"  {o.name}: {o.type}{default}{mark}")
            typer.echo(
                textwrap.fill(o.help, width, initial_indent=" " * 6, subsequent_indent=" " * 6)
            )
        typer.echo("")
    note = (
        "Options that change results are part of the request cache key (describe()): changing "
        "one makes a resumed run ask the provider again instead of reusing cached answers."
    )
    typer.echo(textwrap.fill(note, width))
