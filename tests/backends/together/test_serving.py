"""Serving a fine-tuned judge: serverless or a dedicated endpoint that is always torn down.

Recorded against the fake provider's Together routes; replayed in CI without it. Every test
checks the teardown in the recorded traffic itself (unroute, delete deployment, delete
endpoint), so the assertion holds in replay too; while recording it also checks the fake's state.
"""

from __future__ import annotations

import asyncio

import pytest

from ste_core.errors import PermanentProviderError
from ste_core.records import ChatRequest, FineTuneMethod, FineTuneSpec, ModelRef, Order, SFTExample
from tests.backends.together.tg_support import FT_MODEL

EXAMPLES = [
    SFTExample.model_validate(
        {
            "messages": [{"role": "user", "content": f"Which is better, A or B? ({i})"}],
            "completion": "A stays on the question.\n[[A]]",
            "pair_id": f"p{i}",
            "order": Order.AB,
        }
    )
    for i in range(3)
]
TEARDOWN = [
    ("PATCH", "endpoints"),  # traffic split emptied
    ("DELETE", "deployments"),
    ("DELETE", "endpoints"),
]


async def trained(backend, tmp_path) -> ModelRef:  # type: ignore[no-untyped-def]
    path = tmp_path / "judge.jsonl"
    backend.write_training_file(EXAMPLES, FineTuneMethod.SFT, path)
    state = await backend.submit(FineTuneSpec(base_model=FT_MODEL, suffix="judge"), path)
    while not state.status.terminal:
        state = await backend.poll(state.job_id)
    assert state.model is not None
    return state.model


