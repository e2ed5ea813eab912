"""Entry point `together` (group `ste`): registers the Together backends with the plugin host."""

from __future__ import annotations

from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    """Register `together` for inference and fine-tuning."""
    from ste_backends.together.finetune import TogetherFineTune
    from ste_backends.together.inference import TogetherInference

    register("together", inference=TogetherInference, finetune=TogetherFineTune)
