"""Together Batch API lines (ste_backends/together/batch.py): custom ids, result and error lines."""

from __future__ import annotations

import asyncio
import json

import pytest

from ste_backends.together.batch import (
    _line_error,
    custom_id_for,
    parse_result_lines,
    plan_chunks,
    write_batch_input,
)
from ste_backends.together.fake import TogetherFake, _inspect
from ste_backends.together.inference import TogetherInference
from ste_core.backends import BatchItem
from ste_core.engine.retry import POLL_MAX_RETRIES
from ste_core.engine.store import RunStore
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest, Resource
from ste_core.resources import LedgerResources
from ste_core.testing.fake_provider import FaultPlan
from tests.backends.together.tg_support import CHAT_MODEL, RECORDING_KEY


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


# -- status polls under the poll retry policy, live against the fake on 127.0.0.1 with injected
# faults (a cassette holds one recorded run, not a provider in trouble) -------------------------

REQUESTS = [
    ChatRequest.of(CHAT_MODEL, [{"role": "user", "content": q}]) for q in ("Why rain?", "Why wind?")
]


def polls_failing(count: int, status: int = 503) -> FaultPlan:
    return FaultPlan(fail_first=count, fail_first_status=status, routes=frozenset({"batches_get"}))


async def run(fake: TogetherFake) -> list[BatchItem]:
    # A tiny interval: the policy's waits double from it, so ten failures take about a second.
    backend = TogetherInference(
        base_url=fake.url, api_key=RECORDING_KEY, batch=True, batch_poll_interval_s=0.001
    )
    try:
        return sorted(
            [item async for item in backend.complete_many(REQUESTS)], key=lambda i: i.index
        )
    finally:
        await backend.aclose()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_failed_polls_are_retried_then_the_batch_is_followed_to_the_end() -> None:
    with TogetherFake(faults=polls_failing(3)) as fake:
        items = await run(fake)
        assert fake.counter["batches_get"] > 3 and fake.counter["batches_cancel"] == 0
    assert [i.index for i in items] == [0, 1]
    assert all(i.error is None and i.completion and i.completion.texts for i in items)


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_polls_failing_past_the_budget_cancel_the_batch_and_fail_its_requests() -> None:
    with TogetherFake(faults=polls_failing(10**6)) as fake:
        items = await run(fake)
        assert fake.counter["batches_get"] == POLL_MAX_RETRIES + 1
        assert fake.counter["batches_cancel"] == 1
        (batch,) = fake.together.st["batches"].values()
        assert batch["status"] == "CANCELLED"
    assert [i.index for i in items] == [0, 1]
    for item in items:
        assert isinstance(item.error, TransientProviderError) and item.error.status == 503


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_refused_poll_is_not_retried() -> None:
    with TogetherFake(faults=polls_failing(10**6, status=404)) as fake:
        items = await run(fake)
        assert fake.counter["batches_get"] == 1 and fake.counter["batches_cancel"] == 1
    assert all(isinstance(i.error, PermanentProviderError) for i in items)


# -- the ledger: re-attach, never resubmit ---------------------------------------------------

LINES = [
    ChatRequest.of(CHAT_MODEL, [{"role": "user", "content": f"Why {w}?"}])
    for w in ("rain", "wind", "snow", "hail", "fog")
]


def session(fake: TogetherFake, store_path, **options) -> TogetherInference:  # type: ignore[no-untyped-def]
    """A backend as one `ste run` session has it: its resources in the run's ledger."""
    backend = TogetherInference(
        base_url=fake.url,
        api_key=RECORDING_KEY,
        batch=True,
        price_lookup=False,
        prices={CHAT_MODEL: (0.2, 0.6)},
        **{"batch_poll_interval_s": 0.01, **options},
    )
    backend.resources = LedgerResources(RunStore(store_path), None, "together", "judge")
    return backend


async def collect(backend: TogetherInference, requests=LINES) -> list[BatchItem]:  # type: ignore[no-untyped-def]
    try:
        items = [item async for item in backend.complete_many(requests)]
    finally:
        await backend.aclose()
    return sorted(items, key=lambda i: i.index)


