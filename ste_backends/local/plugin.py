"""Entry point `local = "ste_backends.local.plugin"`: registers the local backend and the
`ste demo` command.

Imports nothing heavy: the backend classes import torch/transformers/trl/peft lazily, and so does
the demo.
"""

from __future__ import annotations

import typer

from ste_backends.local.demo import demo
from ste_backends.local.finetune import LocalFineTune
from ste_backends.local.inference import LocalInference
from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    """Register `local` for both inference and fine-tuning."""
    register("local", inference=LocalInference, finetune=LocalFineTune)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    """`ste demo`: the whole loop on a tiny model built offline (ste_backends.local.demo)."""
    cli.command("demo")(demo)
