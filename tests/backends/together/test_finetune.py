"""The Together fine-tune backend (ste_backends/together/finetune.py): SFT, DPO,
continue-from-previous, cancel, failure, budget through the real SDK (cassettes), then the checks
of a job's options and limits that need no HTTP.

Recorded against the fake provider's Together routes; replayed in CI without it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ste_backends.together.finetune import TogetherFineTune
from ste_backends.together.formats import write_training_file
from ste_core.errors import BudgetExceeded, ConfigurationError
from ste_core.records import (
    DPOExample,
    DPOSpec,
    FineTuneMethod,
    FineTuneSpec,
    JobStatus,
    LoRAConfig,
    Message,
    Order,
    SFTExample,
)
from tests.backends.together.tg_support import FT_MODEL, RECORDING_KEY

PROMPT = (
    Message(role="system", content="You are a careful judge."),
    Message(role="user", content="Which answer is better for: what is rain? A: ... B: ..."),
)


def sft_examples(n: int = 4) -> list[SFTExample]:
    return [
        SFTExample(
            messages=PROMPT,
            completion=f"Answer A is on topic ({i}).\n[[A]]",
            pair_id=f"p{i}",
            order=Order.AB,
        )
        for i in range(n)
    ]


def dpo_examples(n: int = 4) -> list[DPOExample]:
    return [
        DPOExample(
            messages=PROMPT,
            chosen=f"A answers the question ({i}).\n[[A]]",
            rejected=f"B reads better ({i}).\n[[B]]",
            pair_id=f"p{i}",
            order=Order.AB,
        )
        for i in range(n)
    ]


def write(backend, tmp_path: Path, name: str, method: FineTuneMethod) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    examples = sft_examples() if method is FineTuneMethod.SFT else dpo_examples()
    assert backend.write_training_file(examples, method, path) == 4
    return path


async def run_to_end(backend, state):  # type: ignore[no-untyped-def]
    states = [state]
    while not states[-1].status.terminal:
        states.append(await backend.poll(state.job_id))
    return states


def create_body(vcr) -> dict:  # type: ignore[no-untyped-def]
    [req] = [r for r in vcr.requests if r.method == "POST" and r.path == "/v1/fine-tunes"]
    return json.loads(req.body)


@pytest.mark.vcr
async def test_sft_job_lifecycle(make_backend, tmp_path, interactions, vcr):
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    spec = FineTuneSpec(
        base_model=FT_MODEL,
        lora=LoRAConfig(r=8, alpha=16, dropout=0.05),
        epochs=2,
        learning_rate=2e-5,
        batch_size=8,
        suffix="judge",
        seed=13,
        options={"n_checkpoints": 1, "warmup_ratio": 0.1},
    )
    first = await backend.submit(spec, path)
    assert first.job_id.startswith("ft-") and first.status is JobStatus.QUEUED
    assert first.provider_status == "pending"
    states = await run_to_end(backend, first)
    assert [s.provider_status for s in states] == ["pending", "queued", "running", "completed"]
    assert [s.status for s in states][-1] is JobStatus.SUCCEEDED
    # Events: each poll reports only the ones not seen before.
    all_events = [e for s in states for e in s.events]
    assert len(all_events) == len(set(all_events)) and len(all_events) >= 5
    assert any("[job_complete]" in e for e in states[-1].events)
    assert states[2].progress == pytest.approx(0.5) and states[-1].progress == 1.0
    assert [s.phase for s in states] == ["pending", "queued", "running", "completed"]
    assert (states[2].step, states[2].total_steps) == (10, 20)
    assert (states[0].step, states[0].total_steps) == (None, None)
    model = states[-1].model
    assert model is not None and model.model.endswith("-judge-ft1")
    assert model.base_model == FT_MODEL and model.inference_backend == "together"
    assert model.metadata["job_id"] == first.job_id
    assert model.metadata["training_type"] == "Lora"
    assert model.metadata["model_object_id"].startswith("ml_")
    body = create_body(vcr)
    assert body["model"] == FT_MODEL and body["n_epochs"] == 2 and body["batch_size"] == 8
    assert body["training_type"] == {
        "type": "Lora",
        "lora_r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "lora_trainable_modules": "all-linear",
    }
    assert body["training_method"] == {"method": "sft", "train_on_inputs": "auto"}
    assert body["suffix"] == "judge" and body["random_seed"] == 13 and body["warmup_ratio"] == 0.1
    assert "wandb_key" not in body  # no W&B requested: no key sent
    calls = [(m, p) for m, p, _ in interactions()]
    # Upload: POST /v1/files -> 302 -> PUT presigned -> preprocess; then the SDK's create
    # calls the price estimate before POST /v1/fine-tunes.
    assert calls[0] == ("GET", "/v1/fine-tunes/models/limits")
    assert calls[1] == ("POST", "/v1/files") and calls[2][0] == "PUT"
    assert calls[3][1].endswith("/preprocess")
    assert calls[4:6] == [("POST", "/v1/fine-tunes/estimate-price"), ("POST", "/v1/fine-tunes")]
    assert interactions()[1][2] == 302


@pytest.mark.vcr
async def test_validation_file_is_uploaded_and_evaluated(make_backend, tmp_path, vcr):
    held_out = tmp_path / "judge_sft_val.jsonl"
    write_training_file(sft_examples(2), FineTuneMethod.SFT, held_out)
    backend = make_backend("finetune", validation_file=str(held_out))  # as a config gives it
    train = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    state = await backend.submit(FineTuneSpec(base_model=FT_MODEL), train)
    assert state.job_id.startswith("ft-")
    body = create_body(vcr)
    uploads = [r for r in vcr.requests if r.method == "POST" and r.path == "/v1/files"]
    assert len(uploads) == 2 and b"judge_sft_val.jsonl" in uploads[1].body
    assert body["validation_file"].startswith("file-")
    assert body["validation_file"] != body["training_file"] and body["n_evals"] == 1


@pytest.mark.vcr
async def test_dpo_job_then_cancel(make_backend, tmp_path, vcr):
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_dpo.jsonl", FineTuneMethod.DPO)
    spec = FineTuneSpec(
        base_model=FT_MODEL,
        method=FineTuneMethod.DPO,
        dpo_beta=0.2,
        dpo=DPOSpec(nll_weight=1.0),
    )
    first = await backend.submit(spec, path)
    polled = await backend.poll(first.job_id)
    assert polled.status is JobStatus.QUEUED
    cancelling = await backend.cancel(first.job_id)
    assert cancelling.provider_status == "cancel_requested"
    assert cancelling.status is JobStatus.RUNNING  # not terminal until Together says so
    final = await backend.poll(first.job_id)
    assert final.status is JobStatus.CANCELLED and final.model is None
    body = create_body(vcr)
    assert body["training_method"]["method"] == "dpo"
    assert body["training_method"]["dpo_beta"] == 0.2
    assert body["training_method"]["rpo_alpha"] == 1.0  # DPO+NLL
    assert body["training_method"]["dpo_reference_free"] is False
    assert "train_on_inputs" not in body["training_method"]


@pytest.mark.vcr
async def test_dpo_loss_settings_reach_the_job_request(make_backend, tmp_path, vcr):
    """[finetune.dpo]: length normalisation alone, then SimPO with an NLL term, as the SDK
    sends them (simpo_gamma > 0 makes it reference-free and length-normalised)."""
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_dpo.jsonl", FineTuneMethod.DPO)
    normalised = DPOSpec(normalize_logratios_by_length=True)
    simpo = DPOSpec(nll_weight=0.5, simpo_gamma=0.3)
    for dpo in (normalised, simpo):
        spec = FineTuneSpec(base_model=FT_MODEL, method=FineTuneMethod.DPO, dpo=dpo)
        assert (await backend.submit(spec, path)).job_id.startswith("ft-")
    creates = [r for r in vcr.requests if r.method == "POST" and r.path == "/v1/fine-tunes"]
    methods = [json.loads(r.body)["training_method"] for r in creates]
    assert methods[0] == {
        "method": "dpo",
        "dpo_beta": 0.1,
        "dpo_normalize_logratios_by_length": True,
        "dpo_reference_free": False,
    }
    assert methods[1] == {
        "method": "dpo",
        "dpo_beta": 0.1,
        "dpo_normalize_logratios_by_length": True,
        "dpo_reference_free": True,
        "rpo_alpha": 0.5,
        "simpo_gamma": 0.3,
    }


@pytest.mark.vcr
async def test_find_job_recovers_the_id_an_interrupted_submit_lost(make_backend, tmp_path, vcr):
    """After a kill inside submit, the run asks for a live job with the spec's suffix created
    since it started submitting (FineTuneBackend.find_job): GET /v1/fine-tunes, matched here."""
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    it1 = FineTuneSpec(base_model=FT_MODEL, suffix="ste-find-it1")
    it2 = FineTuneSpec(base_model=FT_MODEL, suffix="ste-find-it2")
    job1 = (await backend.submit(it1, path)).job_id
    job2 = (await backend.submit(it2, path)).job_id
    long_ago, far_future = datetime(2020, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
    assert await backend.find_job(it1, created_after=long_ago) == job1
    assert await backend.find_job(it2, created_after=long_ago) == job2
    other = FineTuneSpec(base_model=FT_MODEL, suffix="ste-find-other")
    assert await backend.find_job(other, created_after=long_ago) is None
    assert await backend.find_job(it1, created_after=far_future) is None  # an older run's job
    await backend.cancel(job1)
    while not (await backend.poll(job1)).status.terminal:
        pass
    assert await backend.find_job(it1, created_after=long_ago) is None  # cancelled: not live
    lists = [r for r in vcr.requests if r.method == "GET" and r.path == "/v1/fine-tunes"]
    assert len(lists) == 5
    # without a suffix a job cannot be told apart from others: no request, no match
    assert await backend.find_job(FineTuneSpec(base_model=FT_MODEL), created_after=long_ago) is None
    assert len([r for r in vcr.requests if r.path == "/v1/fine-tunes"]) == 5 + 2  # 2 creates


@pytest.mark.vcr
async def test_user_error_reports_the_providers_message(
    together_fake, make_backend, tmp_path, fake_only
):
    together_fake.together.ft_failure = ("user_error", "Training data has too few tokens.", 1)
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    first = await backend.submit(FineTuneSpec(base_model=FT_MODEL), path)
    states = await run_to_end(backend, first)
    assert states[-1].status is JobStatus.FAILED
    assert states[-1].provider_status == "user_error"
    assert states[-1].message == "Training data has too few tokens."


@pytest.mark.vcr
async def test_init_from_previous_uses_from_checkpoint(make_backend, tmp_path, vcr):
    backend = make_backend("finetune")
    sft = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    dpo = write(backend, tmp_path, "judge_dpo.jsonl", FineTuneMethod.DPO)
    first = await backend.submit(FineTuneSpec(base_model=FT_MODEL), sft)
    done = (await run_to_end(backend, first))[-1]
    assert done.model is not None and done.model.model.endswith("-ft1")
    spec = FineTuneSpec(base_model=FT_MODEL, method=FineTuneMethod.DPO, from_model=done.model.model)
    second = await backend.submit(spec, dpo)
    assert "continuing from checkpoint" in (second.message or "")
    final = (await run_to_end(backend, second))[-1]
    assert final.status is JobStatus.SUCCEEDED
    assert final.model is not None and final.model.model.endswith("-ft2")  # one level up
    creates = [
        json.loads(r.body)
        for r in vcr.requests
        if r.method == "POST" and r.path == "/v1/fine-tunes"
    ]
    assert creates[1]["from_checkpoint"] == first.job_id and "model" not in creates[1]
    assert "training_type" not in creates[1]  # inherited from the parent job


@pytest.mark.vcr
async def test_init_from_previous_refuses_a_foreign_model(make_backend, tmp_path, interactions):
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    spec = FineTuneSpec(base_model=FT_MODEL, from_model="someone/else-model")
    with pytest.raises(ConfigurationError, match="from_checkpoint"):
        await backend.submit(spec, path)
    assert ("POST", "/v1/fine-tunes") not in [(m, p) for m, p, _ in interactions()]


@pytest.mark.vcr
async def test_price_estimate_and_budget_refusal(make_backend, tmp_path, interactions):
    backend = make_backend("finetune", max_cost_usd=0.00001)
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    spec = FineTuneSpec(base_model=FT_MODEL, epochs=3)
    estimate = await backend.estimate_cost(spec, path)
    assert estimate is not None and estimate > 0.00001
    with pytest.raises(BudgetExceeded, match="over max_cost_usd"):
        await backend.submit(spec, path)
    calls = [(m, p) for m, p, _ in interactions()]
    assert ("POST", "/v1/fine-tunes") not in calls  # refused before any job was created
    assert calls.count(("POST", "/v1/files")) == 1  # the file was uploaded once (cached)
    assert calls.count(("POST", "/v1/fine-tunes/estimate-price")) == 2


@pytest.mark.vcr
async def test_second_upload_of_same_content_reuses_the_file(make_backend, tmp_path, interactions):
    """Together answers 409 with the existing file id; the SDK then retrieves that file."""
    first = make_backend("finetune")
    path = write(first, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    id1 = await first._upload(path, FineTuneMethod.SFT)
    second = make_backend("finetune")  # a fresh process: no upload cache
    id2 = await second._upload(path, FineTuneMethod.SFT)
    assert id1 == id2
    statuses = [
        (m, p.split("/")[-1] if p.startswith("/v1/files/") else p, s) for m, p, s in interactions()
    ]
    assert statuses[0] == ("POST", "/v1/files", 302)
    assert statuses[3] == ("POST", "/v1/files", 409)
    assert statuses[4] == ("GET", id1, 200)


@pytest.mark.vcr
async def test_wandb_key_only_from_env_and_never_recorded(
    make_backend, tmp_path, vcr, monkeypatch, ste_recording
):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-key-123456789")
    backend = make_backend("finetune")
    path = write(backend, tmp_path, "judge_sft.jsonl", FineTuneMethod.SFT)
    spec = FineTuneSpec(base_model=FT_MODEL, options={"wandb_project_name": "ste-judges"})
    await backend.submit(spec, path)
    body = create_body(vcr)
    assert body["wandb_project_name"] == "ste-judges"
    assert body["wandb_key"] == "REDACTED"  # sent to Together, scrubbed in the cassette
    assert "wandb-secret-key" not in json.dumps(backend.describe())


def test_recording_key_is_not_in_these_cassettes():
    folder = Path(__file__).parent / "cassettes"
    texts = [p.read_text() for p in folder.rglob("*.yaml")]
    assert texts, "no cassettes recorded"
    assert not any(RECORDING_KEY in t or "wandb-secret-key" in t for t in texts)


# -- a job's options and limits, checked before anything is paid (no HTTP) ---------------------

KEY = "tgp_v1_unit-test-secret-key"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"wandb_api_key": "x"}, "secret"),
        ({"learning_rate_magic": 1}, "unknown fine-tune option"),
        ({"rpo_alpha": 1.0}, r"set them in the \[finetune.dpo\] table instead: nll_weight"),
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


@pytest.mark.parametrize(
    ("serving", "dedicated"), [("dedicated", True), ("serverless", False), ("auto", None)]
)
def test_the_outlook_knows_the_serving_mode_but_no_price_before_the_file(
    serving, dedicated, monkeypatch
):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    outlook = TogetherFineTune(serving=serving).outlook(FineTuneSpec(base_model="m"))
    assert outlook.dedicated_endpoint is dedicated
    assert outlook.job_cost_usd is None  # Together prices a job from its uploaded file
