"""Unit tests of the Together backend that need no HTTP: states, options, formats, batch lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ste_backends.together.batch import (
    _line_error,
    custom_id_for,
    parse_result_lines,
    write_batch_input,
)
from ste_backends.together.fake import _inspect
from ste_backends.together.finetune import TogetherFineTune
from ste_backends.together.formats import validate_training_file, write_training_file
from ste_backends.together.inference import TogetherInference, completion_from_body
from ste_backends.together.options import TogetherInferenceOptions, normalise_base_url
from ste_backends.together.states import STATE_MAP, job_status
from ste_core.errors import (
    AuthenticationError,
    ConfigurationError,
    DataFileError,
    PermanentProviderError,
    TransientProviderError,
)
from ste_core.records import (
    ChatRequest,
    DPOExample,
    FineTuneMethod,
    FineTuneSpec,
    JobStatus,
    Message,
    Order,
    SFTExample,
)

KEY = "tgp_v1_unit-test-secret-key"

# -- states -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "status"),
    [
        ("pending", JobStatus.QUEUED),
        ("queued", JobStatus.QUEUED),
        ("running", JobStatus.RUNNING),
        ("compressing", JobStatus.RUNNING),
        ("uploading", JobStatus.RUNNING),
        ("cancel_requested", JobStatus.RUNNING),
        ("cancelled", JobStatus.CANCELLED),
        ("error", JobStatus.FAILED),
        ("user_error", JobStatus.FAILED),
        ("completed", JobStatus.SUCCEEDED),
    ],
)
def test_every_together_state_is_mapped(provider, status):
    assert job_status(provider) is status


def test_state_map_covers_the_sdk_enum_and_unknown_states_keep_polling():
    from together.lib.types.fine_tuning import FinetuneJobStatus

    assert {s.value for s in FinetuneJobStatus} == set(STATE_MAP)
    assert job_status(FinetuneJobStatus.STATUS_USER_ERROR) is JobStatus.FAILED  # enum values too
    assert job_status("some_future_state") is JobStatus.RUNNING
    assert not job_status("cancel_requested").terminal


# -- options, secrets, lazy import ------------------------------------------------------------


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


def test_batch_option_sets_capability(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    assert TogetherInference().capabilities.batch is False
    assert TogetherInference(batch=True).capabilities.batch is True
    assert TogetherInference.capabilities.batch is False  # class default untouched


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
            "timeout (together option): unknown key; allowed keys: api_key, base_url, project_id,",
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


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"wandb_api_key": "x"}, "secret"),
        ({"learning_rate_magic": 1}, "unknown fine-tune option"),
        ({"rpo_alpha": 1.0}, "only apply to DPO"),
    ],
)
def test_spec_options_are_checked(options, match, monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    ft = TogetherFineTune()
    with pytest.raises(ConfigurationError, match=match):
        ft._check_options(FineTuneSpec(base_model="m", options=options))


def test_wandb_needs_the_env_key(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    ft = TogetherFineTune()
    with pytest.raises(ConfigurationError, match="WANDB_API_KEY"):
        ft._secret_kwargs({"wandb": True})
    assert ft._secret_kwargs({}) == {}  # no W&B asked for: no key sent, even if one is set
    monkeypatch.setenv("WANDB_API_KEY", "w-key")
    assert ft._secret_kwargs({}) == {}
    assert ft._secret_kwargs({"wandb_project_name": "p"}) == {
        "wandb_api_key": "w-key",
        "wandb_project_name": "p",
    }


def test_limits_are_checked_before_anything_is_paid(monkeypatch):
    from together.types.finetune_model_limits import FinetuneModelLimits

    from ste_backends.together.fake import TogetherRoutes
    from tests.backends.together.tg_support import FT_MODEL

    routes = TogetherRoutes(provider=None)  # type: ignore[arg-type]
    limits = FinetuneModelLimits.model_validate(routes.limits_json(FT_MODEL))
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    ft = TogetherFineTune()
    ok = FineTuneSpec(base_model=FT_MODEL)
    ft._check_limits(ok, limits)
    for bad, match in [
        (ok.model_copy(update={"epochs": 50}), "epochs"),
        (FineTuneSpec(base_model=FT_MODEL, batch_size=64), "batch_size"),
        (FineTuneSpec(base_model=FT_MODEL, lora={"r": 128}), "rank"),
        (FineTuneSpec(base_model=FT_MODEL, max_length=100000), "max_length"),
        (FineTuneSpec(base_model=FT_MODEL, learning_rate=5.0), "learning_rate"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            ft._check_limits(bad, limits)


def test_plugin_registers_together_without_importing_the_sdk():
    code = (
        "import sys; import ste_backends.together.plugin, ste_backends.together.finetune, "
        "ste_backends.together.inference; "
        "assert not any(m == 'together' or m.startswith('together.') for m in sys.modules)"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_through_the_entry_point(monkeypatch):
    from ste_core import get_inference_backend, reset_host

    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    monkeypatch.setenv("STE_PLUGINS", "together")
    reset_host()
    try:
        backend = get_inference_backend("together")
        assert isinstance(backend, TogetherInference) and backend.name == "together"
    finally:
        reset_host()


# -- training file formats --------------------------------------------------------------------

PROMPT = (Message(role="system", content="Judge."), Message(role="user", content="A or B?"))
SFT = [SFTExample(messages=PROMPT, completion="[[A]]", pair_id="p", order=Order.AB)]
DPO = [DPOExample(messages=PROMPT, chosen="[[A]]", rejected="[[B]]", pair_id="p", order=Order.AB)]
# The example line from Together's preference fine-tuning docs (docs.together.ai).
DOCS_DPO_LINE = {
    "input": {
        "messages": [
            {"role": "assistant", "content": "Hello, how can I assist you today?"},
            {"role": "user", "content": "Can you tell me about the rise of the Roman Empire?"},
        ]
    },
    "preferred_output": [{"role": "assistant", "content": "The Roman Empire rose from ..."}],
    "non_preferred_output": [{"role": "assistant", "content": "It rose due to strength."}],
}
DOCS_SFT_LINE = {
    "messages": [
        {"role": "system", "content": "This is a system prompt."},
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I'm doing well, thank you! How can I help you?"},
    ]
}


def test_sft_file_is_conversational_format(tmp_path):
    path = tmp_path / "sft.jsonl"
    assert write_training_file(SFT, FineTuneMethod.SFT, path) == 1
    line = json.loads(path.read_text())
    assert line == {
        "messages": [
            {"role": "system", "content": "Judge."},
            {"role": "user", "content": "A or B?"},
            {"role": "assistant", "content": "[[A]]"},
        ]
    }
    assert validate_training_file(path, FineTuneMethod.SFT) == 1
    assert _inspect(path.read_bytes(), "fine-tune") == ("conversation", None, 1)


def test_dpo_file_is_preference_format(tmp_path):
    path = tmp_path / "dpo.jsonl"
    write_training_file(DPO, FineTuneMethod.DPO, path)
    line = json.loads(path.read_text())
    assert set(line) == {"input", "preferred_output", "non_preferred_output"}
    assert line["preferred_output"] == [{"role": "assistant", "content": "[[A]]"}]
    assert line["non_preferred_output"] == [{"role": "assistant", "content": "[[B]]"}]
    assert line["input"]["messages"][-1] == {"role": "user", "content": "A or B?"}
    assert validate_training_file(path, FineTuneMethod.DPO) == 1
    assert _inspect(path.read_bytes(), "fine-tune") == ("preference_openai", None, 1)


@pytest.mark.parametrize(
    ("method", "line"),
    [(FineTuneMethod.SFT, DOCS_SFT_LINE), (FineTuneMethod.DPO, DOCS_DPO_LINE)],
)
def test_validator_accepts_the_documented_examples(tmp_path, method, line):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert validate_training_file(path, method) == 1


def _mutated(line: dict, **changes: object) -> dict:
    out = json.loads(json.dumps(line))
    out.update(changes)
    return out


@pytest.mark.parametrize(
    ("method", "line", "match"),
    [
        (FineTuneMethod.SFT, {"prompt": "x", "completion": "y"}, "messages"),
        (
            FineTuneMethod.SFT,
            {"messages": [{"role": "user", "content": "only a question"}]},
            "last message",
        ),
        (FineTuneMethod.SFT, {"messages": [{"role": "judge", "content": "x"}]}, "role"),
        (FineTuneMethod.DPO, DOCS_SFT_LINE, "keys"),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, preferred_output=[{"role": "assistant", "content": "a"}] * 2),
            "exactly one assistant",
        ),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, non_preferred_output=[{"role": "user", "content": "a"}]),
            "exactly one assistant",
        ),
        (
            FineTuneMethod.DPO,
            _mutated(DOCS_DPO_LINE, non_preferred_output=DOCS_DPO_LINE["preferred_output"]),
            "identical",
        ),
    ],
)
def test_validator_rejects_bad_lines_with_the_line_number(tmp_path, method, line, match):
    path = tmp_path / "bad.jsonl"
    good = DOCS_SFT_LINE if method is FineTuneMethod.SFT else DOCS_DPO_LINE
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(DataFileError, match=r"bad\.jsonl:2: not in Together's format") as info:
        validate_training_file(path, method)
    assert match in str(info.value)


def test_validator_names_a_line_that_is_not_json(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(DOCS_SFT_LINE) + "\n\n{truncated\n")
    with pytest.raises(DataFileError, match=r"bad\.jsonl:3: not valid JSON"):
        validate_training_file(path, FineTuneMethod.SFT)


def test_wrong_record_type_and_empty_sets_are_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="DPOExample"):
        write_training_file(SFT, FineTuneMethod.DPO, tmp_path / "x.jsonl")
    with pytest.raises(ConfigurationError, match="empty"):
        write_training_file([], FineTuneMethod.SFT, tmp_path / "y.jsonl")
    assert list(tmp_path.iterdir()) == []  # neither a partial nor an empty file is left


# -- batch lines ------------------------------------------------------------------------------


def _req(i: int) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": f"q{i}"}], n=2, seed=i)


def test_custom_ids_are_short_unique_and_stable(tmp_path):
    reqs = [_req(i) for i in range(50)] + [_req(0)]  # a duplicate request gets its own id
    ids = write_batch_input(reqs, tmp_path / "in.jsonl")
    assert len(set(ids)) == len(ids) and all(len(i) <= 64 for i in ids)
    assert ids == write_batch_input(reqs, tmp_path / "again.jsonl")
    assert ids[3] == custom_id_for(3, reqs[3])
    first = json.loads((tmp_path / "in.jsonl").read_text().splitlines()[0])
    assert first["custom_id"] == ids[0] and first["body"]["n"] == 2
    assert first["body"]["messages"] == [{"role": "user", "content": "q0"}]
    assert _inspect((tmp_path / "in.jsonl").read_bytes(), "batch-api")[1] is None


def test_error_lines_map_to_typed_errors():
    line = {
        "custom_id": "c",
        "response": {"status_code": 400, "body": {"error": {"message": "bad max_tokens"}}},
    }
    err = _line_error(line)
    assert isinstance(err, PermanentProviderError) and "bad max_tokens" in str(err)
    assert isinstance(
        _line_error({"custom_id": "c", "error": {"message": "worker died"}}),
        TransientProviderError,
    )
    assert isinstance(
        _line_error({"custom_id": "c", "response": {"status_code": 503, "body": {}}}),
        TransientProviderError,
    )


def test_garbled_result_lines_are_reported_not_dropped():
    lines = list(parse_result_lines(b'{"custom_id": "a"}\n\nnot json\n'))
    assert lines[0] == {"custom_id": "a"} and "_unparsable" in lines[1]


def test_malformed_completion_bodies_are_transient():
    for body in ({}, {"choices": []}, {"choices": [{"message": {"content": None}}]}):
        with pytest.raises(TransientProviderError):
            completion_from_body(body, request_id=None, latency_s=0, requested_n=1)
    ok = {"choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop"}]}
    with pytest.raises(TransientProviderError, match="2 were requested"):
        completion_from_body(ok, request_id=None, latency_s=0, requested_n=2)


def test_files_here_are_named_for_the_test_package():
    # A `together` test package would shadow the SDK; this directory must stay a plain folder.
    assert not (Path(__file__).parent / "__init__.py").exists()
