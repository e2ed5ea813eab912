"""Translate OpenAI-wire failures into `ste_core.errors` types.

Shared by the `openai` backend (the official SDK) and the `litellm` backend (whose exceptions
subclass the SDK's), and by the Batch API path, whose failed lines carry a status code and body
instead of an exception. The scheduler retries on the *type* alone, so the mapping is the policy:

    401/403            -> AuthenticationError (with a hint on where the key comes from)
    429                -> RateLimitError (retry_after from retry-after-ms / Retry-After)
    408, 5xx           -> TransientProviderError
    other 4xx          -> PermanentProviderError, carrying the server's own message
    timeout/connection -> TransientProviderError
    malformed body     -> TransientProviderError (never a model parse failure)

Nothing here imports the SDK at module level; `map_sdk_error` imports it when first called.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ste_core.engine.retry import parse_retry_after
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    ProviderError,
    RateLimitError,
    SteError,
    TransientProviderError,
)


class MalformedResponseError(TransientProviderError):
    """The server answered 2xx but the body is not a usable chat completion. Retried."""


def server_message(body: Any, fallback: str = "") -> str:
    """The human message inside an error body (`{"error": {"message": ...}}` and variants)."""
    if isinstance(body, (bytes, str)):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:500] or fallback
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            if msg:
                return str(msg)
        elif isinstance(err, str) and err:
            return err
        detail = body.get("detail") or body.get("message")
        if detail:
            return str(detail)
    return fallback


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    auth_hint: str = "",
) -> ProviderError:
    """The typed error for an HTTP status code (see the module docstring for the table)."""
    message = message or f"HTTP {status}"
    kwargs: dict[str, Any] = {"provider": provider, "status": status, "request_id": request_id}
    if status in (401, 403):
        return AuthenticationError(f"{message}. {auth_hint}".strip(), **kwargs)
    if status == 429:
        return RateLimitError(message, retry_after=parse_retry_after(headers), **kwargs)
    if status == 408 or status >= 500:
        return TransientProviderError(message, **kwargs)
    if 400 <= status < 500:
        return PermanentProviderError(message, **kwargs)
    # 1xx/2xx/3xx reaching an error path: the body was not what we expected.
    return MalformedResponseError(f"unexpected HTTP {status}: {message}", **kwargs)


def map_sdk_error(exc: BaseException, *, provider: str, auth_hint: str = "") -> SteError | None:
    """Map an exception raised by the `openai` SDK (or a subclass, e.g. litellm's) to ste's types.

    Returns None for exceptions that are neither transport/HTTP failures nor body-decoding errors:
    those are bugs, and the caller re-raises the original so they are not retried into oblivion.
    """
    import openai

    if isinstance(exc, SteError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return TransientProviderError(f"request timed out: {exc}", provider=provider)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return TransientProviderError(f"connection error: {exc}{detail}", provider=provider)
    if isinstance(exc, openai.APIResponseValidationError):
        return MalformedResponseError(f"response did not validate: {exc}", provider=provider)
    if isinstance(exc, openai.APIStatusError):
        headers = _headers_of_exception(exc)
        status = int(getattr(exc, "status_code", 0) or 0)
        request_id = getattr(exc, "request_id", None) or (headers or {}).get("x-request-id")
        message = _message_of(exc)
        return error_for_status(
            status,
            message or str(exc),
            provider=provider,
            request_id=request_id,
            headers=headers,
            auth_hint=auth_hint,
        )
    if isinstance(exc, openai.APIError):
        # litellm's APIError subclasses the SDK's plain APIError but carries a status code.
        code = getattr(exc, "status_code", None)
        if isinstance(code, int) and code >= 400:
            headers = _headers_of_exception(exc)
            return error_for_status(
                code,
                _message_of(exc),
                provider=provider,
                request_id=(headers or {}).get("x-request-id"),
                headers=headers,
                auth_hint=auth_hint,
            )
        # An API error without an HTTP status (e.g. an error event in a stream): worth a retry.
        return TransientProviderError(f"API error: {exc}", provider=provider)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return MalformedResponseError(f"unparseable response body: {exc}", provider=provider)
    return None


def _message_of(exc: BaseException) -> str:
    """The server's message: from the parsed body, else from a JSON object embedded in the
    exception's message (litellm wraps the body as "...Exception - {json}"), else the message."""
    text = str(getattr(exc, "message", "") or exc)
    found = server_message(getattr(exc, "body", None))
    if found:
        return found
    start = text.find("{")
    if start >= 0:
        try:
            found = server_message(json.loads(text[start:]))
        except ValueError:
            found = ""
    return found or text


def _headers_of_exception(exc: BaseException) -> dict[str, str] | None:
    """Response headers of an SDK exception. litellm keeps the upstream headers in
    `litellm_response_headers` when its own `response` is a synthetic one without them."""
    merged: dict[str, str] = {}
    for source in (
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if source:
            try:
                merged.update({str(k).lower(): str(v) for k, v in source.items()})
            except (AttributeError, TypeError):  # an odd object: skip it, keep the rest
                continue
    return merged or None
