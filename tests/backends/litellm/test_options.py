"""Options of the litellm backend (ste_backends/litellm/options.py): bad values named, the key
never in describe()."""

from __future__ import annotations

import pytest

from ste_backends.litellm import LiteLLMInference
from ste_core.errors import ConfigurationError
from ste_core.records import ChatRequest


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