async def interrupted(backend: TogetherInference, until, requests=LINES) -> None:  # type: ignore[no-untyped-def]
    """Start complete_many, cancel it (a Ctrl-C) once `until()` holds, close the backend."""
    task = asyncio.ensure_future(collect(backend, requests))
    for _ in range(500):
        await asyncio.sleep(0.01)
        if until():
            break
    assert until(), "the interruption point was never reached"
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


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_resumed_session_reattaches_to_the_running_batch_and_pays_once(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        fake.together.batch_polls = 3
        # A session that polls too rarely to see its batch end, killed (interrupted) meanwhile.
        first = session(fake, store, batch_poll_interval_s=30)
        await interrupted(first, lambda: batch_running(store))
        (left,) = ledger(store)
        assert left.open and left.state == "live" and left.provider_id
        assert left.detail["lines"] == len(LINES) and left.detail["bytes"] > 0
        assert left.detail["input_file_id"]
        assert fake.counter["batches_cancel"] == 0  # left running (cancel_on_interrupt=False)

        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 1 and fake.counter["files_upload"] == 1
        assert fake.counter["batch_lines"] == len(LINES)  # every line ran once
    (done,) = ledger(store)
    assert done.entry == left.entry and not done.open
    assert done.cost_usd == pytest.approx(sum(i.completion.cost_usd for i in items))  # type: ignore[union-attr,misc]
    assert done.cost_usd > 0


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_batch_that_completed_while_no_one_watched_is_collected(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        fake.together.batch_polls = 1
        await interrupted(
            session(fake, store, batch_poll_interval_s=30), lambda: batch_running(store)
        )
        (batch,) = fake.together.st["batches"].values()
        fake.together._run_batch(batch)  # it ended at Together between the two sessions
        assert fake.counter["batch_lines"] == len(LINES)
        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 1 and fake.counter["batch_lines"] == len(LINES)


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_killed_between_upload_and_create_the_batch_is_found_by_its_input_file(
    tmp_path,
) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        fake.reply_delay_s["batches_create"] = 5.0  # created at Together, the answer on its way
        await interrupted(session(fake, store), lambda: len(fake.together.st["batches"]) == 1)
        (left,) = ledger(store)
        assert left.provider_id is None and left.detail["input_file_id"]
        fake.reply_delay_s.clear()

        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 1 and fake.counter["files_upload"] == 1
        assert fake.counter["batches_list"] == 1
        assert fake.counter["batch_lines"] == len(LINES)
    (done,) = ledger(store)
    assert not done.open and done.provider_id == next(iter(fake.together.st["batches"]))


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_failed_create_is_retried_from_the_file_already_uploaded(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    refuse_once = FaultPlan(
        fail_first=1, fail_first_status=400, routes=frozenset({"batches_create"})
    )
    with TogetherFake(faults=refuse_once) as fake:
        backend = session(fake, store)
        failed = [item async for item in backend.complete_many(LINES)]
        assert all(i.error is not None for i in failed)
        items = sorted([item async for item in backend.complete_many(LINES)], key=lambda i: i.index)
        await backend.aclose()
        assert answered(items)
        assert fake.counter["files_upload"] == 1 and len(fake.together.st["batches"]) == 1
    assert [r.open for r in ledger(store)] == [False]


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_batch_found_failed_is_ended_and_its_requests_go_out_again(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        await interrupted(
            session(fake, store, batch_poll_interval_s=30), lambda: batch_running(store)
        )
        (batch,) = fake.together.st["batches"].values()
        batch["status"] = "FAILED"
        items = await collect(session(fake, store))
        assert answered(items)
        assert fake.counter["batches_create"] == 2  # a new batch ...
        assert fake.counter["files_upload"] == 1  # ... from the file already uploaded
    old, new = ledger(store)
    assert not old.open and not new.open and old.provider_id != new.provider_id


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_cancel_on_interrupt_reaches_together_though_the_backend_closes_at_once(
    tmp_path,
) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        fake.together.batch_polls = 10**6
        fake.reply_delay_s["batches_cancel"] = 0.5  # a slow answer: closing must wait for it
        backend = session(fake, store, batch_poll_interval_s=30, cancel_on_interrupt=True)
        task = asyncio.ensure_future(
            backend.complete_many(LINES).__anext__()  # type: ignore[attr-defined]
        )
        for _ in range(500):
            await asyncio.sleep(0.01)
            if batch_running(store):
                break
        task.cancel()
        await asyncio.sleep(0.05)
        task.cancel()  # a second Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend.aclose()  # what the pipeline does next
        assert fake.counter["batches_cancel"] == 1
        (batch,) = fake.together.st["batches"].values()
        assert batch["status"] == "CANCELLED"
    (entry,) = ledger(store)
    assert not entry.open  # the cancel's answer came back before the client closed


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_a_batch_left_open_is_reaped_by_cancelling_it(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        fake.together.batch_polls = 10**6
        await interrupted(
            session(fake, store, batch_poll_interval_s=30),
            lambda: fake.counter["batches_create"] == 1,
        )
        (left,) = ledger(store)
        backend = session(fake, store)
        assert await backend.resource_state(left) in ("VALIDATING", "IN_PROGRESS")
        assert await backend.reap(left) == "cancelled"
        await backend.aclose()
        assert fake.counter["batches_cancel"] == 1
        assert await session(fake, store).resource_state(left) == "CANCELLED"
    assert [r.open for r in ledger(store)] == [False]


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_requests_are_split_at_the_line_limit(tmp_path) -> None:
    store = tmp_path / "store.sqlite"
    with TogetherFake() as fake:
        items = await collect(session(fake, store, batch_max_requests=2))
        assert answered(items)
        assert fake.counter["batches_create"] == 3 and fake.counter["files_upload"] == 3
    assert [(r.detail["lines"], r.open) for r in ledger(store)] == [(2, False)] * 2 + [(1, False)]


def test_input_files_are_split_under_the_byte_limit() -> None:
    requests = [_req(i) for i in range(10)]
    one_line = len(plan_chunks(requests[:1], 100)[0].data)
    chunks = plan_chunks(requests, max_lines=100, max_bytes=3 * one_line + 2)
    assert [len(c.ids) for c in chunks] == [3, 3, 3, 1]
    assert [c.offset for c in chunks] == [0, 3, 6, 9]
    assert all(len(c.data) <= 3 * one_line + 2 for c in chunks)
    # The same lines give the same key in every session; other lines another.
    again = plan_chunks(requests, max_lines=100, max_bytes=3 * one_line + 2)
    assert [c.key for c in chunks] == [c.key for c in again]
    assert len({c.key for c in chunks}) == 4
