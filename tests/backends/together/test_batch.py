"""Together Batch API lines (ste_backends/together/batch.py): custom ids, result and error lines."""

from __future__ import annotations

import json

import pytest

from ste_backends.together.batch import (
    _line_error,
    custom_id_for,
    parse_result_lines,
    write_batch_input,
)
from ste_backends.together.fake import TogetherFake, _inspect
from ste_backends.together.inference import TogetherInference
from ste_core.backends import BatchItem
from ste_core.engine.retry import POLL_MAX_RETRIES
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest
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
