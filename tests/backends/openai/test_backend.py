"""The openai backend (ste_backends/openai/backend.py) through the real SDK (httpx2 transport),
recorded against the fake provider.

Replayed from `cassettes/test_backend/` in CI (`--record-mode=none --block-network`);
re-record with `--record-mode=rewrite` (no key needed: the fake runs on 127.0.0.1). What a
cassette cannot hold (timeouts, refused connections) runs live against the fake on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from ste_backends.openai import OpenAIInference
from ste_backends.openai.errors import MalformedResponseError
from ste_backends.openai.fake import OpenAIFake
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FaultPlan
from tests.backends.cassette_support import (
    RECORDING_KEY,
    WRONG_KEY,
    assert_cassettes_hold_no_secrets,
)

CASSETTES = Path(__file__).parent / "cassettes" / Path(__file__).stem


def ask(text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of("fake-acc80", [{"role": "user", "content": text}], **params)


@pytest.mark.vcr
async def test_chat_n3_in_one_request(make_fake, vcr, replaying):
    fake = make_fake(api_key=RECORDING_KEY)
    backend = OpenAIInference(base_url=fake.base_url, api_key=RECORDING_KEY)
    try:
        c = await backend.complete(ask("Explain photosynthesis", n=3, temperature=0.8, seed=7))
    finally:
        await backend.aclose()
    assert len(c.texts) == 3 and len(set(c.texts)) == 3
    assert "photosynthesis" in c.texts[0].lower()
    assert c.finish_reasons == ("stop", "stop", "stop")
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert c.request_id and c.request_id.startswith("req_")  # the x-request-id header
    assert c.model == "fake-acc80"
    assert len(vcr.requests) == 1
    if replaying:
        assert vcr.play_count == 1 and fake.requests_total == 0


@pytest.mark.vcr
async def test_max_n_1_makes_n_requests_with_distinct_seeds(make_fake, vcr):
    fake = make_fake()
    backend = OpenAIInference(base_url=fake.base_url, max_n=1)  # no key: placeholder is sent
    assert backend.capabilities.max_n == 1
    try:
        c = await backend.complete(ask("Name three rivers", n=3, temperature=0.8, seed=7))
    finally:
        await backend.aclose()
    assert len(c.texts) == 3 and len(set(c.texts)) == 3
    assert len(vcr.requests) == 3
    bodies = sorted(r.body for r in vcr.requests)
    assert all(b'"n"' not in b for b in bodies)  # n=1 is the default: not sent
    assert [b'"seed": 7' in b or b'"seed":7' in b for b in bodies].count(True) == 1
    assert len(c.request_id.split(",")) == 3


@pytest.mark.vcr
async def test_401_is_authentication_error_with_hint(make_fake):
    fake = make_fake(api_key=RECORDING_KEY)
    backend = OpenAIInference(base_url=fake.base_url, api_key=WRONG_KEY)
    try:
        with pytest.raises(AuthenticationError) as info:
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()
    assert info.value.status == 401 and not info.value.retryable
    assert "Invalid API key" in str(info.value)
    assert "OPENAI_API_KEY" in str(info.value) and "base_url" in str(info.value)


@pytest.mark.vcr
async def test_429_is_rate_limit_with_retry_after(make_fake):
    fake = make_fake(faults=FaultPlan(rate_limit_every=1, retry_after_s=3))
    backend = OpenAIInference(base_url=fake.base_url)
    try:
        with pytest.raises(RateLimitError) as info:
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()
    assert info.value.retry_after == 3.0 and info.value.retryable
    assert "slow down" in str(info.value)


@pytest.mark.vcr
async def test_500_is_transient(make_fake):
    fake = make_fake(faults=FaultPlan(server_error_every=1))
    backend = OpenAIInference(base_url=fake.base_url)
    try:
        with pytest.raises(TransientProviderError) as info:
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()
    assert info.value.status == 500 and info.value.retryable


@pytest.mark.vcr
async def test_400_is_permanent_with_server_message(make_fake):
    fake = make_fake()
    backend = OpenAIInference(base_url=fake.base_url)
    request = ChatRequest.of("", [{"role": "user", "content": "hi"}])  # the API refuses it
    try:
        with pytest.raises(PermanentProviderError) as info:
            await backend.complete(request)
    finally:
        await backend.aclose()
    assert info.value.status == 400 and not info.value.retryable
    assert "model" in str(info.value)


@pytest.mark.vcr
async def test_malformed_body_is_transient_not_a_parse_failure(make_fake):
    fake = make_fake(faults=FaultPlan(malformed_every=1))
    backend = OpenAIInference(base_url=fake.base_url)
    try:
        with pytest.raises(MalformedResponseError) as info:
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()
    assert isinstance(info.value, TransientProviderError) and info.value.retryable


@pytest.mark.vcr
async def test_batch_round_trip_with_one_failed_line(make_fake, vcr):
    fake = make_fake(
        api_key=RECORDING_KEY,
        faults=FaultPlan(server_error_every=2, routes=frozenset({"batch_line"})),
    )
    backend = OpenAIInference(
        base_url=fake.base_url, api_key=RECORDING_KEY, batch=True, batch_poll_interval=0
    )
    assert backend.capabilities.batch is True
    requests = [
        ask(q, n=2, temperature=0.7, seed=i)
        for i, q in enumerate(["What is rain?", "Why is the sky blue?", "How do magnets work?"])
    ]
    try:
        items = {item.index: item async for item in backend.complete_many(requests)}
    finally:
        await backend.aclose()
    assert sorted(items) == [0, 1, 2]
    # Line 2 failed with a 500 inside the batch: an error item the core can retry alone.
    assert isinstance(items[1].error, TransientProviderError) and items[1].completion is None
    assert items[1].error.status == 500
    for i, topic in ((0, "rain"), (2, "magnets")):
        c = items[i].completion
        assert items[i].error is None and c is not None
        assert len(c.texts) == 2 and topic in c.texts[0].lower()
        assert c.request_id and c.usage.completion_tokens > 0
    paths = [(r.method, r.path) for r in vcr.requests]
    assert paths[:2] == [("POST", "/v1/files"), ("POST", "/v1/batches")]
    assert [p for p in paths if p[0] == "GET" and p[1].startswith("/v1/batches/")] == [
        paths[2]
    ] * 3  # validating -> in_progress -> finalizing -> completed
    assert sum(1 for p in paths if p[1].endswith("/content")) == 2  # output + error files
    upload = vcr.requests[0]
    assert b'name="purpose"' in upload.body and b"batch" in upload.body
    assert (
        b'"custom_id": "ste-1"' in upload.body and b'"url": "/v1/chat/completions"' in upload.body
    )


def test_cassettes_hold_no_secrets():
    assert_cassettes_hold_no_secrets(CASSETTES, "test_401_is_authentication_error_with_hint.yaml")


# -- live against the fake on 127.0.0.1 --------------------------------------------------------


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_timeout_is_transient():
    with OpenAIFake(faults=FaultPlan(timeout_every=1, timeout_sleep_s=5)) as fake:
        backend = OpenAIInference(base_url=fake.base_url, timeout=0.3)
        try:
            with pytest.raises(TransientProviderError, match="timed out"):
                await backend.complete(ask("hi"))
        finally:
            await backend.aclose()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_refused_connection_is_transient():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIInference(base_url=f"http://127.0.0.1:{port}/v1", timeout=2)
    try:
        # httpx's transport says "connection error"; aiohttp's (through httpx-aiohttp) reports
        # a refused connection as a connect timeout. Either way: transient, retried.
        with pytest.raises(TransientProviderError, match=r"connection error|timed out"):
            await backend.complete(ask("hi"))
    finally:
        await backend.aclose()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_server_ignoring_n_is_topped_up_and_warned_once(caplog):
    with OpenAIFake() as fake:
        real = fake.find_route("POST", "/v1/chat/completions")[0].handler

        @fake.route("POST", r"/v1/chat/completions", "chat_ignores_n")
        def ignores_n(req, match):  # type: ignore[no-untyped-def]
            body = req.json()
            body.pop("n", None)  # like llama.cpp's server: one choice whatever n says
            return real(
                type(req)(req.method, req.path, req.query, req.headers, json.dumps(body).encode()),
                match,
            )

        backend = OpenAIInference(base_url=fake.base_url)
        for seed in (1, 2):
            c = await backend.complete(ask("Tides?", n=3, temperature=0.9, seed=seed * 10))
            assert len(c.texts) == 3 and len(set(c.texts)) == 3
        await backend.aclose()
        assert fake.counter["chat_ignores_n"] == 6
    assert caplog.text.count("set max_n = 1") == 1


async def test_the_pool_is_sized_to_the_schedulers_and_the_transport_is_aiohttp() -> None:
    from ste_core.engine.limits import Limits
    from ste_core.engine.scheduler import Scheduler

    backend = OpenAIInference(base_url="http://127.0.0.1:9/v1")
    Scheduler(backend, limits=Limits(concurrency=300))
    try:
        http = backend._client()._client
        assert "Aiohttp" in type(http._transport).__name__
        plain = OpenAIInference(base_url="http://127.0.0.1:9/v1", http_transport="httpx")
        Scheduler(plain, limits=Limits(concurrency=300))
        assert plain._client()._client._transport._pool._max_connections == 300
        await plain.aclose()
    finally:
        await backend.aclose()
