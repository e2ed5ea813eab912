"""The openai backend's Batch API path (ste_backends/openai/batch.py), live against the fake on
127.0.0.1: what a cassette cannot hold (cancelling a running batch, expired and failed batches)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ste_backends.openai import OpenAIInference
from ste_backends.openai.fake import OpenAIFake
from ste_core.backends import BatchItem
from ste_core.engine.retry import POLL_MAX_RETRIES
from ste_core.engine.store import RunStore
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest, Resource
from ste_core.resources import LedgerResources
from ste_core.testing.fake_provider import FakeResponse, FaultPlan

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


def ask(text: str, **params) -> ChatRequest:  # type: ignore[no-untyped-def]
    return ChatRequest.of("fake-acc80", [{"role": "user", "content": text}], **params)


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(x) + "\n" for x in lines).encode()


def line(custom_id: str, model: str = "fake-acc80", text: str = "hello") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}]},
    }


LINES = [ask(w) for w in ("rain", "wind", "snow", "hail", "fog")]


def session(fake: OpenAIFake, store_path, **options) -> OpenAIInference:  # type: ignore[no-untyped-def]
    """A backend as one `ste run` session has it: its resources in the run's ledger."""
    backend = OpenAIInference(
        base_url=fake.base_url, batch=True, **{"batch_poll_interval": 0.001, **options}
    )
    backend.resources = LedgerResources(RunStore(store_path), None, "openai", "judge")
    return backend


async def collect(backend: OpenAIInference, requests=LINES) -> list[BatchItem]:  # type: ignore[no-untyped-def]
    try:
        items = [item async for item in backend.complete_many(requests)]
    finally:
        await backend.aclose()
    return sorted(items, key=lambda i: i.index)


async def interrupted(backend: OpenAIInference, until, second_cancel: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Start complete_many, cancel it (a Ctrl-C) once `until()` holds, close the backend."""
    task = asyncio.ensure_future(collect(backend))
    for _ in range(500):
        await asyncio.sleep(0.01)
        if until():
            break
    assert until(), "the interruption point was never reached"
    task.cancel()
    if second_cancel:
        await asyncio.sleep(0.05)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def ledger(store_path) -> list[Resource]:  # type: ignore[no-untyped-def]
    return RunStore(store_path).resources(kind="batch")


def batch_running(store_path) -> bool:  # type: ignore[no-untyped-def]
    """The batch exists and its id is in the ledger (the create call's answer came back)."""
    return any(r.state == "live" and r.provider_id for r in ledger(store_path))


def answered(items: list[BatchItem], n: int = len(LINES)) -> bool:
    return [i.index for i in items] == list(range(n)) and all(
        i.error is None and i.completion and i.completion.texts for i in items
    )


async def test_an_interrupted_batch_is_left_running_for_the_next_session(tmp_path):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        await interrupted(
            session(fake, store, batch_poll_interval=30),
            lambda: batch_running(store),
        )
        assert fake.counter["batches_cancel"] == 0
        (left,) = ledger(store)
        assert left.open and left.state == "live" and left.provider_id
        assert left.detail["lines"] == len(LINES) and left.detail["input_file_id"]

        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 1 and fake.counter["files_create"] == 1
        assert fake.counter["batch_lines"] == len(LINES)
    (done,) = ledger(store)
    assert done.entry == left.entry and not done.open


async def test_killed_between_upload_and_create_the_batch_is_found_in_the_list(tmp_path):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        fake.reply_delay_s["batches_create"] = 5.0  # created, its id on the way
        await interrupted(session(fake, store), lambda: len(fake.state["openai_batches"]) == 1)
        (left,) = ledger(store)
        assert left.provider_id is None and left.detail["input_file_id"]
        fake.reply_delay_s.clear()
        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 1 and fake.counter["files_create"] == 1
        assert fake.counter["batches_list"] >= 1 and fake.counter["batch_lines"] == len(LINES)
    assert [r.open for r in ledger(store)] == [False]


async def test_a_batch_found_expired_is_ended_and_its_requests_go_out_again(tmp_path):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        await interrupted(
            session(fake, store, batch_poll_interval=30),
            lambda: batch_running(store),
        )
        (batch,) = fake.state["openai_batches"].values()
        batch["status"] = "expired"
        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 2 and fake.counter["files_create"] == 1
    old, new = ledger(store)
    assert not old.open and not new.open and old.provider_id != new.provider_id


async def test_cancel_on_interrupt_reaches_the_server_though_the_backend_closes_at_once(
    tmp_path,
):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        fake.reply_delay_s["batches_cancel"] = 0.5  # a slow answer: closing must wait for it
        await interrupted(
            session(fake, store, batch_poll_interval=30, cancel_on_interrupt=True),
            lambda: batch_running(store),
            second_cancel=True,
        )
        assert fake.counter["batches_cancel"] == 1
        (batch,) = fake.state["openai_batches"].values()
        assert batch["status"] == "cancelling"
    (entry,) = ledger(store)
    assert not entry.open  # the cancel's answer came back before the client closed


async def test_a_batch_left_open_is_reaped_by_cancelling_it(tmp_path):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        await interrupted(
            session(fake, store, batch_poll_interval=30),
            lambda: batch_running(store),
        )
        (left,) = ledger(store)
        backend = session(fake, store)
        assert await backend.resource_state(left) == "in_progress"  # each look advances it
        assert await backend.reap(left) == "cancelled"
        await backend.aclose()
        assert fake.counter["batches_cancel"] == 1
    assert [r.open for r in ledger(store)] == [False]


async def test_requests_are_split_at_the_line_limit(tmp_path):
    store = tmp_path / "store.sqlite"
    with OpenAIFake() as fake:
        items = await collect(session(fake, store, batch_max_requests=2))
        assert answered(items)
        assert fake.counter["batches_create"] == 3 and fake.counter["files_create"] == 3
    assert [(r.detail["lines"], r.open) for r in ledger(store)] == [(2, False)] * 2 + [(1, False)]


async def test_expired_batch_gives_retryable_items_for_every_request():
    with OpenAIFake() as fake:
        fake.state["batch_expire"] = True
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b"), ask("c")])]
        await backend.aclose()
    assert sorted(i.index for i in items) == [0, 1, 2]
    for item in items:
        assert isinstance(item.error, TransientProviderError) and item.error.retryable
        assert "batch_expired" in str(item.error)


async def test_failed_batch_polls_are_retried_then_the_batch_is_followed_to_the_end():
    polls_down = FaultPlan(
        fail_first=3, fail_first_status=503, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=polls_down) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] > 3 and fake.counter["batches_cancel"] == 0
    assert sorted(i.index for i in items) == [0, 1]
    assert all(i.completion is not None and i.completion.texts for i in items)


async def test_polls_failing_past_the_budget_cancel_the_batch_and_fail_its_requests():
    polls_down = FaultPlan(
        fail_first=10**6, fail_first_status=503, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=polls_down) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] == POLL_MAX_RETRIES + 1
        assert fake.counter["batches_cancel"] == 1
    assert sorted(i.index for i in items) == [0, 1]
    for item in items:
        assert isinstance(item.error, TransientProviderError) and item.error.status == 503


