"""The litellm backend through real `litellm.acompletion` calls, recorded against the fake provider.

`hosted_vllm/...` and `openai/...` models take `n`; `cerebras/...` is one whose provider litellm
knows takes no `n`, so the backend must make n separate requests. All point `api_base` at the fake
(OpenAI wire format). Replayed from `cassettes/test_backend/` in CI
(`--record-mode=none --block-network`); re-record with `--record-mode=rewrite`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ste_backends.litellm import LiteLLMInference
from ste_core.errors import AuthenticationError, RateLimitError, TransientProviderError
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FaultPlan
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
