"""The fake provider's wire format (read by the real openai SDK), faults, counters and routes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from ste_core.testing.fake_provider import (
    FakeProvider,
    FakeRequest,
    FakeResponse,
    FaultPlan,
    signature,
)

MSG = [{"role": "user", "content": "Explain how tides depend on the moon"}]


@pytest.fixture
def provider() -> FakeProvider:
    with FakeProvider() as p:
        yield p


def client(p: FakeProvider, timeout: float = 10.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=p.url + "/v1", api_key="test-key", max_retries=0, timeout=timeout
    )


@pytest.fixture
async def sdk(provider: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    c = client(provider)
    yield c
    await c.close()


async def test_wire_format_parsed_by_openai_sdk(provider, sdk) -> None:
    r = await sdk.chat.completions.create(
        model="fake-acc70", messages=MSG, n=3, temperature=0.7, seed=3, max_tokens=500
    )
    assert r.object == "chat.completion" and r.model == "fake-acc70" and r.id.startswith("chatcmpl")
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.message.role == "assistant" and c.finish_reason == "stop" for c in r.choices)
    texts = [c.message.content for c in r.choices]
    assert len(set(texts)) == 3  # different choice indices differ
    assert all(t.startswith(signature(MSG[0]["content"])) for t in texts)
    assert "tides" in texts[0] and "moon" in texts[0]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    assert r._request_id and r._request_id.startswith("req_")
    again = await sdk.chat.completions.create(
        model="fake-acc70", messages=MSG, n=3, temperature=0.7, seed=3, max_tokens=500
    )
    assert [c.message.content for c in again.choices] == texts  # deterministic
    other_seed = await sdk.chat.completions.create(
        model="fake-acc70", messages=MSG, temperature=0.7, seed=4
    )
    assert other_seed.choices[0].message.content != texts[0]
    assert provider.counter["chat"] == 3 and provider.requests_total == 3
    assert provider.log[0] == ("chat", "POST", "/v1/chat/completions", 200)
    assert provider.errors == []


async def test_greedy_choices_agree_and_limits_apply(sdk) -> None:
    r = await sdk.chat.completions.create(model="m", messages=MSG, n=2, temperature=0)
    assert r.choices[0].message.content == r.choices[1].message.content
    short = await sdk.chat.completions.create(model="m", messages=MSG, max_tokens=5)
    assert short.choices[0].finish_reason == "length"
    assert len(short.choices[0].message.content) == 20
    stopped = await sdk.chat.completions.create(model="m", messages=MSG, stop=["1."])
    assert "1." not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"


async def test_models_route(sdk) -> None:
    models = await sdk.models.list()
    assert "fake-acc70" in [m.id for m in models.data]


async def test_bad_request_is_400_naming_the_field(sdk) -> None:
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await sdk.chat.completions.create(model="m", messages=MSG, temperature=5)
    with pytest.raises(openai.BadRequestError, match="messages"):
        await sdk.chat.completions.create(model="m", messages=[])


async def test_rate_limit_every_kth_with_retry_after() -> None:
    with FakeProvider(faults=FaultPlan(rate_limit_every=2, retry_after_s=3)) as p:
        c = client(p)
        await c.chat.completions.create(model="m", messages=MSG)
        with pytest.raises(openai.RateLimitError) as info:
            await c.chat.completions.create(model="m", messages=MSG)
        assert info.value.status_code == 429
        assert info.value.response.headers["retry-after"] == "3"
        await c.chat.completions.create(model="m", messages=MSG)
        await c.close()
        assert [status for *_, status in p.log] == [200, 429, 200]
        assert p.counter["chat"] == 3


async def test_fail_first_then_server_errors_by_probability() -> None:
    plan = FaultPlan(fail_first=2, fail_first_status=503)
    with FakeProvider(faults=plan) as p:
        c = client(p)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as info:
                await c.chat.completions.create(model="m", messages=MSG)
            assert info.value.status_code == 503
        await c.chat.completions.create(model="m", messages=MSG)
        await c.close()


async def test_malformed_body_is_not_json() -> None:
    with FakeProvider(faults=FaultPlan(malformed_every=1)) as p:
        async with httpx.AsyncClient() as h:
            r = await h.post(p.url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
        assert r.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)
        c = client(p)
        # The SDK surfaces a cut body as a raw JSONDecodeError (or a validation error): backends
        # must map either to TransientProviderError.
        with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError)):
            await c.chat.completions.create(model="m", messages=MSG)
        await c.close()


async def test_timeout_fault_times_the_client_out_and_stop_is_prompt() -> None:
    p = FakeProvider(faults=FaultPlan(timeout_every=1, timeout_sleep_s=30)).start()
    c = client(p, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await c.chat.completions.create(model="m", messages=MSG)
    assert time.monotonic() - t0 < 5
    await c.close()
    t1 = time.monotonic()
    p.stop()  # wakes the handler still holding the request
    assert time.monotonic() - t1 < 3


async def test_latency_and_parallel_requests() -> None:
    with FakeProvider(latency_s=0.2) as p:
        c = client(p)
        t0 = time.monotonic()
        await asyncio.gather(
            *(c.chat.completions.create(model="m", messages=MSG) for _ in range(20))
        )
        elapsed = time.monotonic() - t0
        await c.close()
    assert 0.2 <= elapsed < 1.5  # served in parallel, not 20 * 0.2 s
    assert p.counter["chat"] == 20


async def test_per_route_latency() -> None:
    plan = FaultPlan(route_latency_s={"models": 0.3})
    with FakeProvider(faults=plan) as p:
        async with httpx.AsyncClient() as h:
            t0 = time.monotonic()
            await h.post(p.url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
            fast = time.monotonic() - t0
            t0 = time.monotonic()
            await h.get(p.url + "/v1/models")
            slow = time.monotonic() - t0
    assert slow >= 0.3 and fast < 0.3


async def test_custom_route_and_unmatched_path(provider) -> None:
    @provider.route("POST", r"/v1/things/(?P<id>[a-z]+)", "thing")
    def thing(req: FakeRequest, match) -> FakeResponse:
        return FakeResponse(201, {"id": match["id"], "got": req.json(), "q": req.query})

    async with httpx.AsyncClient() as h:
        r = await h.post(provider.url + "/v1/things/abc?x=1", json={"a": 1})
        missing = await h.get(provider.url + "/v1/nothing")
    assert r.status_code == 201 and r.json() == {"id": "abc", "got": {"a": 1}, "q": {"x": "1"}}
    assert missing.status_code == 404
    assert provider.counter["thing"] == 1 and provider.counter["<unmatched>"] == 1


async def test_route_extensions_add_routes_after_the_built_in_ones() -> None:
    def refuse_chat(p: FakeProvider) -> None:
        p.route("POST", r"/v1/chat/completions", "chat_refused")(
            lambda req, match: FakeResponse(503, {"error": {"message": "closed"}})
        )

    def add_ping(p: FakeProvider) -> str:
        p.route("GET", r"/v1/ping", "ping")(lambda req, match: {"pong": True})
        return "an extension's return value is ignored"

    with FakeProvider(routes=(refuse_chat, add_ping)) as p:
        async with httpx.AsyncClient() as h:
            chat = await h.post(
                p.url + "/v1/chat/completions", json={"model": "m", "messages": MSG}
            )
            ping = await h.get(p.url + "/v1/ping")
    assert chat.status_code == 503 and ping.json() == {"pong": True}
    assert p.counter == {"chat_refused": 1, "ping": 1}


async def test_handler_bug_is_a_500_and_recorded(provider) -> None:
    @provider.route("GET", r"/v1/boom", "boom")
    def boom(req, match):
        raise RuntimeError("handler bug")

    async with httpx.AsyncClient() as h:
        r = await h.get(provider.url + "/v1/boom")
    assert r.status_code == 500 and provider.errors == ["boom: RuntimeError: handler bug"]


async def test_api_key_is_checked_when_configured() -> None:
    with FakeProvider(api_key="sekrit") as p:
        bad = openai.AsyncOpenAI(base_url=p.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await bad.chat.completions.create(model="m", messages=MSG)
        await bad.close()
        good = openai.AsyncOpenAI(base_url=p.url + "/v1", api_key="sekrit", max_retries=0)
        await good.chat.completions.create(model="m", messages=MSG)
        await good.close()


def test_state_persists(tmp_path) -> None:
    p = FakeProvider(state_dir=tmp_path)
    p.state["jobs"] = {"ft-1": "running"}
    p.persist()
    assert FakeProvider(state_dir=tmp_path).state["jobs"] == {"ft-1": "running"}
