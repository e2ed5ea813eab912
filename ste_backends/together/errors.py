"""Translate the Together SDK's exceptions into the core's typed errors.

The scheduler decides on retries from the error type alone, so this mapping is the contract:
401/403 -> AuthenticationError, 429 -> RateLimitError(retry_after), 5xx / timeouts / dropped
connections / malformed bodies -> TransientProviderError, other 4xx -> PermanentProviderError
carrying the provider's own message.
"""

from __future__ import annotations

import json
from typing import Any

from ste_core.engine.retry import parse_retry_after
from ste_core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentProviderError,
    ProviderError,
    RateLimitError,
    SteError,
    TransientProviderError,
)

from .client import PROVIDER
from .options import API_KEY_ENV

AUTH_HINT = (
    f"Check the {API_KEY_ENV} environment variable: it must hold a valid Together API key "
    "(https://api.together.ai/settings/api-keys) with access to this model / project."
)


def map_error(exc: BaseException, *, what: str = "request") -> SteError:
    """The core error for an exception raised while talking to Together (never raises)."""
    if isinstance(exc, SteError):
        return exc
    try:
        import httpx
        import together
    except ImportError:  # pragma: no cover - together is a core dependency
        return TransientProviderError(f"{what} failed: {exc!r}", provider=PROVIDER)

    if isinstance(exc, together.APIStatusError):
        return _from_status(exc.status_code, exc.response, exc.body, exc.message, what)
    if isinstance(exc, together.APITimeoutError):
        return TransientProviderError(f"{what} timed out", provider=PROVIDER)
    if isinstance(exc, together.APIConnectionError):
        return TransientProviderError(f"{what}: connection error ({exc})", provider=PROVIDER)
    if isinstance(exc, together.APIResponseValidationError):
        return TransientProviderError(
            f"{what}: Together returned a body that does not match the API schema",
            provider=PROVIDER,
        )
    if isinstance(exc, httpx.TimeoutException):
        return TransientProviderError(f"{what} timed out", provider=PROVIDER)
    if isinstance(exc, httpx.TransportError):
        return TransientProviderError(f"{what}: transport error ({exc!r})", provider=PROVIDER)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return TransientProviderError(f"{what}: malformed response body ({exc})", provider=PROVIDER)
    if isinstance(exc, (ValueError, TypeError)):
        # The SDK validates arguments client-side (e.g. a missing project id): not retryable.
        return ConfigurationError(f"{what}: invalid request for the Together SDK: {exc}")
    if isinstance(exc, together.APIError):
        return TransientProviderError(f"{what} failed: {exc}", provider=PROVIDER)
    return TransientProviderError(f"{what} failed unexpectedly: {exc!r}", provider=PROVIDER)


def error_for_status(
    status: int, body: object, *, headers: Any = None, what: str = "request"
) -> ProviderError:
    """The core error for an HTTP status + body (used for Batch API error lines too)."""
    return _from_status(status, None, body, None, what, headers=headers)


def _from_status(
    status: int,
    response: Any,
    body: object,
    fallback: str | None,
    what: str,
    *,
    headers: Any = None,
) -> ProviderError:
    headers = headers if headers is not None else getattr(response, "headers", None)
    request_id = _header(headers, "x-request-id")
    message = provider_message(body) or fallback or f"HTTP {status}"
    kw: dict[str, Any] = {"provider": PROVIDER, "status": status, "request_id": request_id}
    if status in (401, 403):
        return AuthenticationError(f"{what} was refused: {message}. {AUTH_HINT}", **kw)
    if status == 429:
        return RateLimitError(
            f"{what} was rate limited: {message}", retry_after=parse_retry_after(headers), **kw
        )
    if status >= 500 or status == 408:
        return TransientProviderError(f"{what} failed on Together's side: {message}", **kw)
    return PermanentProviderError(f"{what} was rejected: {message}", **kw)


def provider_message(body: object) -> str | None:
    """Together's error text from a body shaped {"error": {"message": ...}} or {"message": ...}."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:500] or None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str) and err:
            return err
        if body.get("message"):
            return str(body["message"])
    return None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:  # pragma: no cover - defensive
        return None
    return str(value) if value is not None else None
