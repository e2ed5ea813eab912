"""Entry point `litellm` of the `ste` group: registers the `litellm` inference backend.

Imports nothing heavy: litellm is imported when a backend is constructed.
"""

from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    from ste_backends.litellm.backend import LiteLLMInference

    register("litellm", inference=LiteLLMInference)
