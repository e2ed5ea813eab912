"""Typed backend options: declaring them, validating a config's options table before a run,
secrets, describe() derived from the result-changing options, and `ste backends --options`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from pydantic import Field, SecretStr
from typer.testing import CliRunner

from ste_core import (
    BackendOptions,
    ChatRequest,
    Completion,
    ConfigurationError,
    InferenceBackend,
    UnknownBackendError,
    hookimpl,
    option,
    reset_host,
    secret,
)
from ste_core.cli.app import app
from ste_core.plugins import (
    finetune_options,
    get_host,
    inference_options,
    list_backends,
    secret_options,
)

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


# -- validation -------------------------------------------------------------------------------


def test_an_unknown_option_names_the_allowed_keys() -> None:
    with pytest.raises(ConfigurationError) as info:
        inference_options("together", {"bacth": True}, where="judge.options")
    message = str(info.value)
    assert message.startswith("judge.options.bacth (together option): unknown key; allowed keys:")
    assert "batch, batch_poll_interval_s" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no pydantic trace


def test_wrong_types_and_ranges_name_the_key_and_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        finetune_options(
            "together",
            {"min_replicas": 0, "keep_endpoint": "perhaps", "serving": "cheap"},
            where="finetune.options",
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "finetune.options.serving (together option): got \"cheap\"; must be one of 'auto', "
        "'serverless' or 'dedicated'",
        "finetune.options.min_replicas (together option): got 0; must be >= 1",
        'finetune.options.keep_endpoint (together option): got "perhaps"; must be true or false',
    ]


def test_validating_needs_no_construction_and_returns_the_options() -> None:
    opts = inference_options("openai", {"base_url": "http://127.0.0.1:9/v1/", "max_n": 1})
    assert type(opts).__name__ == "OpenAIOptions" and opts.base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(UnknownBackendError, match="No backend named 'nope'"):
        inference_options("nope", {})
    with pytest.raises(ConfigurationError, match="'openai' does not fine-tune"):
        finetune_options("openai", {})


def test_validating_options_imports_no_sdk() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from ste_core.plugins import finetune_options, inference_options
        for name in ("together", "openai", "litellm", "local"):
            inference_options(name, {})
        for name in ("together", "local"):
            finetune_options(name, {})
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    heavy = {"together", "openai", "litellm", "torch", "transformers", "trl"}
    assert not loaded & heavy, sorted(loaded & heavy)


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


def test_secret_options_name_the_variable_to_set() -> None:
    assert secret_options("together", "inference") == {"api_key": "TOGETHER_API_KEY"}
    assert secret_options("together", "finetune") == {"api_key": "TOGETHER_API_KEY"}
    assert secret_options("openai", "inference") == {"api_key": "OPENAI_API_KEY"}
    # api_key_env in the same table renames it; litellm has no variable unless told one.
    assert secret_options("openai", "inference", {"api_key_env": "VLLM_KEY"}) == {
        "api_key": "VLLM_KEY"
    }
    assert secret_options("litellm", "inference") == {"api_key": None}
    assert secret_options("local", "inference") == {}


def test_a_secret_named_by_another_option_is_read_from_that_variable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VLLM_KEY", KEY)
    opts = inference_options("openai", {"api_key_env": "VLLM_KEY"})
    assert opts.api_key is not None and opts.api_key.get_secret_value() == KEY  # type: ignore[attr-defined]


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


# -- ste backends --options -------------------------------------------------------------------

runner = CliRunner()


def test_ste_backends_options_lists_both_kinds_with_their_facts() -> None:
    res = runner.invoke(app, ["backends", "--options", "together"])
    assert res.exit_code == 0, res.output
    inference, finetune = res.output.split("together finetune options:")
    assert inference.startswith("together inference options:")
    assert "  api_key: SecretStr | None, from env TOGETHER_API_KEY; never in a config file" in (
        inference
    )
    assert "  base_url: str | None = null  (changes results)" in inference
    assert "  batch: bool = false\n" in inference
    assert "  prices: dict[str, tuple[float, float]] = {}\n" in inference
    assert '  serving: "auto" | "serverless" | "dedicated" = "auto"\n' in finetune
    assert "batch:" not in finetune


def test_ste_backends_options_as_json() -> None:
    res = runner.invoke(app, ["backends", "--options", "together", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["backend"] == "together" and set(data["options"]) == {"inference", "finetune"}
    rows = {row["name"]: row for row in data["options"]["inference"]}
    assert rows["api_key"] == {
        "name": "api_key",
        "type": "SecretStr | None",
        "default": None,
        "changes_results": False,
        "secret": True,
        "secret_env": "TOGETHER_API_KEY",
        "help": "Together API key",
    }
    assert rows["base_url"]["changes_results"] is True
    assert rows["timeout_s"]["default"] == 120.0 and rows["timeout_s"]["changes_results"] is False


def test_ste_backends_options_of_an_unknown_backend() -> None:
    res = runner.invoke(app, ["backends", "--options", "nope"])
    assert res.exit_code == 2
    assert "No backend named 'nope'" in res.output and "Traceback" not in res.output


def test_a_backend_without_options_says_so(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class Bare(InferenceBackend):
        async def complete(self, request: ChatRequest) -> Completion:
            return Completion(texts=("x",))

    class Plugin:
        @hookimpl
        def register_backends(self, register) -> None:  # type: ignore[no-untyped-def]
            register("bare", inference=Bare)

    monkeypatch.setenv("STE_PLUGINS", "")
    reset_host()
    try:
        get_host().register_plugin(Plugin())
        res = runner.invoke(app, ["backends", "--options", "bare"])
    finally:
        reset_host()
    assert res.exit_code == 0 and res.output.startswith("bare inference options: none\n")


def test_ste_backends_table_keeps_the_brackets_of_the_install_hint(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a, **k: None if n == "trl" else real(n, *a, **k)
    )
    monkeypatch.setenv("COLUMNS", "300")  # one line per cell: rich wraps to the terminal
    res = runner.invoke(app, ["backends"])
    assert res.exit_code == 0, res.output
    assert "pip install 'self-taught-evaluators[local]'" in res.output  # not eaten as markup
