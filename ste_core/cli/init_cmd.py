"""`ste init`: write a commented starting config for a provider."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def init(
    provider: Annotated[
        str | None,
        typer.Option(
            "--provider",
            "-p",
            help="local, together, openai-compatible or litellm (asked when not given).",
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="The model to generate and judge with.")
    ] = None,
    data: Annotated[
        str, typer.Option("--data", help="Your instructions file (JSONL of instruction lines).")
    ] = "instructions.jsonl",
    name: Annotated[str, typer.Option("--name", help="The run's name.")] = "my-judge",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the config.")] = Path(
        "ste.toml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starting config for a provider; it runs as written once the data file
    and the key are there."""
    from ste_core.config.scaffold import PROVIDERS, scaffold

    if provider is None:
        if not sys.stdin.isatty():
            typer.echo(f"error: give --provider ({', '.join(PROVIDERS)})", err=True)
            raise typer.Exit(2)
        provider = typer.prompt(f"Provider ({', '.join(PROVIDERS)})", default="local")
    if provider not in PROVIDERS:
        typer.echo(
            f"error: unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}",
            err=True,
        )
        raise typer.Exit(2)
    if out.exists() and not force:
        typer.echo(f"error: {out.resolve()} exists; --force overwrites it", err=True)
        raise typer.Exit(2)
    text = scaffold(provider, name=name, model=model, data=data, filename=str(out))  # type: ignore[arg-type]
    out.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {out.resolve()}")
    if not (out.parent / data).exists():
        typer.echo(
            f"next: put your instructions in {(out.parent / data).resolve()} (one "
            '{"instruction": "..."} per line), then: ste run ' + str(out)
        )
    else:
        typer.echo(f"next: ste run {out}")