async def test_a_refused_poll_is_not_retried():
    refused = FaultPlan(
        fail_first=10**6, fail_first_status=404, routes=frozenset({"batches_retrieve"})
    )
    with OpenAIFake(faults=refused) as fake:
        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a")])]
        await backend.aclose()
        assert fake.counter["batches_retrieve"] == 1
    assert isinstance(items[0].error, PermanentProviderError) and items[0].error.status == 404


async def test_failed_batch_gives_every_request_the_validation_message():
    with OpenAIFake() as fake:

        @fake.route("GET", r"/v1/batches/(?P<id>[^/]+)", "batches_retrieve_failed")
        def failed(req, match):  # type: ignore[no-untyped-def]
            return FakeResponse(
                200,
                {
                    "id": match["id"],
                    "object": "batch",
                    "endpoint": "/v1/chat/completions",
                    "input_file_id": "file-x",
                    "completion_window": "24h",
                    "created_at": 1,
                    "status": "failed",
                    "failed_at": 2,
                    "errors": {
                        "object": "list",
                        "data": [
                            {
                                "code": "invalid_model",
                                "message": "model not available for batch",
                                "param": "model",
                                "line": 1,
                            }
                        ],
                    },
                },
            )

        backend = OpenAIInference(base_url=fake.base_url, batch=True, batch_poll_interval=0)
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
    assert len(items) == 2
    for item in items:
        assert isinstance(item.error, PermanentProviderError)
        assert "line 1: model not available for batch" in str(item.error)


async def test_batch_splits_n_by_max_n_and_merges_parts():
    with OpenAIFake() as fake:
        backend = OpenAIInference(
            base_url=fake.base_url, batch=True, batch_poll_interval=0, max_n=2
        )
        requests = [ask("Describe tides", n=3, temperature=0.9, seed=4), ask("Describe wind")]
        items = {i.index: i async for i in backend.complete_many(requests)}
        await backend.aclose()
        (batch,) = fake.state["openai_batches"].values()
        assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert len(items[0].completion.texts) == 3 and len(set(items[0].completion.texts)) == 3
    assert len(items[1].completion.texts) == 1


async def test_batch_upload_refused_gives_error_items_not_an_exception():
    with OpenAIFake(api_key="sk-ste-right") as fake:
        backend = OpenAIInference(
            base_url=fake.base_url, api_key="sk-ste-wrong", batch=True, batch_poll_interval=0
        )
        items = [item async for item in backend.complete_many([ask("a"), ask("b")])]
        await backend.aclose()
    assert sorted(i.index for i in items) == [0, 1]
    assert all(i.error is not None and i.error.status == 401 for i in items)
