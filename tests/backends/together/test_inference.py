"""The Together inference backend (ste_backends/together/inference.py): chat completions and the
Batch API through the real `together` SDK (cassettes), then what needs no HTTP.

Recorded against the fake provider's Together routes; replayed in CI without it.
"""

from __future__ import annotations

import pytest

from ste_backends.together.batch import custom_id_for
from ste_backends.together.inference import TogetherInference, completion_from_body
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FaultPlan
from tests.backends.together.tg_support import CHAT_MODEL, RECORDING_KEY


def ask(text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of(CHAT_MODEL, [{"role": "user", "content": text}], **params)


@pytest.mark.vcr
async def test_chat_n2_with_usage_request_id_and_cost(make_backend, interactions, ste_recording):
    backend = make_backend("inference")
    c = await backend.complete(ask("Explain photosynthesis", n=2, temperature=0.8, seed=7))
    assert len(c.texts) == 2 and c.texts[0] != c.texts[1]
    assert all("photosynthesis" in t.lower() for t in c.texts)
    assert c.finish_reasons == ("stop", "stop")
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert c.request_id and c.request_id.startswith("req_")  # the x-request-id header
    # Price from the catalog (0.18 $/M both ways on the fake), looked up once per model.
    expected = (c.usage.prompt_tokens + c.usage.completion_tokens) * 0.18 / 1e6
    assert c.cost_usd == pytest.approx(expected)
    again = await backend.complete(ask("Explain photosynthesis", n=2, temperature=0.8, seed=7))
    assert again.texts == c.texts  # same seed, same answers
    assert interactions() == [
        ("POST", "/v1/chat/completions", 200),
        ("GET", "/v2/supported-models", 200),
        ("POST", "/v1/chat/completions", 200),
    ]


@pytest.mark.vcr
async def test_chat_sends_only_set_parameters(make_backend, vcr):
    backend = make_backend("inference", price_lookup=False)
    await backend.complete(ask("Name a river", max_tokens=64, stop=["\n\n"]))
    body = vcr.requests[0].body
    assert b'"stop": ["\\n\\n"]' in body or b'"stop":["\\n\\n"]' in body
    assert b'"seed"' not in body  # unset seed is omitted, not null
    assert b'"max_tokens": 64' in body or b'"max_tokens":64' in body


@pytest.mark.vcr
async def test_401_is_authentication_error_with_key_hint(
    together_fake, make_backend, fake_only, ste_recording
):
    together_fake.api_key = "tgp_v1_the-right-key-9999"  # the fake refuses RECORDING_KEY
    backend = make_backend("inference")
    with pytest.raises(AuthenticationError) as info:
        await backend.complete(ask("hi"))
    assert info.value.status == 401 and not info.value.retryable
    assert "TOGETHER_API_KEY" in str(info.value)
    assert RECORDING_KEY not in str(info.value)


@pytest.mark.vcr
async def test_429_is_rate_limit_with_retry_after_and_no_sdk_retry(
    together_fake, make_backend, fake_only, interactions, ste_recording
):
    together_fake.faults = FaultPlan(
        rate_limit_every=1, retry_after_s=7, routes=frozenset({"chat"})
    )
    backend = make_backend("inference")
    with pytest.raises(RateLimitError) as info:
        await backend.complete(ask("hi"))
    assert info.value.retry_after == 7.0 and info.value.retryable and info.value.status == 429
    # max_retries=0: exactly one request, the scheduler owns retries.
    assert interactions() == [("POST", "/v1/chat/completions", 429)]
    if ste_recording:
        assert together_fake.counter["chat"] == 1


@pytest.mark.vcr
async def test_500_is_transient(together_fake, make_backend, fake_only, interactions):
    together_fake.faults = FaultPlan(server_error_every=1, routes=frozenset({"chat"}))
    backend = make_backend("inference")
    with pytest.raises(TransientProviderError) as info:
        await backend.complete(ask("hi"))
    assert info.value.status == 500 and info.value.retryable
    assert interactions() == [("POST", "/v1/chat/completions", 500)]


@pytest.mark.vcr
async def test_malformed_body_is_transient_not_a_parse_failure(
    together_fake, make_backend, fake_only
):
    together_fake.faults = FaultPlan(malformed_every=1, routes=frozenset({"chat"}))
    backend = make_backend("inference", price_lookup=False)
    with pytest.raises(TransientProviderError, match="malformed"):
        await backend.complete(ask("hi"))


@pytest.mark.vcr
async def test_400_is_permanent_with_providers_message(make_backend, fake_only):
    backend = make_backend("inference", price_lookup=False)
    bad = ChatRequest.of(CHAT_MODEL, [{"role": "user", "content": "hi"}]).model_copy(
        update={"model": ""}
    )
    with pytest.raises(PermanentProviderError) as info:
        await backend.complete(bad)
    assert info.value.status == 400 and not info.value.retryable
    assert "model" in str(info.value)


@pytest.mark.vcr
async def test_batch_round_trip_with_one_failed_line(
    together_fake, make_backend, fake_only, interactions, vcr
):
    backend = make_backend("inference", batch=True, batch_poll_interval_s=0.01)
    assert backend.capabilities.batch is True
    requests = [
        ask(q, n=2, temperature=0.7, seed=i)
        for i, q in enumerate(["What is rain?", "Why is the sky blue?", "How do magnets work?"])
    ]
    together_fake.together.batch_fail_custom_ids = {custom_id_for(1, requests[1])}
    items = {item.index: item async for item in backend.complete_many(requests)}
    assert sorted(items) == [0, 1, 2]
    # Only the failed line is an error (the core's scheduler retries just that one).
    assert isinstance(items[1].error, TransientProviderError) and items[1].completion is None
    assert items[1].error.status == 500
    for i, topic in ((0, "rain"), (2, "magnets")):
        c = items[i].completion
        assert items[i].error is None and c is not None
        assert len(c.texts) == 2 and topic in c.texts[0].lower()
        assert c.request_id and c.usage.completion_tokens > 0
        # Batch price: half the catalog's serverless price.
        assert c.cost_usd == pytest.approx(0.5 * c.usage.total_tokens * 0.18 / 1e6)
    paths = [(m, p) for m, p, _ in interactions()]
    assert paths[:4] == [
        ("POST", "/v1/files"),  # -> 302 to the presigned URL
        ("PUT", paths[1][1]),
        ("POST", paths[2][1]),
        ("POST", "/v1/batches"),
    ]
    assert paths[1][1].startswith("/_presigned/files/") and paths[2][1].endswith("/preprocess")
    assert sum(1 for m, p in paths if p.endswith("/content")) == 2  # output + error files
    upload_form = vcr.requests[0].body
    assert b"batch-api" in upload_form
    put_body = vcr.requests[1].body
    assert put_body.count(b'"custom_id": "ste-') == 3 and b'"body": {' in put_body


# -- no HTTP -----------------------------------------------------------------------------------

KEY = "tgp_v1_unit-test-secret-key"


def test_batch_option_sets_capability(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    assert TogetherInference().capabilities.batch is False
    assert TogetherInference(batch=True).capabilities.batch is True
    assert TogetherInference.capabilities.batch is False  # class default untouched


def test_malformed_completion_bodies_are_transient():
    for body in ({}, {"choices": []}, {"choices": [{"message": {"content": None}}]}):
        with pytest.raises(TransientProviderError):
            completion_from_body(body, request_id=None, latency_s=0, requested_n=1)
    ok = {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop"}]}
    with pytest.raises(TransientProviderError, match="2 were requested"):
        completion_from_body(ok, request_id=None, latency_s=0, requested_n=2)


def test_the_pool_is_sized_to_the_schedulers_and_the_transport_is_aiohttp() -> None:
    """The SDK's default pool (100, 20 kept alive) would cap a scheduler with hundreds of
    requests in flight; every scheduler over the backend adds its concurrency."""
    from ste_core.engine.limits import Limits
    from ste_core.engine.scheduler import Scheduler

    backend = TogetherInference(api_key="k", base_url="http://127.0.0.1:9")
    Scheduler(backend, limits=Limits(concurrency=300))
    Scheduler(backend, limits=Limits(concurrency=20))
    http = backend._client._client  # the SDK's HTTP client
    assert type(http._transport).__name__ == "AiohttpTransport"
    assert http._transport.limits.max_connections == 320
    assert http._transport.limits.max_keepalive_connections == 320
    plain = TogetherInference(api_key="k", base_url="http://127.0.0.1:9", http_transport="httpx")
    assert type(plain._client._client._transport).__name__ == "AsyncHTTPTransport"
