"""Together backend options (ste_backends/together/options.py): keys, project and base URL from
the environment, secrets never shown, bad values named."""

from __future__ import annotations

import json

import pytest

from ste_backends.together.finetune import TogetherFineTune
from ste_backends.together.inference import TogetherInference
from ste_backends.together.options import TogetherInferenceOptions, normalise_base_url
from ste_core.errors import AuthenticationError, ConfigurationError

KEY = "tgp_v1_unit-test-secret-key"


def test_api_key_is_never_shown_by_the_backend(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    inf = TogetherInference(api_key=KEY)
    ft = TogetherFineTune(api_key=KEY)
    for backend in (inf, ft):
        assert KEY not in json.dumps(backend.describe())
        assert KEY not in repr(backend.options) and KEY not in str(backend.options.model_dump())
        assert all(KEY not in repr(v) for k, v in vars(backend).items() if k != "_client")
        assert backend._client.api_key == KEY  # the SDK client is the one place it goes


def test_missing_key_is_an_authentication_error_naming_the_env_var(monkeypatch):
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="TOGETHER_API_KEY"):
        TogetherInference()


def test_key_project_and_base_url_from_env(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("TOGETHER_PROJECT_ID", "proj_123")
    monkeypatch.setenv("TOGETHER_BASE_URL", "https://proxy.example/v1/")
    inf = TogetherInference()
    # describe() is the cache identity: the server really called, nothing that only changes
    # how an answer is obtained (project, batch, timeouts).
    assert inf.describe() == {"backend": "together", "base_url": "https://proxy.example"}
    assert TogetherInference(batch=True, timeout_s=5).describe() == inf.describe()
    assert inf._client.max_retries == 0  # the scheduler owns retries
    assert inf._client.project_id == "proj_123"


def test_base_url_normalisation_and_the_default_host_in_describe(monkeypatch):
    monkeypatch.delenv("TOGETHER_BASE_URL", raising=False)
    assert normalise_base_url("https://api.together.xyz/v1") == "https://api.together.xyz"
    assert normalise_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    default = TogetherInferenceOptions()
    assert default.base_url is None  # the SDK picks its own hosts...
    assert default.result_options() == {"base_url": "https://api.together.ai"}  # ...named here


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"serving": "magic"}, 'serving (together option): got "magic"; must be one of'),
        (
            {"min_replicas": 2, "max_replicas": 1},
            "max_replicas (together option): got 1; must be >= min_replicas (2)",
        ),
        (
            {"auto_shutdown_minutes": 10},
            "auto_shutdown_minutes (together option): got 10; must be 0 (off) or between 30 and",
        ),
        (
            {"endpoint_name": "Has Spaces"},
            'endpoint_name (together option): got "Has Spaces"; may use lowercase',
        ),
        ({"max_cost_usd": -1}, "max_cost_usd (together option): got -1; must be >= 0"),
        (
            {"validation_file": "/no/such/file.jsonl"},
            'validation_file (together option): got "/no/such/file.jsonl"; must be an existing',
        ),
        (
            {"progres": print},
            "progres (together option): unknown key; allowed keys: api_key, base_url",
        ),
    ],
)
def test_bad_finetune_options_are_configuration_errors(kwargs, message, monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    with pytest.raises(ConfigurationError) as info:
        TogetherFineTune(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"batch_max_requests": 50001},
            "batch_max_requests (together option): got 50001; must be <= 50000",
        ),
        (
            {"batch_poll_interval_s": 0},
            "batch_poll_interval_s (together option): got 0; must be > 0",
        ),
        (
            {"prices": {"m": [1.0]}},
            "prices (together option): got {\"m\": [1.0]}; the price of 'm' must be [input,",
        ),
        (
            {"prices": {"m": {"input": "x", "output": 1}}},
            'prices.m.0 (together option): got "x"; must be a number',
        ),
        (
            {"timeout": 5},
            'timeout (together option): unknown key (did you mean "timeout_s"?); allowed keys: '
            "api_key, base_url, project_id,",
        ),
    ],
)
def test_bad_inference_options_are_configuration_errors(kwargs, message, monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    with pytest.raises(ConfigurationError) as info:
        TogetherInference(**kwargs)
    assert message in str(info.value)


def test_prices_as_lists_or_tables(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    opts = TogetherInferenceOptions(prices={"a": [0.1, 0.2], "b": {"input": 1, "output": 2}})
    assert opts.prices == {"a": (0.1, 0.2), "b": (1.0, 2.0)}
