"""Connection settings shared by the Together backends, and the SDK client they build.

The API key is resolved here and handed straight to the SDK client: it is never kept on a backend
object, never put in `describe()` and never logged. SDK retries are switched off
(`max_retries=0`): the core's scheduler owns retries and backoff, and an SDK that silently
retries a 429 for up to 60 s would hide rate limits from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ste_core.errors import AuthenticationError, ConfigurationError

PROVIDER = "together"
DEFAULT_BASE_URL = "https://api.together.ai"
API_KEY_ENV = "TOGETHER_API_KEY"
PROJECT_ENV = "TOGETHER_PROJECT_ID"
BASE_URL_ENV = "TOGETHER_BASE_URL"


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Together (no secret in here: the key is resolved at client build).

    `base_url` None means the SDK default: api.together.ai for most routes and the separate
    inference host for chat completions. An explicit base URL sends every route there.
    """

    base_url: str | None = None
    project_id: str | None = None
    timeout_s: float = 120.0

    @classmethod
    def from_options(
        cls,
        base_url: str | None = None,
        project_id: str | None = None,
        timeout_s: float | None = None,
    ) -> Connection:
        base = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
        return cls(
            base_url=normalise_base_url(base) if base else None,
            project_id=project_id or os.environ.get(PROJECT_ENV) or None,
            timeout_s=float(timeout_s) if timeout_s is not None else 120.0,
        )

    def describe(self) -> dict[str, Any]:
        return {"base_url": self.base_url or DEFAULT_BASE_URL, "project_id": self.project_id}


def normalise_base_url(url: str) -> str:
    """SDK 3.x paths carry `/v1` themselves; accept the 1.x habit of a base URL ending in /v1."""
    url = url.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url


def resolve_api_key(api_key: str | None) -> str:
    """The key from the option or TOGETHER_API_KEY; a clear error when there is none."""
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise AuthenticationError(
            f"No Together API key. Set the {API_KEY_ENV} environment variable (recommended) or "
            "pass api_key in the backend options.",
            provider=PROVIDER,
        )
    return key


def make_client(connection: Connection, api_key: str | None) -> Any:
    """Build an `AsyncTogether` client (imports the SDK lazily)."""
    try:
        from together import AsyncTogether
    except ImportError as exc:  # pragma: no cover - together is a core dependency
        raise ConfigurationError(
            "The Together backend needs the `together` package (>=3.1): pip install 'together>=3.1'"
        ) from exc
    kwargs: dict[str, Any] = {
        "api_key": resolve_api_key(api_key),
        "max_retries": 0,
        "timeout": connection.timeout_s,
    }
    if connection.base_url:
        kwargs["base_url"] = connection.base_url
    if connection.project_id:
        kwargs["project_id"] = connection.project_id
    return AsyncTogether(**kwargs)
