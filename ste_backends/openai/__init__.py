"""The `openai` backend: the official SDK against OpenAI or any OpenAI-compatible server.

Importing this package does not import the SDK; `OpenAIInference` imports it on construction.
"""

from ste_backends.openai.backend import OpenAIInference

__all__ = ["OpenAIInference"]
