"""Together SDK exceptions -> the core's typed errors (the scheduler retries by type alone)."""

from __future__ import annotations

import json

import httpx
import pytest
import together

from ste_backends.together.errors import error_for_status, map_error, provider_message
from ste_core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)

REQ = httpx.Request("POST", "https://api.together.ai/v1/chat/completions")


def status_error(status: int, body: object = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
    """The SDK's own exception for `status`, built the way its client builds it."""
    content = json.dumps(body).encode() if body is not None else b""
    response = httpx.Response(status, headers=headers or {}, content=content, request=REQ)
    client = together.AsyncTogether(api_key="unused", base_url="http://x.invalid")
    return client._make_status_error_from_response(response)


ERR = {"error": {"message": "Input validation error: max_tokens too large", "type": "invalid"}}


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_name_the_env_var(status):
    err = map_error(status_error(status, {"error": {"message": "Invalid API key"}}))
    assert isinstance(err, AuthenticationError) and not err.retryable
    assert err.status == status and "TOGETHER_API_KEY" in str(err)
    assert "Invalid API key" in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({}, None),
        ({"retry-after": "soon"}, None),
    ],
)
def test_429_carries_retry_after(headers, expected):
    err = map_error(status_error(429, {"error": {"message": "slow down"}}, headers))
    assert isinstance(err, RateLimitError) and err.retryable and err.status == 429
    assert err.retry_after == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_transient(status):
    err = map_error(status_error(status, {"error": {"message": "upstream overloaded"}}))
    assert isinstance(err, TransientProviderError) and err.retryable and err.status == status


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_are_permanent_with_the_providers_message(status):
    err = map_error(status_error(status, ERR))
    assert isinstance(err, PermanentProviderError) and not err.retryable
    assert "max_tokens too large" in str(err) and err.status == status


def test_request_id_header_is_kept():
    err = map_error(status_error(500, ERR, {"x-request-id": "req_abc"}))
    assert err.request_id == "req_abc"


def test_timeouts_connection_errors_and_bad_bodies_are_transient():
    assert isinstance(map_error(together.APITimeoutError(REQ)), TransientProviderError)
    assert isinstance(map_error(together.APIConnectionError(request=REQ)), TransientProviderError)
    bad = together.APIResponseValidationError(httpx.Response(200, request=REQ), body="{")
    assert isinstance(map_error(bad), TransientProviderError)
    assert isinstance(map_error(httpx.ReadTimeout("t", request=REQ)), TransientProviderError)
    assert isinstance(map_error(httpx.ConnectError("c", request=REQ)), TransientProviderError)
    assert isinstance(map_error(json.JSONDecodeError("x", "{", 0)), TransientProviderError)


def test_sdk_argument_errors_are_configuration_errors():
    err = map_error(ValueError("Missing project_id argument"))
    assert isinstance(err, ConfigurationError) and not err.retryable


def test_provider_message_shapes():
    assert provider_message(ERR) == "Input validation error: max_tokens too large"
    assert provider_message({"message": "flat"}) == "flat"
    assert provider_message({"error": "just text"}) == "just text"
    assert provider_message(b'{"error": {"message": "bytes"}}') == "bytes"
    assert provider_message("<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert provider_message({}) is None


def test_error_for_status_maps_batch_line_errors():
    assert isinstance(error_for_status(429, ERR), RateLimitError)
    assert isinstance(error_for_status(503, ERR), TransientProviderError)
    assert isinstance(error_for_status(400, ERR), PermanentProviderError)
