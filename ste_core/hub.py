"""Whether a model must come from the Hugging Face Hub, and whether the Hub answers.

huggingface_hub retries a failed connection five times with backoff, for every file it looks
up: on a machine that cannot reach the Hub, loading one model took 51 s of retries before the
error, and a cached model took as long before transformers fell back to the cache. One probe
with a short timeout, made once per process, decides instead: a reachable Hub is used as usual;
an unreachable one puts huggingface_hub in offline mode for the rest of the process (as
HF_HUB_OFFLINE=1 would: transformers looks up a hub id's adapter config without passing
`local_files_only` on, so the flag alone is not enough) and every load reads the cache only,
which is instant when the model is cached and fails at once, with our message, when it is not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import urllib.parse
from pathlib import Path

log = logging.getLogger("ste")

#: seconds the probe waits for the Hub's TCP handshake
PROBE_TIMEOUT_S = 3.0

_lock = threading.Lock()
_reachable: bool | None = None
_offline_before: bool | None = None


def is_hub_id(name: str) -> bool:
    """True when `name` is a Hub repository id rather than a local directory."""
    if name.startswith(("/", "./", "../", "~")):
        return False
    return not Path(name).expanduser().exists()


def offline_by_environment() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set: the Hub is never contacted anyway."""
    return any(
        os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the endpoint's host: name resolution and a handshake, no retries.

    A proxy in the environment (HTTPS_PROXY) is what the Hub client would go through, so its
    host is probed instead."""
    url = urllib.parse.urlsplit(endpoint)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy and url.scheme == "https":
        url = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = url.hostname or ""
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except Exception:  # whatever stops the connection (a sandbox's guard too) means unreachable
        return False


def hub_reachable() -> bool:
    """Whether the Hub answers, probed once per process."""
    global _reachable
    with _lock:
        if _reachable is None:
            endpoint = hub_endpoint()
            _reachable = probe(endpoint)
            if not _reachable:
                _go_offline()
                log.warning(
                    "the Hugging Face Hub (%s) cannot be reached; models and datasets are read "
                    "from the local cache only (set HF_HUB_OFFLINE=1 to skip this check)",
                    endpoint,
                )
        return _reachable


def cache_only(name: str, local_files_only: bool = False) -> bool:
    """Whether loading `name` must stay in the local cache: asked for, set by the environment,
    or because the model is on the Hub and the Hub does not answer."""
    if local_files_only or offline_by_environment() or not is_hub_id(name):
        return local_files_only
    return not hub_reachable()


def _go_offline() -> None:
    global _offline_before
    from huggingface_hub import constants

    if _offline_before is None:
        _offline_before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True


def reset() -> None:
    """Forget the probe's answer and leave offline mode (tests; a long-lived process whose
    network changed)."""
    global _reachable, _offline_before
    with _lock:
        _reachable = None
        if _offline_before is not None:
            from huggingface_hub import constants

            constants.HF_HUB_OFFLINE = _offline_before
            _offline_before = None
