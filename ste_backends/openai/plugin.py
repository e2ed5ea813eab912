"""Entry point `openai` of the `ste` group: registers the `openai` inference backend.

Imports nothing heavy: the SDK is imported when a backend is constructed.
"""

from ste_core import hookimpl


@hookimpl
def register_backends(register):  # type: ignore[no-untyped-def]
    from ste_backends.openai.backend import OpenAIInference

    register("openai", inference=OpenAIInference)
