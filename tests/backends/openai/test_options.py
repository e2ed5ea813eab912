"""Constructor options of the openai backend (ste_backends/openai/options.py): keys, base URL,
capabilities and describe() that follow them, bad values named."""

from __future__ import annotations

import pytest

from ste_backends.openai import OpenAIInference
from ste_backends.openai.backend import PLACEHOLDER_KEY
from ste_core.backends import InferenceCapabilities
from ste_core.errors import ConfigurationError


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_openai_without_a_key_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIInference()


def test_local_server_gets_a_placeholder_key_and_describe_has_no_key(monkeypatch):
    b = OpenAIInference(base_url="http://127.0.0.1:8000/v1/")
    assert b._api_key == PLACEHOLDER_KEY
    assert b.describe() == {
        "backend": "openai",
        "base_url": "http://127.0.0.1:8000/v1",
        "supports_seed": True,
        "extra_body": {},
    }
    monkeypatch.setenv("MY_VLLM_KEY", "sk-secret-local")
    b = OpenAIInference(base_url="http://127.0.0.1:8000/v1", api_key_env="MY_VLLM_KEY")
    assert b._api_key == "sk-secret-local"
    assert "sk-secret-local" not in repr(b.describe()) + repr(b.options)


def test_key_and_base_url_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    b = OpenAIInference()
    assert b._api_key == "sk-from-env" and b.options.base_url == "http://127.0.0.1:9999/v1"
    # The base URL from the environment is the one in describe(): another server, another cache.
    assert b.describe()["base_url"] == "http://127.0.0.1:9999/v1"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert OpenAIInference().describe()["base_url"] == "https://api.openai.com/v1"


def test_capabilities_follow_the_options():
    assert OpenAIInference.capabilities == InferenceCapabilities()  # what `ste backends` shows
    b = OpenAIInference(base_url="http://x/v1", max_n=1, batch=True, concurrency=4)
    assert b.capabilities == InferenceCapabilities(max_n=1, batch=True, suggested_concurrency=4)
    assert OpenAIInference(base_url="http://x/v1").capabilities.max_n is None


def test_seed_is_not_sent_when_unsupported():
    from ste_core.records import ChatRequest

    r = ChatRequest.of("m", [{"role": "user", "content": "x"}], seed=3)
    assert OpenAIInference(base_url="http://x/v1")._body(r)["seed"] == 3
    assert "seed" not in OpenAIInference(base_url="http://x/v1", supports_seed=False)._body(r)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"api_base": "x"}, "api_base (openai option): unknown key; allowed keys: base_url,"),
        ({"max_n": 0}, "max_n (openai option): got 0; must be >= 1"),
        ({"max_tokens_field": "tokens"}, 'max_tokens_field (openai option): got "tokens"; must'),
        ({"extra_body": {"n": 4}}, 'extra_body (openai option): got {"n": 4}; may not set n'),
        ({"timeout": 0}, "timeout (openai option): got 0; must be > 0"),
    ],
)
def test_bad_options_are_configuration_errors(options, message):
    with pytest.raises(ConfigurationError) as info:
        OpenAIInference(base_url="http://x/v1", **options)
    assert message in str(info.value)
