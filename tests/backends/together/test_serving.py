"""Serving a fine-tuned judge: serverless or a dedicated endpoint that is always torn down.

Recorded against the fake provider's Together routes; replayed in CI without it. Every test
checks the teardown in the recorded traffic itself (unroute, delete deployment, delete
endpoint), so the assertion holds in replay too; while recording it also checks the fake's state.

Then the serving logic that cassettes cannot pin down deterministically (timeouts, teardown
failures, a second Ctrl-C), tested against a small in-memory stand-in for the SDK client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import together

from ste_backends.together.fake import TogetherFake
from ste_backends.together.options import TogetherFineTuneOptions
from ste_backends.together.serving import (
    NO_DEPLOYMENT,
    READY,
    _hardware_of,
    _same_hardware,
    decide_mode,
    serve_model,
)
from ste_core.errors import ConfigurationError, PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest, FineTuneMethod, FineTuneSpec, ModelRef, Order, SFTExample
from ste_core.resources import Resources
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
        assert meta["usd_per_hour"] == pytest.approx(3.99)  # one replica at the floor
        assert meta["endpoint_id"].startswith("ep_") and meta["deployment_id"].startswith("dep_")
        assert meta["reused"] is False
        (live,) = backend.resources.open("endpoint")
        assert live.state == "live" and live.provider_id == meta["endpoint_id"]
        assert live.key == model.model and live.detail["deployment_id"] == meta["deployment_id"]
        assert live.detail["config"] == "projects/proj_public/configs/cr_1xnvidia_h100_80gb"
        answer = await chat.complete(
            ChatRequest.of(served.model, [{"role": "user", "content": "What is rain?"}])
        )
        assert answer.model == served.model and "rain" in answer.texts[0].lower()
    (ended,) = backend.resources.all()
    assert ended.state == "ended" and backend.resources.open() == []
    assert ended.cost_usd == pytest.approx(3.99 * ended.uptime_s() / 3600, rel=0.01)
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
        hardware="1xnvidia-a100-80gb",
    )
    model = await trained(backend, tmp_path)
    with pytest.raises(RuntimeError, match="evaluation blew up"):
        async with backend.serve(model):
            raise RuntimeError("evaluation blew up")
    assert teardown_calls(interactions()) == TEARDOWN
    assert [r.state for r in backend.resources.all()] == ["ended"]
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
        hardware="1xnvidia-a100-80gb",
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
        hardware="1xnvidia-a100-80gb",
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
        hardware="1xnvidia-a100-80gb",
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
        hardware="1xnvidia-a100-80gb",
        keep_endpoint=True,
    )
    model = await trained(backend, tmp_path)
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "dedicated"
    assert not [c for c in interactions() if c[0] == "DELETE"]
    # Kept on purpose: no longer the run's to reap (ended in the ledger, with its cost so far).
    (kept,) = backend.resources.all()
    assert kept.state == "ended" and kept.provider_id is not None


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
    assert backend.resources.all() == []


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
        hardware="1xnvidia-a100-80gb",
    )
    model = await trained(backend, tmp_path)
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "dedicated"
        assert served.metadata["hardware"] == "1xnvidia-a100-80gb"
    assert teardown_calls(interactions()) == TEARDOWN
    assert_fake_clean(together_fake, ste_recording)


# -- against an in-memory stand-in for the SDK client ------------------------------------------

MODEL = ModelRef(
    model="proj/judge-ft1",
    base_model="base",
    metadata={"model_object_id": "ml_1", "training_type": "Lora", "job_id": "ft-1"},
)


class Calls(list):
    """A list of call names that can be awaited for a name to appear."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, asyncio.Event] = {}

    def append(self, name: str) -> None:  # type: ignore[override]
        super().append(name)
        self.event(name).set()

    def event(self, name: str) -> asyncio.Event:
        return self.seen.setdefault(name, asyncio.Event())


