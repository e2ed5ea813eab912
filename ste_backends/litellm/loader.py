"""Import litellm once, offline-safe and quiet.

litellm takes seconds to import and, unless told otherwise, downloads a model price map at
import. So: it is imported only here, only when a `litellm` backend is first constructed (never
by `ste --help` or `ste backends`), with `LITELLM_LOCAL_MODEL_COST_MAP=True` set beforehand (the
price map bundled with the pinned release is used; a user who sets the variable to False keeps
their choice), and with its loggers and "give feedback" banners silenced: ste reports errors
itself, as typed errors.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

_lock = threading.Lock()
_module: Any = None

LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm")


def load_litellm() -> Any:
    """The configured `litellm` module (imported on first call)."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            import litellm

            litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" prints
            litellm.telemetry = False
            litellm.num_retries = None  # per call we pass num_retries=0: the core retries
            for name in LOGGERS:
                logger = logging.getLogger(name)
                logger.setLevel(logging.ERROR)
            _module = litellm
    return _module
