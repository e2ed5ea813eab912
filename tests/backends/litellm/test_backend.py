"""The litellm backend (ste_backends/litellm/backend.py) through real `litellm.acompletion` calls,
recorded against the fake provider; then without recorded traffic: capabilities per model, error
mapping, and the never-short rule for n (live against the fake on 127.0.0.1).

`hosted_vllm/...` and `openai/...` models take `n`; `cerebras/...` is one whose provider litellm
knows takes no `n`, so the backend must make n separate requests. All point `api_base` at the fake
(OpenAI wire format). Replayed from `cassettes/test_backend/` in CI
(`--record-mode=none --block-network`); re-record with `--record-mode=rewrite`.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ste_backends.litellm import LiteLLMInference
from ste_core.backends import InferenceCapabilities
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FakeProvider, FaultPlan
from tests.backends.cassette_support import (
    RECORDING_KEY,
    WRONG_KEY,
    assert_cassettes_hold_no_secrets,
)

CASSETTES = Path(__file__).parent / "cassettes" / Path(__file__).stem


def ask(model: str, text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of(model, [{"role": "user", "content": text}], **params)


@pytest.mark.vcr
async def test_hosted_vllm_n3_in_one_request(litellm_module, make_fake, vcr, replaying):
    fake = make_fake(api_key=RECORDING_KEY)
    backend = LiteLLMInference(api_base=fake.base_url, api_key=RECORDING_KEY)
    c = await backend.complete(
        ask("hosted_vllm/fake-acc80", "Explain photosynthesis", n=3, temperature=0.8, seed=7)
    )
    assert len(c.texts) == 3 and len(set(c.texts)) == 3
    assert "photosynthesis" in c.texts[0].lower()
    assert c.finish_reasons == ("stop", "stop", "stop")
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert c.request_id and c.request_id.startswith("req_")  # the provider's x-request-id
    assert c.cost_usd is None  # litellm has no price for a self-hosted model: unknown, not 0
    assert len(vcr.requests) == 1
    sent = json.loads(vcr.requests[0].body)
    assert sent["n"] == 3 and sent["seed"] == 7
    if replaying:
        assert vcr.play_count == 1 and fake.requests_total == 0


@pytest.mark.vcr
async def test_n_rejecting_provider_gets_n_separate_requests(litellm_module, make_fake, vcr):
    fake = make_fake()
    backend = LiteLLMInference(api_base=fake.base_url, api_key="unused")
    model = "cerebras/fake-acc80"
    assert backend.traits(model)[0] == 1  # litellm's table: cerebras takes no `n`
    c = await backend.complete(ask(model, "Name three rivers", n=3, temperature=0.8, seed=7))
    assert len(c.texts) == 3 and len(set(c.texts)) == 3  # three distinct samples...
    assert len(vcr.requests) == 3  # ...from three requests
    bodies = [json.loads(r.body) for r in vcr.requests]
    assert all("n" not in b for b in bodies)
    assert sorted(b["seed"] for b in bodies) == [7, 8, 9]


@pytest.mark.vcr
async def test_cost_from_litellm_price_map(litellm_module, make_fake):
    fake = make_fake()
    backend = LiteLLMInference(api_base=fake.base_url, api_key="unused")
    c = await backend.complete(ask("openai/gpt-4o-mini", "What is rain?", max_tokens=50))
    assert c.cost_usd is not None and c.cost_usd > 0
    prices = litellm_module.model_cost["gpt-4o-mini"]
    assert c.cost_usd == pytest.approx(
        c.usage.prompt_tokens * prices["input_cost_per_token"]
        + c.usage.completion_tokens * prices["output_cost_per_token"]
    )


@pytest.mark.vcr
async def test_401_is_authentication_error(litellm_module, make_fake):
    fake = make_fake(api_key=RECORDING_KEY)
    backend = LiteLLMInference(api_base=fake.base_url, api_key=WRONG_KEY)
    with pytest.raises(AuthenticationError) as info:
        await backend.complete(ask("hosted_vllm/fake-acc80", "hi"))
    assert info.value.status == 401 and not info.value.retryable
    assert "Invalid API key provided" in str(info.value) and "api_key_env" in str(info.value)


@pytest.mark.vcr
async def test_429_is_rate_limit_with_retry_after(litellm_module, make_fake):
    fake = make_fake(faults=FaultPlan(rate_limit_every=1, retry_after_s=3))
    backend = LiteLLMInference(api_base=fake.base_url, api_key="unused")
    with pytest.raises(RateLimitError) as info:
        await backend.complete(ask("hosted_vllm/fake-acc80", "hi"))
    assert info.value.retry_after == 3.0 and info.value.retryable
    assert "injected rate limit: slow down" in str(info.value)


@pytest.mark.vcr
async def test_500_is_transient(litellm_module, make_fake):
    fake = make_fake(faults=FaultPlan(server_error_every=1))
    backend = LiteLLMInference(api_base=fake.base_url, api_key="unused")
    with pytest.raises(TransientProviderError) as info:
        await backend.complete(ask("hosted_vllm/fake-acc80", "hi"))
    assert info.value.status == 500 and info.value.retryable


def test_cassettes_hold_no_secrets():
    assert_cassettes_hold_no_secrets(CASSETTES, "test_401_is_authentication_error.yaml")


# -- without recorded traffic ------------------------------------------------------------------


@pytest.fixture
def backend(litellm_module):  # type: ignore[no-untyped-def]
    return LiteLLMInference()


@pytest.mark.parametrize(
    ("model", "max_n", "seed"),
    [
        ("anthropic/claude-3-5-sonnet-20240620", 1, False),
        ("bedrock/anthropic.claude-3-sonnet-20240229-v1:0", 1, False),
        ("ollama_chat/llama3", 1, True),
        ("hosted_vllm/my-judge", None, True),
        ("together_ai/meta-llama/Llama-3-8b-chat-hf", None, True),
        ("gpt-4o-mini", None, True),
        ("no-such-provider/model", 1, False),  # litellm cannot place it: the safe answer
    ],
)
def test_traits_come_from_litellm_table(backend, model, max_n, seed):
    assert backend.traits(model) == (max_n, seed)


def test_capabilities_for_a_configured_model(litellm_module):
    assert LiteLLMInference.capabilities == InferenceCapabilities()  # `ste backends` (no import)
    b = LiteLLMInference(model="anthropic/claude-3-5-sonnet-20240620", concurrency=3)
    assert b.capabilities == InferenceCapabilities(max_n=1, batch=False, suggested_concurrency=3)
    assert LiteLLMInference(model="hosted_vllm/x").capabilities.max_n is None
    assert LiteLLMInference(model="hosted_vllm/x", max_n=1).capabilities.max_n == 1
    assert LiteLLMInference().capabilities.max_n is None  # per-request decision inside


def test_seed_is_dropped_only_where_unsupported(backend):
    r = ChatRequest.of(
        "anthropic/claude-3-5-sonnet-20240620",
        [{"role": "user", "content": "x"}],
        seed=3,
        top_p=0.9,
    )
    kw = backend._kwargs(r)
    assert "seed" not in kw and kw["top_p"] == 0.9
    assert kw["drop_params"] is False and kw["num_retries"] == 0 and kw["max_retries"] == 0
    kw = backend._kwargs(r.model_copy(update={"model": "hosted_vllm/x"}))
    assert kw["seed"] == 3


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic notes from litellm's lazy imports
def test_litellm_itself_refuses_n_for_such_a_model(litellm_module):
    """Why the fallback exists: with drop_params off, litellm rejects n for cerebras (before
    any HTTP call); with it on, it would silently return one sample."""
    with pytest.raises(litellm_module.UnsupportedParamsError):
        litellm_module.completion(
            model="cerebras/llama3.1-8b",
            messages=[{"role": "user", "content": "x"}],
            n=3,
            api_key="unused",
            drop_params=False,
            api_base="http://127.0.0.1:9/v1",
        )


def _response(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        headers=headers or {},
        content=b'{"error": {"message": "from server"}}',
        request=httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions"),
    )


def test_litellm_exceptions_map_to_typed_errors(litellm_module, backend):
    ll = litellm_module
    cases = [
        (ll.AuthenticationError("m", llm_provider="anthropic", model="x"), AuthenticationError),
        (
            ll.PermissionDeniedError("m", llm_provider="x", model="x", response=_response(403)),
            AuthenticationError,
        ),
        (
            ll.RateLimitError(
                "m", llm_provider="x", model="x", response=_response(429, {"retry-after-ms": "250"})
            ),
            RateLimitError,
        ),
        (ll.BadRequestError("m", llm_provider="x", model="x"), PermanentProviderError),
        (ll.ContextWindowExceededError("m", llm_provider="x", model="x"), PermanentProviderError),
        (ll.UnsupportedParamsError("m", llm_provider="x", model="x"), PermanentProviderError),
        (ll.NotFoundError("m", llm_provider="x", model="x"), PermanentProviderError),
        (ll.InternalServerError("m", llm_provider="x", model="x"), TransientProviderError),
        (ll.ServiceUnavailableError("m", llm_provider="x", model="x"), TransientProviderError),
        (ll.BadGatewayError("m", llm_provider="x", model="x"), TransientProviderError),
        (ll.Timeout("m", llm_provider="x", model="x"), TransientProviderError),
        (ll.APIConnectionError("m", llm_provider="x", model="x"), TransientProviderError),
        (
            ll.APIError(status_code=422, message="m", llm_provider="x", model="x"),
            PermanentProviderError,
        ),
        (
            ll.APIError(status_code=503, message="m", llm_provider="x", model="x"),
            TransientProviderError,
        ),
    ]
    for exc, expected in cases:
        mapped = backend._map(exc)
        assert type(mapped) is expected, (type(exc).__name__, mapped)
    rate = backend._map(cases[2][0])
    assert rate.retry_after == pytest.approx(0.25)
    assert "ANTHROPIC_API_KEY" in str(backend._map(cases[0][0]))
    bug = ValueError("not a provider failure")
    assert backend._map(bug) is bug  # re-raised as is, never retried


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_fewer_choices_than_asked_are_topped_up(litellm_module):
    with FakeProvider() as fake:
        real = fake.find_route("POST", "/v1/chat/completions")[0].handler

        @fake.route("POST", r"/v1/chat/completions", "chat_ignores_n")
        def ignores_n(req, match):  # type: ignore[no-untyped-def]
            body = req.json()
            body.pop("n", None)  # like a server that does not implement n
            return real(
                type(req)(req.method, req.path, req.query, req.headers, json.dumps(body).encode()),
                match,
            )

        backend = LiteLLMInference(api_base=fake.base_url, api_key="unused")
        c = await backend.complete(
            ChatRequest.of(
                "hosted_vllm/fake-acc80",
                [{"role": "user", "content": "Tides?"}],
                n=3,
                temperature=0.9,
                seed=1,
            )
        )
        assert len(c.texts) == 3 and len(set(c.texts)) == 3
        assert fake.counter["chat_ignores_n"] == 3  # the n=3 call (1 choice) + 2 top-ups