class StubClient:
    """Just enough of AsyncTogether for DedicatedEndpoint, recording every call."""

    def __init__(self, *, ready_after: int = 1, project_id: str | None = "proj_1") -> None:
        self.project_id = project_id
        self.calls = Calls()
        self.ready_after = ready_after
        self.polls = 0
        self.fail_endpoint_delete = False
        #: raised, in turn, by the next deployment GETs / endpoint DELETEs
        self.poll_errors: list[Exception] = []
        self.delete_errors: list[Exception] = []
        #: Together's hardware list: the configs' hardware at $4.00/h unless a test says otherwise
        self.catalog = [
            SimpleNamespace(id="it", name="1xnvidia-h100-80gb", price_cents_per_hour=400)
        ]
        ns = SimpleNamespace
        self.models = ns(retrieve=self._model, configs=ns(list=self._configs))
        self.endpoints = ns(
            create=self._ep_create,
            update=self._ep_update,
            delete=self._ep_delete,
            hardware=ns(list=self._hardware),
            deployments=ns(
                create=self._dep_create, retrieve=self._dep_get, delete=self._dep_delete
            ),
        )

    async def whoami(self) -> Any:
        self.calls.append("whoami")
        return SimpleNamespace(project=None)

    async def _model(self, mid: str, project_id: str) -> Any:
        return SimpleNamespace(id=mid, base_model_id="ml_base")

    async def _configs(self, **kw: Any) -> AsyncIterator[Any]:
        sel = [SimpleNamespace(key="accelerator_type", value="nvidia-h100-80gb")]
        sel.append(SimpleNamespace(key="accelerator_count", value="1"))
        sel.append(SimpleNamespace(key="adapter_mode", value="dynamic"))
        yield SimpleNamespace(id="cr_1", project_id="p", selectors=sel)

    async def _hardware(self) -> Any:
        return SimpleNamespace(data=self.catalog)

    async def _ep_create(self, **kw: Any) -> Any:
        self.calls.append("endpoint.create")
        return SimpleNamespace(id="ep_1", name=f"slug/{kw['name']}", etag="e1")

    async def _ep_update(self, *a: Any, **kw: Any) -> Any:
        self.calls.append(f"endpoint.update{kw.get('traffic_split')!r}")
        return SimpleNamespace(id="ep_1", name="slug/x", etag="e2")

    async def _ep_delete(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("endpoint.delete")
        if self.fail_endpoint_delete:
            raise RuntimeError("network down")
        if self.delete_errors:
            raise self.delete_errors.pop(0)
        return {}

    async def _dep_create(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("deployment.create")
        return SimpleNamespace(id="dep_1")

    async def _dep_get(self, *a: Any, **kw: Any) -> Any:
        if self.poll_errors:
            self.calls.append("deployment.get failed")
            raise self.poll_errors.pop(0)
        self.polls += 1
        self.calls.append(f"deployment.get#{self.polls}")
        state = (
            "DEPLOYMENT_STATE_READY"
            if self.polls > self.ready_after
            else "DEPLOYMENT_STATE_PROVISIONING"
        )
        return SimpleNamespace(status=SimpleNamespace(state=state, message="..."), hardware=None)

    async def _dep_delete(self, *a: Any, **kw: Any) -> Any:
        self.calls.append("deployment.delete")
        await asyncio.sleep(0.01)  # long enough for a second cancellation to arrive
        return {}


def ledger() -> Resources:
    """An in-memory ledger whose notices are kept in `.notes`."""
    notes: list[str] = []
    resources = Resources("together", "finetune", notify=notes.append)
    resources.notes = notes  # type: ignore[attr-defined]
    return resources


def settings(**kw: Any) -> TogetherFineTuneOptions:
    base = {"serving": "dedicated", "endpoint_poll_interval_s": 0.001, "endpoint_name": "judge-x"}
    return TogetherFineTuneOptions(**{**base, **kw})


async def test_an_endpoint_of_unknown_price_is_not_created_under_a_cost_limit(tmp_path):
    from ste_core.engine.budget import Budget
    from ste_core.engine.store import RunStore
    from ste_core.resources import LedgerResources

    client = StubClient()
    client.catalog = []  # the hardware list names no price for it
    with RunStore(tmp_path / "store.sqlite") as store:
        limited = LedgerResources(store, Budget(max_cost_usd=5.0, ledger=store), "together")
        with pytest.raises(ConfigurationError, match="endpoint_usd_per_hour") as info:
            async with serve_model(client, MODEL, settings(), limited):
                pass
        assert "nothing was created" in str(info.value)
        assert "endpoint.create" not in client.calls and store.resources() == []

        # With the user's price it is created, and its cost counts at that price.
        budget = Budget(max_cost_usd=5.0, ledger=store)
        limited = LedgerResources(store, budget, "together")
        async with serve_model(
            client, MODEL, settings(endpoint_usd_per_hour=2.5, min_replicas=2), limited
        ):
            (live,) = limited.open("endpoint")
            assert live.usd_per_hour == pytest.approx(5.0)  # two replicas at the floor
            assert budget.spent_usd > 0
        (ended,) = store.resources()
        # priced up to the very end time it is stored with
        assert ended.cost_usd == pytest.approx(5.0 * ended.uptime_s() / 3600, rel=1e-9)


async def test_without_a_cost_limit_an_unpriced_endpoint_says_its_cost_is_not_counted():
    client = StubClient()
    client.catalog = []
    res = ledger()
    async with serve_model(client, MODEL, settings(), res):
        pass
    assert "endpoint.create" in client.calls
    assert any("price unknown: its cost is not counted" in n for n in res.notes)  # type: ignore[attr-defined]
    (ended,) = res.all()
    assert ended.usd_per_hour is None and ended.cost_usd == 0


async def test_ready_timeout_deletes_the_endpoint():
    client = StubClient(ready_after=10**9)
    res = ledger()
    with pytest.raises(TransientProviderError, match="not READY after") as info:
        async with serve_model(client, MODEL, settings(endpoint_ready_timeout_s=0.02), res):
            pass
    assert "`serving`" in str(info.value) and "`deployment_config`" in str(info.value)
    assert client.calls[-2:] == ["deployment.delete", "endpoint.delete"]
    assert [r.state for r in res.all()] == ["ended"]


async def test_teardown_failure_is_reported_not_raised(caplog):
    client = StubClient()
    client.fail_endpoint_delete = True
    res = ledger()
    with caplog.at_level(logging.ERROR), pytest.raises(KeyError):
        async with serve_model(client, MODEL, settings(), res):
            raise KeyError("the original error wins")
    # Left open in the ledger, for the next session or `ste cleanup`.
    (left,) = res.open("endpoint")
    assert left.provider_id == "ep_1" and left.detail["deployment_id"] == "dep_1"
    assert "network down" in res.notes[-1] and "ste cleanup" in res.notes[-1]
    assert "delete it by hand" in caplog.text


def sdk_error(status: int, message: str = "try later") -> together.APIStatusError:
    """The exception the together SDK raises for an HTTP error status."""
    body = {"error": {"message": message}}
    response = httpx.Response(status, request=httpx.Request("GET", "http://t"), json=body)
    cls = {409: together.ConflictError, 404: together.NotFoundError}.get(
        status, together.APIStatusError
    )
    return cls(message, response=response, body=body)


async def test_failed_readiness_polls_are_retried():
    client = StubClient(ready_after=1)
    client.poll_errors = [sdk_error(503), sdk_error(502)]
    async with serve_model(client, MODEL, settings(), ledger()) as served:
        assert served.metadata["serving"] == "dedicated"
    assert client.calls.count("deployment.get failed") == 2 and client.polls == 2


async def test_readiness_polls_failing_past_the_budget_delete_the_endpoint():
    client = StubClient(ready_after=1)
    client.poll_errors = [sdk_error(503, "endpoint API down")] * 100
    res = ledger()
    with pytest.raises(TransientProviderError, match="endpoint API down") as info:
        async with serve_model(client, MODEL, settings(), res):
            pass
    assert info.value.status == 503
    assert client.calls.count("deployment.get failed") == 6  # five retries, then it gives up
    assert client.calls[-2:] == ["deployment.delete", "endpoint.delete"]
    assert res.open() == []


async def test_endpoint_delete_waits_out_a_deployment_that_is_still_stopping():
    client = StubClient()
    client.delete_errors = [sdk_error(409, "deployment still stopping")] * 2
    res = ledger()
    async with serve_model(client, MODEL, settings(), res):
        pass
    assert client.calls.count("endpoint.delete") == 3
    assert res.open() == [] and "deleted after" in res.notes[-1]


async def test_endpoint_delete_gives_up_after_five_tries_and_says_so(caplog):
    client = StubClient()
    client.delete_errors = [sdk_error(409, "deployment still stopping")] * 100
    res = ledger()
    with caplog.at_level(logging.ERROR):
        async with serve_model(client, MODEL, settings(), res):
            pass
    assert client.calls.count("endpoint.delete") == 5
    assert "deployment still stopping" in res.notes[-1]
    assert len(res.open()) == 1 and "delete it by hand" in caplog.text


async def test_an_endpoint_already_gone_counts_as_deleted():
    client = StubClient()
    client.delete_errors = [sdk_error(404, "no such endpoint")]
    res = ledger()
    async with serve_model(client, MODEL, settings(), res):
        pass
    assert client.calls.count("endpoint.delete") == 1 and res.open() == []


async def test_a_second_cancellation_does_not_interrupt_teardown():
    client = StubClient()

    async def body() -> None:
        async with serve_model(client, MODEL, settings(), ledger()):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await client.calls.event("deployment.get#2").wait()  # READY: the block is running
    await asyncio.sleep(0)
    task.cancel()
    await client.calls.event("deployment.delete").wait()
    task.cancel()  # impatient second Ctrl-C while deleting
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls[-1] == "endpoint.delete"


async def test_dedicated_needs_a_project():
    client = StubClient(project_id=None)
    with pytest.raises(ConfigurationError, match="TOGETHER_PROJECT_ID"):
        async with serve_model(client, MODEL, settings(), ledger()):
            pass
    assert "endpoint.create" not in client.calls


async def test_full_fine_tunes_are_never_served_serverless():
    full = MODEL.model_copy(update={"metadata": {"training_type": "Full"}})
    assert await decide_mode(StubClient(), full, settings(serving="auto"), ledger()) == "dedicated"


async def test_unknown_hardware_names_the_available_ones():
    with pytest.raises(ConfigurationError, match="1xnvidia-h100-80gb"):
        async with serve_model(StubClient(), MODEL, settings(hardware="8xnvidia-b200"), ledger()):
            pass


def test_hardware_names_compare_loosely():
    cfg = SimpleNamespace(
        selectors=[
            SimpleNamespace(key="accelerator_type", value="nvidia-h100-80gb"),
            SimpleNamespace(key="accelerator_count", value="2"),
        ]
    )
    assert _hardware_of(cfg) == "2xnvidia-h100-80gb"
    assert _same_hardware("2xnvidia-h100-80gb", "2xh100-80gb")
    assert _same_hardware("1xnvidia-h100-80gb", "1x_nvidia_h100_80gb")
    assert not _same_hardware("1xnvidia-h100-80gb", "2xnvidia-h100-80gb")


# -- against a live TogetherFake: what a dead session left open ----------------------------------


@pytest.fixture
async def live(tmp_path) -> Any:  # type: ignore[no-untyped-def]
    """A started TogetherFake serving fine-tunes on dedicated endpoints only, and a factory of
    TogetherFineTune backends pointed at it that share one ledger (a run's store, reopened by
    each new backend as a resumed session would)."""
    from ste_backends.together.finetune import TogetherFineTune
    from ste_core.engine.store import RunStore
    from ste_core.resources import LedgerResources

    made: list[Any] = []
    notes: list[str] = []
    with TogetherFake() as fake:
        fake.add_model(FT_MODEL)
        fake.together.serverless_lora = False
        fake.together.deploy_polls_to_ready = 1
        store = RunStore(tmp_path / "store.sqlite")

        def backend(**options: Any) -> TogetherFineTune:
            defaults = {
                "base_url": fake.url,
                "api_key": "k",
                "project_id": fake.together.project["id"],
                "serving": "dedicated",
                "hardware": "1xnvidia-h100-80gb",
                "endpoint_poll_interval_s": 0.01,
            }
            made_one = TogetherFineTune(**{**defaults, **options})
            made_one.resources = LedgerResources(
                store, None, "together", "finetune", notify=notes.append
            )
            made.append(made_one)
            return made_one

        yield SimpleNamespace(fake=fake, backend=backend, notes=notes, store=store)
        for b in made:
            await b.aclose()
        store.close()


async def left_open(backend: Any, model: ModelRef) -> None:
    """What a session killed while serving `model` leaves: a READY endpoint, its entry open."""
    from ste_backends.together.serving import DedicatedEndpoint

    endpoint = DedicatedEndpoint(backend._client, model, backend.options, backend.resources, None)
    await endpoint.start()


async def test_an_endpoint_left_serving_the_model_is_reused_not_created_again(live, tmp_path):
    dead = live.backend()
    model = await trained(dead, tmp_path)
    await left_open(dead, model)
    assert live.fake.counter["endpoints_create"] == 1
    (entry,) = dead.resources.open("endpoint")
    assert await dead.resource_state(entry) == READY

    resumed = live.backend()
    async with resumed.serve(model) as served:
        assert served.metadata["reused"] is True and served.metadata["ledger_entry"] == entry.entry
        chat = await resumed._client.chat.completions.create(
            model=served.model, messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.choices[0].message.content
    assert live.fake.counter["endpoints_create"] == 1  # no second endpoint
    assert live.fake.together.st["endpoints"] == {}
    assert resumed.resources.open() == []
    assert any(n.startswith("Reusing Together endpoint") for n in live.notes)
    assert any("deleted after" in n for n in live.notes)


async def test_an_endpoint_killed_before_its_id_came_back_is_found_by_name(live, tmp_path):
    backend = live.backend()
    model = await trained(backend, tmp_path)
    project = live.fake.together.project["id"]
    # A session died inside the create call: its entry has no provider id, the endpoint exists.
    entry = backend.resources.begin(
        "endpoint",
        key=model.model,
        detail={
            "name": "ste-judge-lost-id",
            "project_id": project,
            "model_path": f"projects/{project}/models/{model.metadata['model_object_id']}",
            "config": "projects/proj_public/configs/cr_1xnvidia_h100_80gb",
            "hardware": "1xnvidia-h100-80gb",
        },
        usd_per_hour=3.99,
    )
    for name in ("ste-other-a", "ste-judge-lost-id", "ste-other-b"):
        await backend._client.endpoints.create(
            name=name, visibility="VISIBILITY_PRIVATE", project_id=project
        )
    live.fake.together.page_size = 1  # the endpoint list is read page by page
    assert await backend.resource_state(entry) == NO_DEPLOYMENT
    (found,) = backend.resources.open("endpoint")
    assert found.provider_id is not None  # recorded once found
    async with backend.serve(model) as served:
        assert served.metadata["reused"] is True
        assert served.model.endswith("/ste-judge-lost-id")
    assert live.fake.counter["endpoints_create"] == 3  # the deployment was added, not a 4th
    assert backend.resources.open() == []
    assert {e["name"] for e in live.fake.together.st["endpoints"].values()} == {
        "ste-fake/ste-other-a",
        "ste-fake/ste-other-b",
    }


async def test_an_entry_whose_endpoint_was_never_created_is_ended(live, tmp_path):
    backend = live.backend()
    model = await trained(backend, tmp_path)
    ghost = backend.resources.begin(
        "endpoint", key=model.model, detail={"name": "ste-never-made"}, usd_per_hour=4.0
    )
    assert await backend.resource_state(ghost) is None
    async with backend.serve(model) as served:
        assert served.metadata["reused"] is False
    (ended_ghost, used) = backend.resources.all()
    assert ended_ghost.state == "ended" and ended_ghost.cost_usd == 0.0
    assert used.state == "ended" and live.fake.counter["endpoints_create"] == 1


async def test_an_endpoint_left_for_another_model_is_reaped_at_session_start(live, tmp_path):
    from ste_core.run.recovery import reap_left_open

    dead = live.backend()
    model = await trained(dead, tmp_path)
    await left_open(dead, model)
    warnings: list[str] = []
    ctx = SimpleNamespace(
        store=live.store,
        reporter=SimpleNamespace(warning=warnings.append),
        rundir=SimpleNamespace(root=tmp_path),
        manifest=SimpleNamespace(add_cost=lambda *a: None),
        save_manifest=lambda: None,
        finetune_backend=live.backend,
    )
    kept = await reap_left_open(ctx, keep={model.model})  # type: ignore[arg-type]
    assert kept == [] and len(live.fake.together.st["endpoints"]) == 1
    (reaped,) = await reap_left_open(ctx, keep={"some-other-model"})  # type: ignore[arg-type]
    assert reaped.state == "ended" and reaped.cost_usd and reaped.cost_usd > 0
    assert live.fake.together.st["endpoints"] == {}
    assert "left open by an earlier session" in warnings[0] and "deleted after" in warnings[0]


async def test_auto_survives_a_failing_catalog_by_probing(live, tmp_path):
    backend = live.backend(serving="auto")
    model = await trained(backend, tmp_path)
    live.fake.together.catalog_failure = 503
    live.fake.together.serverless_lora = True
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "serverless"
    live.fake.together.serverless_lora = False  # the probe is refused: dedicated
    async with backend.serve(model) as served:
        assert served.metadata["serving"] == "dedicated"
    assert live.fake.counter["supported_models"] == 2
    assert any("catalog could not be read" in n and "`serving`" in n for n in live.notes)
    assert live.fake.together.st["endpoints"] == {}


async def test_several_configs_are_refused_with_their_names(live, tmp_path):
    backend = live.backend(hardware=None)
    model = await trained(backend, tmp_path)
    live.fake.together.page_size = 1  # every config on its own page: all must be read
    with pytest.raises(ConfigurationError) as info:
        async with backend.serve(model):
            pass
    message = str(info.value)
    # A LoRA adapter: the two configs that serve adapters, not the disabled one.
    assert "cr_1xnvidia_h100_80gb" in message and "cr_1xnvidia_a100_80gb" in message
    assert "cr_2xnvidia_h100_80gb" not in message and "$3.99/h" in message
    assert "`hardware` or `deployment_config`" in message and "`serving`" in message
    assert live.fake.counter["endpoints_create"] == 0 and backend.resources.all() == []
    live.fake.together.config_adapter_modes["1xnvidia-a100-80gb"] = "disabled"
    async with backend.serve(model) as served:  # one candidate left: no guess needed
        assert served.metadata["hardware"] == "1xnvidia-h100-80gb"
    with pytest.raises(ConfigurationError, match="adapter_mode disabled"):
        async with live.backend(deployment_config="cr_1xnvidia_a100_80gb").serve(model):
            pass
