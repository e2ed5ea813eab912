"""Together Batch API status polls under the poll retry policy, live against the fake on
127.0.0.1 with injected faults (a cassette holds one recorded run, not a provider in trouble)."""

from __future__ import annotations

import pytest
from tg_support import CHAT_MODEL, RECORDING_KEY

from ste_backends.together.fake import TogetherFake
from ste_backends.together.inference import TogetherInference
from ste_core.backends import BatchItem
from ste_core.engine.retry import POLL_MAX_RETRIES
from ste_core.errors import PermanentProviderError, TransientProviderError
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FaultPlan

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

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


async def test_failed_polls_are_retried_then_the_batch_is_followed_to_the_end() -> None:
    with TogetherFake(faults=polls_failing(3)) as fake:
        items = await run(fake)
        assert fake.counter["batches_get"] > 3 and fake.counter["batches_cancel"] == 0
    assert [i.index for i in items] == [0, 1]
    assert all(i.error is None and i.completion and i.completion.texts for i in items)


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


async def test_a_refused_poll_is_not_retried() -> None:
    with TogetherFake(faults=polls_failing(10**6, status=404)) as fake:
        items = await run(fake)
        assert fake.counter["batches_get"] == 1 and fake.counter["batches_cancel"] == 1
    assert all(isinstance(i.error, PermanentProviderError) for i in items)
