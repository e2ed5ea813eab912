"""Error mapping of the openai backend (shared with litellm): status codes and SDK exceptions."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from ste_backends.openai.errors import (
    MalformedResponseError,
    error_for_status,
    map_sdk_error,
    server_message,
)
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)

REQ = httpx2.Request("POST", "http://127.0.0.1:1/v1/chat/completions")


def status_error(status: int, body: dict | None = None, headers: dict | None = None):
    response = httpx2.Response(
        status,
        headers={"x-request-id": "req_abc", **(headers or {})},
        content=json.dumps(body or {}).encode(),
        request=REQ,
    )
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        404: openai.NotFoundError,
        422: openai.UnprocessableEntityError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls("boom", response=response, body=body)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (429, RateLimitError),
        (500, TransientProviderError),
        (502, TransientProviderError),
        (503, TransientProviderError),
        (408, TransientProviderError),
        (400, PermanentProviderError),
        (404, PermanentProviderError),
        (422, PermanentProviderError),
    ],
)
def test_status_codes_map_to_typed_errors(status, expected):
    body = {"error": {"message": f"server says {status}", "type": "x"}}
    err = map_sdk_error(status_error(status, body), provider="openai", auth_hint="HINT")
    assert type(err) is expected
    assert err.status == status
    assert err.request_id == "req_abc"
    assert f"server says {status}" in str(err)
    assert err.retryable is (expected in (RateLimitError, TransientProviderError))


def test_auth_error_carries_the_hint():
    err = map_sdk_error(
        status_error(401, {"error": {"message": "bad key"}}),
        provider="openai",
        auth_hint="Check OPENAI_API_KEY and base_url",
    )
    assert "bad key" in str(err) and "OPENAI_API_KEY" in str(err)


def test_rate_limit_reads_retry_after_ms_before_retry_after():
    err = map_sdk_error(
        status_error(429, {}, {"retry-after-ms": "1500", "retry-after": "9"}), provider="openai"
    )
    assert isinstance(err, RateLimitError) and err.retry_after == pytest.approx(1.5)
    err = map_sdk_error(status_error(429, {}, {"retry-after": "7"}), provider="openai")
    assert err.retry_after == pytest.approx(7.0)
    err = map_sdk_error(status_error(429, {}), provider="openai")
    assert err.retry_after is None


def test_timeouts_and_connection_errors_are_transient():
    assert isinstance(
        map_sdk_error(openai.APITimeoutError(REQ), provider="o"), TransientProviderError
    )
    conn = openai.APIConnectionError(request=REQ)
    assert isinstance(map_sdk_error(conn, provider="o"), TransientProviderError)


def test_unparseable_body_is_transient_not_a_parse_failure():
    try:
        json.loads('{"choices": [')
    except json.JSONDecodeError as exc:
        err = map_sdk_error(exc, provider="o")
    assert isinstance(err, MalformedResponseError) and err.retryable


def test_bugs_are_not_mapped():
    assert map_sdk_error(KeyError("x"), provider="o") is None


def test_server_message_shapes():
    assert server_message({"error": {"message": "m1"}}) == "m1"
    assert server_message({"detail": "m2"}) == "m2"
    assert server_message({"error": "m3"}) == "m3"
    assert server_message(b'{"message": "m4"}') == "m4"
    assert server_message("plain text") == "plain text"
    assert server_message(None, fallback="fb") == "fb"


def test_error_for_status_without_message():
    err = error_for_status(418, "", provider="p")
    assert isinstance(err, PermanentProviderError) and "418" in str(err)
