"""The SDK client the Together backends build from their options.

The API key goes from the options straight into the SDK client: it is never put in `describe()`
and never logged. SDK retries are switched off (`max_retries=0`): the core's scheduler owns
retries and backoff, and an SDK that silently retries a 429 for up to 60 s would hide rate limits
from it.
"""

from __future__ import annotations

from typing import Any

from ste_core.errors import AuthenticationError, ConfigurationError

from .options import API_KEY_ENV, TogetherOptions

PROVIDER = "together"


def make_client(options: TogetherOptions, *, connections: int = 16) -> Any:
    """Build an `AsyncTogether` client (imports the SDK lazily) whose connection pool holds
    `connections` connections, all kept alive: the SDK's default pool (100, of which 20 kept
    alive) caps and churns the connections of a scheduler with hundreds of requests in flight.
    """
    try:
        import httpx
        from together import AsyncTogether, DefaultAioHttpClient, DefaultAsyncHttpxClient
    except ImportError as exc:  # pragma: no cover - together is a core dependency
        raise ConfigurationError(
            "The Together backend needs the `together` package (>=3.1): pip install 'together>=3.1'"
        ) from exc
    key = api_key(options)
    pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = (
        DefaultAioHttpClient if options.http_transport == "aiohttp" else DefaultAsyncHttpxClient
    )
    kwargs: dict[str, Any] = {
        "api_key": key,
        "max_retries": 0,
        "timeout": options.timeout_s,
        "http_client": transport(limits=pool, timeout=options.timeout_s),
    }
    if options.base_url:
        kwargs["base_url"] = options.base_url
    if options.project_id:
        kwargs["project_id"] = options.project_id
    return AsyncTogether(**kwargs)


def api_key(options: TogetherOptions) -> str:
    """The API key, or the error that says which variable to set (raised when a backend is
    built, so that a missing key stops a run before anything is sent)."""
    if options.api_key is None:
        raise AuthenticationError(
            f"No Together API key. Set the {API_KEY_ENV} environment variable.",
            provider=PROVIDER,
        )
    return options.api_key.get_secret_value()
