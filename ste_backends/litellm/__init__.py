"""The `litellm` backend: `litellm.acompletion` for any provider litellm reaches.

Importing this package does not import litellm (seconds of import time, and a price-map
download unless told otherwise); `LiteLLMInference` imports it on construction.
"""

from ste_backends.litellm.backend import LiteLLMInference

__all__ = ["LiteLLMInference"]
