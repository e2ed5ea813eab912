"""Backends and their typed options (ste_core.backends): declaring options, building a backend
from them, secrets, describe() derived from the result-changing options, the default
complete_many."""

from __future__ import annotations

import json

import pytest
from pydantic import Field, SecretStr

from ste_core import (
    BackendOptions,
    ChatRequest,
    Completion,
    ConfigurationError,
    InferenceBackend,
    option,
    secret,
)
from ste_core.plugins import get_host, inference_options, list_backends

KEY = "sk-unit-test-secret-4711"


class ProviderOptions(BackendOptions):
    api_key: SecretStr | None = secret(env="STE_TEST_PROVIDER_KEY", help="the key")
    base_url: str = option("https://api.example", changes_results=True, help="server")
    temperature_floor: float = option(0.0, ge=0, changes_results=True, help="sampling")
    timeout_s: float = option(30.0, gt=0, changes_results=False, help="per request")


class ProviderInference(InferenceBackend):
    name = "provider"
    Options = ProviderOptions

    async def complete(self, request: ChatRequest) -> Completion:
        return Completion(texts=("x",))


# -- declaring options ------------------------------------------------------------------------


def test_changes_results_is_mandatory_for_plugin_authors() -> None:
    with pytest.raises(TypeError, match=r"Forgot\.timeout_s is declared without option\(\)"):

        class Forgot(BackendOptions):
            timeout_s: float = Field(30.0, description="a plain pydantic field")

    with pytest.raises(TypeError, match="changes_results"):
        option(30.0, help="no decision made")  # type: ignore[call-arg]


def test_a_secret_must_be_a_secret_str() -> None:
    with pytest.raises(TypeError, match=r"Plain\.token is a secret\(\) and must be typed"):

        class Plain(BackendOptions):
            token: str | None = secret(env="X", help="would be printed")


def test_a_backend_takes_an_options_instance_or_keywords(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("STE_TEST_PROVIDER_KEY", raising=False)
    by_keywords = ProviderInference(timeout_s=5)
    by_instance = ProviderInference(ProviderOptions(timeout_s=5))
    assert by_keywords.options == by_instance.options
    with pytest.raises(TypeError, match="not both"):
        ProviderInference(ProviderOptions(), timeout_s=5)
    with pytest.raises(TypeError, match="takes ProviderOptions, not BackendOptions"):
        ProviderInference(BackendOptions())  # another backend's (here: no) options
    with pytest.raises(ConfigurationError, match=r"timeout_s \(provider option\): got 0"):
        ProviderInference(timeout_s=0)


def test_the_host_builds_from_an_options_instance(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    opts = inference_options("openai", {"base_url": "http://127.0.0.1:9/v1"})
    backend = get_host().inference_backend("openai", opts)
    assert backend.options is opts
    with pytest.raises(TypeError, match="takes OpenAIOptions, not ProviderOptions"):
        get_host().inference_backend("openai", ProviderOptions())


# -- secrets ----------------------------------------------------------------------------------


def test_a_secret_comes_from_the_environment_and_is_never_shown(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STE_TEST_PROVIDER_KEY", KEY)
    backend = ProviderInference()
    assert backend.options.api_key is not None
    assert backend.options.api_key.get_secret_value() == KEY
    shown = [
        json.dumps(backend.describe()),
        repr(backend.options),
        str(backend.options),
        backend.options.model_dump_json(),
        json.dumps(backend.options.effective()),
    ]
    assert not [text for text in shown if KEY in text]
    # A bad value next to it, a bad value for it: the error never echoes the key.
    for bad in ({"api_key": KEY, "timeout_s": -1}, {"api_key": [KEY]}):
        with pytest.raises(ConfigurationError) as info:
            ProviderInference(**bad)
        assert KEY not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        ProviderInference(api_key=[KEY])
    assert str(info.value) == "api_key (provider option): must be a string"


# -- describe() -------------------------------------------------------------------------------


def test_describe_holds_every_result_changing_option_and_nothing_else(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("STE_TEST_PROVIDER_KEY", KEY)
    backend = ProviderInference(base_url="http://b", temperature_floor=0.5, timeout_s=1)
    assert backend.describe() == {
        "backend": "provider",
        "base_url": "http://b",
        "temperature_floor": 0.5,
    }
    assert ProviderInference(timeout_s=99).describe() == ProviderInference().describe()


@pytest.mark.parametrize("kind", ["inference", "finetune"])
def test_every_registered_backend_describes_exactly_its_result_options(kind: str) -> None:
    for info in list_backends():
        cls = getattr(info, kind)
        if cls is None:
            continue
        opts = cls.Options()
        described = opts.result_options()
        assert list(described) == cls.Options.result_option_names(), info.name
        assert not set(described) & set(cls.Options.secret_names()), info.name
        json.dumps(described)  # it enters cache keys: plain JSON


def test_describe_uses_the_base_url_actually_called(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TOGETHER_BASE_URL", "http://127.0.0.1:8777/v1")
    assert inference_options("together", {}).result_options() == {
        "base_url": "http://127.0.0.1:8777"
    }
    monkeypatch.delenv("TOGETHER_BASE_URL")
    assert inference_options("together", {}).result_options() == {
        "base_url": "https://api.together.ai"
    }
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert inference_options("openai", {}).result_options()["base_url"] == (
        "http://127.0.0.1:8000/v1"
    )


def test_options_that_do_not_change_results_leave_describe_alone() -> None:
    base = inference_options("together", {}).result_options()
    slow = inference_options("together", {"batch": True, "timeout_s": 9, "concurrency": 2})
    assert slow.result_options() == base
    tuned = inference_options("openai", {"base_url": "http://x/v1", "extra_body": {"top_k": 5}})
    assert tuned.result_options()["extra_body"] == {"top_k": 5}


# -- the default complete_many ----------------------------------------------------------------


async def test_default_complete_many_yields_every_item_and_errors_per_item() -> None:
    from ste_core import TransientProviderError

    class Flaky(InferenceBackend):
        async def complete(self, request: ChatRequest) -> Completion:
            if request.sample_index % 2:
                raise TransientProviderError("odd ones fail")
            return Completion(texts=(str(request.sample_index),))

    reqs = [
        ChatRequest.of("m", [{"role": "user", "content": "x"}], sample_index=i) for i in range(7)
    ]
    items = [item async for item in Flaky().complete_many(reqs, concurrency=3)]
    assert sorted(i.index for i in items) == list(range(7))
    assert {i.index for i in items if i.error} == {1, 3, 5}
    assert all(i.completion.texts == (str(i.index),) for i in items if i.completion)
