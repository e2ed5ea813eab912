"""Entry point `local = "ste_backends.local.plugin"`: registers the local backend.

Imports nothing heavy: the backend classes import torch/transformers/trl/peft lazily.
"""

from __future__ import annotations

from ste_backends.local.finetune import LocalFineTune
from ste_backends.local.inference import LocalInference
from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    """Register `local` for both inference and fine-tuning."""
    register("local", inference=LocalInference, finetune=LocalFineTune)
