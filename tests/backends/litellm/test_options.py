"""LiteLLMInference without recorded traffic: capabilities per model, options, error mapping,
lazy import, and the never-short rule for n (live against the fake on 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from ste_backends.litellm import LiteLLMInference
from ste_core.backends import InferenceCapabilities
from ste_core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FakeProvider


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


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "x"}, "base_url (litellm option): unknown key; allowed keys: api_base,"),
        ({"max_n": 0}, "max_n (litellm option): got 0; must be 'auto' or >= 1"),
        (
            {"supports_seed": "maybe"},
            'supports_seed (litellm option): got "maybe"; must be true or false, or must be one',
        ),
        ({"extra_kwargs": {"n": 2}}, 'extra_kwargs (litellm option): got {"n": 2}; may not set n'),
        ({"api_key_env": "STE_TEST_UNSET_VARIABLE"}, "STE_TEST_UNSET_VARIABLE, which is not set"),
    ],
)
def test_bad_options_are_configuration_errors(litellm_module, options, message):
    with pytest.raises(ConfigurationError) as info:
        LiteLLMInference(**options)
    assert message in str(info.value)


def test_describe_has_no_key(litellm_module, monkeypatch):
    monkeypatch.setenv("STE_TEST_KEY", "sk-secret-xyz")
    b = LiteLLMInference(api_base="http://127.0.0.1:8000/v1/", api_key_env="STE_TEST_KEY")
    assert b.describe() == {
        "backend": "litellm",
        "api_base": "http://127.0.0.1:8000/v1",
        "extra_kwargs": {},
        "supports_seed": "auto",
    }
    assert "sk-secret-xyz" not in repr(b.describe()) + repr(b.options)
    assert (
        b._kwargs(ChatRequest.of("hosted_vllm/x", [{"role": "user", "content": "x"}]))["api_key"]
        == "sk-secret-xyz"
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


def test_plugin_import_does_not_import_litellm():
    code = (
        "import sys, ste_backends.litellm.plugin, ste_backends.litellm; "
        "assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_listing_backends_does_not_import_litellm():
    code = (
        "import sys, warnings; warnings.simplefilter('ignore')\n"
        "from ste_core.plugins import list_backends\n"
        "names = [b.name for b in list_backends()]\n"
        "assert 'litellm' in names and 'openai' in names, names\n"
        "assert 'litellm' not in sys.modules, 'litellm imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