def teardown_calls(calls) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, resource kind) of the endpoint calls after the last deployment GET."""
    kinds = []
    for method, path, status in calls:
        if "/endpoints" not in path:
            continue
        kind = "deployments" if "/deployments" in path else "endpoints"
        kinds.append((method, kind, status))
    last_get = max(i for i, (m, k, _) in enumerate(kinds) if m == "GET" or m == "POST")
    return [(m, k) for m, k, s in kinds[last_get + 1 :] if s == 200]


def assert_fake_clean(fake, recording) -> None:  # type: ignore[no-untyped-def]
    if recording:
        assert fake.together.st["endpoints"] == {}, "endpoint left running on the fake"
        assert ("endpoints_delete", "DELETE") in {(n, m) for n, m, _p, _s in fake.log}


@pytest.mark.vcr
async def test_dedicated_endpoint_lifecycle(
    together_fake, make_backend, tmp_path, interactions, ste_recording
):
    progress: list[dict] = []
    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-lifecycle",
        endpoint_poll_interval_s=0.01,
        hardware="1xnvidia-h100-80gb",
        min_replicas=1,
        max_replicas=2,
        auto_shutdown_minutes=45,
        progress=progress.append,
    )
    model = await trained(backend, tmp_path)
    chat = make_backend("inference", price_lookup=False)
    async with backend.serve(model) as served:
        assert served.model == "ste-fake/ste-judge-lifecycle"  # the endpoint name
        meta = served.metadata
        assert meta["serving"] == "dedicated" and meta["fine_tuned_model"] == model.model
        assert meta["hardware"] == "1xnvidia-h100-80gb"
        assert meta["price_usd_per_hour_per_replica"] == pytest.approx(3.99)
        assert meta["endpoint_id"].startswith("ep_") and meta["deployment_id"].startswith("dep_")
        answer = await chat.complete(
            ChatRequest.of(served.model, [{"role": "user", "content": "What is rain?"}])
        )
        assert answer.model == served.model and "rain" in answer.texts[0].lower()
    usage = backend.last_endpoint_usage
    assert usage["deleted"] is True and usage["kept"] is False
    assert usage["uptime_s"] > 0 and usage["cost_usd_max"] == pytest.approx(
        2 * usage["cost_usd_min"]
    )
    states = [p.get("state") for p in progress if p["phase"] == "waiting"]
    assert states[-1] == "DEPLOYMENT_STATE_READY" and states[0] == "DEPLOYMENT_STATE_PROVISIONING"
    assert [p["phase"] for p in progress][-1] == "deleted"
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)


@pytest.mark.vcr
async def test_endpoint_deleted_when_the_block_raises(
    together_fake, make_backend, tmp_path, interactions, ste_recording
):
    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-raises",
        endpoint_poll_interval_s=0.01,
    )
    model = await trained(backend, tmp_path)
    with pytest.raises(RuntimeError, match="evaluation blew up"):
        async with backend.serve(model):
            raise RuntimeError("evaluation blew up")
    assert teardown_calls(interactions()) == TEARDOWN
    assert backend.last_endpoint_usage["deleted"] is True
    assert_fake_clean(together_fake, ste_recording)


@pytest.mark.vcr
async def test_endpoint_deleted_when_cancelled_while_serving(
    together_fake, make_backend, tmp_path, interactions, ste_recording
):
    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-ctrl-c",
        endpoint_poll_interval_s=0.01,
    )
    model = await trained(backend, tmp_path)
    inside = asyncio.Event()

    async def evaluate() -> None:
        async with backend.serve(model):
            inside.set()
            await asyncio.Event().wait()  # a long evaluation, interrupted (Ctrl-C)

    task = asyncio.create_task(evaluate())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)


@pytest.mark.vcr
async def test_endpoint_deleted_when_cancelled_while_provisioning(
    together_fake, make_backend, tmp_path, interactions, ste_recording
):
    holder: dict[str, asyncio.Task] = {}

    def on_progress(event: dict) -> None:
        if event["phase"] == "waiting" and "task" in holder:
            holder["task"].cancel()  # Ctrl-C while waiting for READY

    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-early-exit",
        endpoint_poll_interval_s=0.01,
        progress=on_progress,
    )
    model = await trained(backend, tmp_path)

    async def serve() -> None:
        async with backend.serve(model):
            raise AssertionError("never READY in this test")

    holder["task"] = asyncio.create_task(serve())
    with pytest.raises(asyncio.CancelledError):
        await holder["task"]
    calls = [(m, p) for m, p, _ in interactions()]
    deployment_gets = [c for c in calls if c[0] == "GET" and "/deployments/" in c[1]]
    assert len(deployment_gets) == 1  # cancelled at the first readiness poll
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)


@pytest.mark.vcr
async def test_failed_deployment_is_reported_and_deleted(
    together_fake, make_backend, tmp_path, interactions, fake_only, ste_recording
):
    together_fake.together.deploy_failure = "No H100 capacity in any region."
    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-no-capacity",
        endpoint_poll_interval_s=0.01,
    )
    model = await trained(backend, tmp_path)
    with pytest.raises(PermanentProviderError, match="No H100 capacity"):
        async with backend.serve(model):
            raise AssertionError("a failed deployment must not be yielded")
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)


@pytest.mark.vcr
async def test_keep_endpoint_leaves_it_running(make_backend, tmp_path, interactions):
    backend = make_backend(
        "finetune",
        serving="dedicated",
        endpoint_name="ste-judge-kept",
        endpoint_poll_interval_s=0.01,
        keep_endpoint=True,
    )
    model = await trained(backend, tmp_path)
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "dedicated"
    assert not [c for c in interactions() if c[0] == "DELETE"]
    assert backend.last_endpoint_usage["kept"] is True
    assert backend.last_endpoint_usage["deleted"] is False


@pytest.mark.vcr
async def test_auto_serves_lora_serverless_when_together_hosts_it(
    make_backend, tmp_path, interactions
):
    backend = make_backend("finetune", serving="auto")
    model = await trained(backend, tmp_path)
    async with backend.serve(model) as served:
        assert served.model == model.model and served.metadata["serving"] == "serverless"
    calls = [(m, p) for m, p, _ in interactions()]
    assert ("GET", "/v2/supported-models") in calls  # catalog: dynamic adapters on the base
    assert calls[-1] == ("POST", "/v1/chat/completions")  # the 1-token probe
    assert not [c for c in calls if "/endpoints" in c[1]]
    assert backend.last_endpoint_usage is None


@pytest.mark.vcr
async def test_auto_falls_back_to_dedicated_without_serverless_adapters(
    together_fake, make_backend, tmp_path, interactions, fake_only, ste_recording
):
    together_fake.together.serverless_lora = False
    backend = make_backend(
        "finetune",
        serving="auto",
        endpoint_name="ste-judge-auto-dedicated",
        endpoint_poll_interval_s=0.01,
    )
    model = await trained(backend, tmp_path)
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "dedicated"
        assert served.metadata["hardware"] == "1xnvidia-a100-80gb"  # the cheapest certified
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)
