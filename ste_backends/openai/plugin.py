"""Entry point `openai` of the `ste` group: registers the `openai` inference backend.

Imports nothing heavy: the SDK is imported when a backend is constructed.
"""

from ste_core import RegisterBackends, hookimpl


@hookimpl
def register_backends(register: RegisterBackends) -> None:
    from ste_backends.openai.backend import OpenAIInference

    register("openai", inference=OpenAIInference)
