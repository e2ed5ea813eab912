"""Scheduler: concurrency, retries, Retry-After, typed outcomes, cache, n-splitting, limiters,
batching; and the real `openai` backend (through the plugin host) against the fake provider's
faults."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ste_core import get_inference_backend
from ste_core.backends import (
    BackendOptions,
    BatchItem,
    InferenceBackend,
    InferenceCapabilities,
    option,
)
from ste_core.engine.budget import Budget
from ste_core.engine.limits import Limits
from ste_core.engine.retry import MAX_RETRY_AFTER_S
from ste_core.engine.scheduler import Scheduler, SchedulerEvent
from ste_core.engine.store import RunStore
from ste_core.errors import (
    BudgetExceeded,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)
from ste_core.records import ChatRequest, Completion, Usage
from ste_core.testing.fake_provider import FakeProvider, FaultPlan
from tests.core.engine.fake_clock import FakeClock

FAST = Limits(backoff_initial_s=0.001, backoff_max_s=0.01)


def req(i: int = 0, **params) -> ChatRequest:
    return ChatRequest.of("m", [{"role": "user", "content": f"question {i}"}], **params)


class EchoBackend(InferenceBackend):
    """Answers `echo:<content>#<sample_index>/<choice>`; counts calls and concurrency."""

    class Options(BackendOptions):
        delay: float = option(0.0, changes_results=False, help="seconds each call takes")
        max_n: int | None = option(None, changes_results=False, help="most choices per call")

    name = "echo"
    options: Options

    def __init__(self, options: Options | None = None, /, **values: Any) -> None:
        super().__init__(options, **values)
        self.calls: list[ChatRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.capabilities = InferenceCapabilities(max_n=self.options.max_n)  # type: ignore[misc]

    async def complete(self, request: ChatRequest) -> Completion:
        self.calls.append(request)
        call = len(self.calls)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.options.delay)
            await self.fail(request, call)
            text = request.messages[-1].content
            return Completion(
                texts=tuple(
                    f"echo:{text}#{request.sample_index}/{request.params.seed}/{c}"
                    for c in range(request.params.n)
                ),
                usage=Usage(prompt_tokens=10, completion_tokens=5),
                cost_usd=0.01,
            )
        finally:
            self.in_flight -= 1

    async def fail(self, request: ChatRequest, call: int) -> None:
        """Subclasses raise here."""


class FailingBackend(EchoBackend):
    def __init__(self, errors: Sequence[BaseException | None], **kw) -> None:
        super().__init__(**kw)
        self.errors = list(errors)

    async def fail(self, request: ChatRequest, call: int) -> None:
        if call <= len(self.errors) and self.errors[call - 1] is not None:
            raise self.errors[call - 1]


async def collect(s: Scheduler, requests, **kw):
    return sorted([o async for o in s.run(requests, **kw)], key=lambda o: o.index)


async def test_concurrency_bound_is_respected() -> None:
    backend = EchoBackend(delay=0.01)
    s = Scheduler(backend, limits=Limits(concurrency=4))
    outs = await collect(s, [req(i) for i in range(30)])
    assert [o.status for o in outs] == ["ok"] * 30
    assert backend.max_in_flight == 4
    assert [o.index for o in outs] == list(range(30))
    assert outs[7].texts == ("echo:question 7#0/None/0",)


async def test_retry_after_is_honoured() -> None:
    clock = FakeClock()
    backend = FailingBackend([RateLimitError("slow down", retry_after=7.5)])
    s = Scheduler(backend, limits=FAST, clock=clock, sleep=clock.sleep)
    [out] = await collect(s, [req()])
    assert out.status == "ok" and out.attempts == 2
    assert clock.now >= 7.5  # waited at least Retry-After, not the 1 ms backoff
    assert s.stats.retries == 1 and s.stats.errors_by_type == {"RateLimitError": 1}


async def test_retry_after_with_real_time() -> None:
    backend = FailingBackend([RateLimitError("slow down", retry_after=0.2)])
    s = Scheduler(backend, limits=FAST)
    t0 = asyncio.get_running_loop().time()
    completion = await s.complete(req())
    assert asyncio.get_running_loop().time() - t0 >= 0.2
    assert completion.texts and len(backend.calls) == 2


async def test_transient_then_ok() -> None:
    backend = FailingBackend([TransientProviderError("502"), TransientProviderError("503")])
    s = Scheduler(backend, limits=FAST)
    [out] = await collect(s, [req()])
    assert out.status == "ok" and out.attempts == 3 and len(backend.calls) == 3
    assert s.stats.retries == 2 and s.stats.errors_by_type == {"TransientProviderError": 2}


async def test_backoff_is_exponential_with_full_jitter() -> None:
    clock = FakeClock()
    backend = FailingBackend([TransientProviderError("x")] * 4)
    limits = Limits(backoff_initial_s=1.0, backoff_max_s=3.0, max_retries=4)
    s = Scheduler(backend, limits=limits, clock=clock, sleep=clock.sleep)
    [out] = await collect(s, [req()])
    assert out.ok
    caps = [1.0, 2.0, 3.0, 3.0]
    assert len(clock.sleeps) == 4
    assert all(0 <= d <= cap for d, cap in zip(clock.sleeps, caps, strict=True))


async def test_backoff_draws_follow_the_seeded_rng() -> None:
    clock = FakeClock()
    backend = FailingBackend([TransientProviderError("x")] * 3)
    limits = Limits(backoff_initial_s=2.0, backoff_max_s=5.0, max_retries=3)
    s = Scheduler(backend, limits=limits, clock=clock, sleep=clock.sleep, rng=random.Random(11))
    [out] = await collect(s, [req()])
    assert out.ok and out.attempts == 4
    expected = random.Random(11)
    assert clock.sleeps == [expected.uniform(0, cap) for cap in (2.0, 4.0, 5.0)]


async def test_retry_after_is_capped_for_the_request_and_the_shared_pause() -> None:
    clock = FakeClock()
    backend = FailingBackend([RateLimitError("quota resets tomorrow", retry_after=86_400)])
    s = Scheduler(backend, limits=FAST, clock=clock, sleep=clock.sleep)
    [out] = await collect(s, [req()])
    assert out.ok and out.attempts == 2
    assert clock.now == pytest.approx(MAX_RETRY_AFTER_S)  # not a day


async def test_no_retry_on_permanent_error() -> None:
    backend = FailingBackend([PermanentProviderError("bad request", status=400)] * 5)
    s = Scheduler(backend, limits=FAST)
    [out] = await collect(s, [req()])
    assert out.status == "api_error" and out.error_type == "PermanentProviderError"
    assert out.attempts == 1 and len(backend.calls) == 1
    assert "bad request" in (out.error or "")
    assert isinstance(out.exception, PermanentProviderError)
    with pytest.raises(PermanentProviderError):
        await s.complete(req(1))


async def test_exhausted_retries_keep_the_error_type() -> None:
    backend = FailingBackend([RateLimitError("429", retry_after=None)] * 10)
    s = Scheduler(backend, limits=Limits(max_retries=2, backoff_initial_s=0.001))
    [out] = await collect(s, [req()])
    assert out.status == "api_error" and out.error_type == "RateLimitError"
    assert out.attempts == 3 and len(backend.calls) == 3
    assert s.stats.api_errors == 1 and s.stats.errors_by_type["RateLimitError"] == 3


async def test_unknown_exception_is_an_api_error_not_retried(caplog) -> None:
    backend = FailingBackend([KeyError("choices")])
    s = Scheduler(backend, limits=FAST)
    outs = await collect(s, [req(), req(1)])
    assert sorted(o.status for o in outs) == ["api_error", "ok"]
    [bad] = [o for o in outs if o.status == "api_error"]
    assert bad.error_type == "KeyError" and "choices" in (bad.error or "") and bad.attempts == 1
    assert s.stats.errors_by_type == {"KeyError": 1}
    assert "backend bug" in caplog.text or "not a ste error" in caplog.text


async def test_timeout_becomes_transient_error() -> None:
    backend = EchoBackend(delay=5.0)
    s = Scheduler(backend, limits=Limits(timeout_s=0.05, max_retries=1, backoff_initial_s=0.001))
    [out] = await collect(s, [req()])
    assert out.status == "api_error" and out.error_type == "TransientProviderError"
    assert "timeout" in (out.error or "") and out.attempts == 2


async def test_cache_hit_makes_zero_calls_and_costs_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    backend = EchoBackend()
    budget = Budget(max_cost_usd=10)
    s = Scheduler(backend, store=store, budget=budget)
    first = await collect(s, [req(i) for i in range(5)])
    assert len(backend.calls) == 5 and budget.spent_usd == pytest.approx(0.05)
    assert s.stats.cost_usd == pytest.approx(0.05)
    s2 = Scheduler(backend, store=store, budget=budget)
    second = await collect(s2, [req(i) for i in range(5)])
    assert len(backend.calls) == 5  # no new call
    assert all(o.cached and o.completion and o.completion.cached for o in second)
    assert [o.texts for o in second] == [o.texts for o in first]
    assert budget.spent_usd == pytest.approx(0.05) and budget.requests == 5
    assert s2.stats.cache_hits == 5 and s2.stats.requests == 0
    store.close()


async def test_n_splitting_gives_distinct_cached_samples(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    backend = EchoBackend(max_n=1)
    s = Scheduler(backend, store=store)
    [out] = await collect(s, [req(n=3, seed=5)])
    assert out.ok and len(backend.calls) == 3
    assert all(c.params.n == 1 for c in backend.calls)
    assert sorted(c.sample_index for c in backend.calls) == [0, 1, 2]
    assert sorted(c.params.seed for c in backend.calls) == [5, 6, 7]
    assert len(out.texts) == 3 and len(set(out.texts)) == 3
    assert out.completion.usage.completion_tokens == 15
    assert store.cache_size() == 3
    again = await s.complete(req(n=3, seed=5))
    assert len(backend.calls) == 3 and again.texts == out.texts and again.cached
    # a second logical sample of the same prompt does not collide with the sub-requests
    await s.complete(req(n=3, seed=5).model_copy(update={"sample_index": 1}))
    assert store.cache_size() == 6
    store.close()


async def test_n_splitting_with_max_n_two() -> None:
    backend = EchoBackend(max_n=2)
    s = Scheduler(backend)
    comp = await s.complete(req(n=5))
    assert [c.params.n for c in sorted(backend.calls, key=lambda c: c.sample_index)] == [2, 2, 1]
    assert len(comp.texts) == 5 and len(comp.finish_reasons) == 5


async def test_partial_split_failure_is_an_api_error_and_keeps_good_parts(tmp_path) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    backend = FailingBackend([None, PermanentProviderError("no")], max_n=1)
    s = Scheduler(backend, store=store, limits=Limits(concurrency=1))
    [out] = await collect(s, [req(n=3)])
    assert out.status == "api_error" and out.error_type == "PermanentProviderError"
    assert store.cache_size() == 2  # the finished sub-requests are not paid for again
    store.close()


async def test_requests_per_minute_limiter() -> None:
    clock = FakeClock()
    backend = EchoBackend()
    s = Scheduler(
        backend,
        limits=Limits(concurrency=10, requests_per_minute=60),
        clock=clock,
        sleep=clock.sleep,
    )
    await collect(s, [req(i) for i in range(5)])
    # 1 request/s, burst 1: five requests need four seconds of (virtual) waiting
    assert clock.now == pytest.approx(4.0, abs=0.01)


async def test_budget_exceeded_propagates() -> None:
    backend = EchoBackend()
    s = Scheduler(backend, budget=Budget(max_requests=3), limits=Limits(concurrency=1))
    got = []
    with pytest.raises(BudgetExceeded, match="max_requests"):
        async for o in s.run([req(i) for i in range(10)]):
            got.append(o)
    assert len(backend.calls) == 3 and len(got) <= 3


class FlakyBackend(EchoBackend):
    """Fails 30% of its calls with a 500 (seeded), after taking a little time like a server."""

    def __init__(self) -> None:
        super().__init__(delay=0.002)
        self.rng = random.Random(7)

    async def fail(self, request: ChatRequest, call: int) -> None:
        if self.rng.random() < 0.3:
            raise TransientProviderError("injected 500", provider="echo", status=500)


async def test_max_requests_is_exact_under_concurrency_and_failures(tmp_path: Path) -> None:
    """At most N attempts reach the provider, counted over retries of failed requests too, with
    32 in flight: the budget reserves each attempt in the same step as it checks it."""
    limits = Limits(concurrency=32, max_retries=6, backoff_initial_s=0.0, backoff_max_s=0.0)
    for n in (37, 50):
        backend = FlakyBackend()
        with RunStore(tmp_path / f"s{n}.sqlite") as store:
            budget = Budget(max_requests=n, ledger=store)
            s = Scheduler(backend, limits=limits, budget=budget, store=store)
            with pytest.raises(BudgetExceeded):
                async for _ in s.run([req(i) for i in range(200)]):
                    pass
            assert len(backend.calls) == n == budget.requests == s.stats.requests
            assert store.ledger_totals()[0] == n


async def test_input_is_streamed_with_a_bounded_window() -> None:
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield req(i)

    s = Scheduler(EchoBackend(delay=0.001), limits=Limits(concurrency=3))
    seen = 0
    async for _ in s.run(endless()):
        seen += 1
        if seen == 20:
            break
    assert pulled <= 20 + 2 * 3 + 1


async def test_async_input_and_progress_events() -> None:
    events: list[SchedulerEvent] = []

    async def gen() -> AsyncIterator[ChatRequest]:
        for i in range(4):
            yield req(i)

    s = Scheduler(EchoBackend(), on_event=events.append)
    outs = await collect(s, gen(), label="baseline")
    assert len(outs) == 4
    assert [e.done for e in events][:4] == [1, 2, 3, 4] and len(events) <= 5
    assert events[-1].finished and events[-1].done == 4
    assert not any(e.finished for e in events[:-1])
    assert all(e.label == "baseline" and e.total is None for e in events)
    events.clear()
    await collect(s, [req(i) for i in range(3)])
    assert events[-1].total == 3 and events[-1].ok == 3


async def test_slow_async_source_does_not_hold_back_outcomes() -> None:
    """A source that waits for an earlier outcome (a stage fed by another) must not deadlock."""
    got_first = asyncio.Event()

    async def feedback() -> AsyncIterator[ChatRequest]:
        yield req(0)
        await got_first.wait()  # only continues once outcome 0 was delivered
        yield req(1)

    s = Scheduler(EchoBackend())
    seen = []

    async def consume() -> None:
        async for o in s.run(feedback()):
            seen.append(o.index)
            got_first.set()

    await asyncio.wait_for(consume(), timeout=5)
    assert seen == [0, 1]


class BatchBackend(EchoBackend):
    """Real-batching backend: records chunk sizes; item 0 of the first chunk fails once."""

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = InferenceCapabilities(batch=True)  # type: ignore[misc]
        self.chunks: list[int] = []

    async def complete_many(self, requests, *, concurrency=None) -> AsyncIterator[BatchItem]:
        self.chunks.append(len(requests))
        for i, r in enumerate(requests):
            if len(self.chunks) == 1 and i == 0:
                yield BatchItem(index=i, error=TransientProviderError("batch line failed"))
            elif "permanent" in r.messages[-1].content:
                yield BatchItem(index=i, error=PermanentProviderError("bad line"))
            else:
                yield BatchItem(index=i, completion=await self.complete(r))


async def test_batch_path_chunks_and_retries_failed_items() -> None:
    backend = BatchBackend()
    limits = Limits(batch_size=8, batch_linger_s=0.01, backoff_initial_s=0.001)
    s = Scheduler(backend, limits=limits)
    assert s.use_batch
    requests = [req(i) for i in range(20)]
    requests.append(ChatRequest.of("m", [{"role": "user", "content": "permanent"}]))
    outs = await collect(s, requests)
    assert [o.status for o in outs] == ["ok"] * 20 + ["api_error"]
    assert outs[-1].error_type == "PermanentProviderError"
    assert max(backend.chunks) <= 8 and sum(backend.chunks) == 22  # 21 + one retried item
    assert s.stats.retries == 1
    # use_batch=False forces single calls even on a batch-capable backend
    assert not Scheduler(BatchBackend(), use_batch=False).use_batch


# -- the real `openai` backend (through the plugin host) + the fake provider's faults ----------


def _requests(n: int) -> list[ChatRequest]:
    return [
        ChatRequest.of(
            "fake-acc70",
            [{"role": "user", "content": f"Name a use of item {i}"}],
            seed=i,
            temperature=0.7,
            n=2,
        )
        for i in range(n)
    ]


async def test_faults_are_retried_to_success_and_cached(tmp_path: Path) -> None:
    plan = FaultPlan(
        rate_limit_every=4,
        retry_after_s=0.05,
        server_error_every=7,
        malformed_every=9,
        routes=frozenset({"chat"}),
    )
    with FakeProvider(faults=plan, latency_s=0.01) as fake:
        backend = get_inference_backend("openai", base_url=fake.url + "/v1", api_key="k")
        store = RunStore(tmp_path / "store.sqlite")
        limits = Limits(concurrency=8, backoff_initial_s=0.01, backoff_max_s=0.05)
        s = Scheduler(backend, limits=limits, store=store)
        outs = [o async for o in s.run(_requests(40))]
        assert sorted(o.status for o in outs) == ["ok"] * 40
        assert all(len(o.texts) == 2 for o in outs)
        errors = s.stats.errors_by_type
        assert errors.get("RateLimitError", 0) >= 5
        assert sum(errors.values()) == s.stats.retries == fake.counter["chat"] - 40
        assert fake.errors == []
        # second run: everything from the cache, the provider sees no new request
        before = fake.counter["chat"]
        s2 = Scheduler(backend, limits=limits, store=store)
        again = [o async for o in s2.run(_requests(40))]
        assert all(o.cached for o in again) and fake.counter["chat"] == before
        assert {o.index: o.texts for o in again} == {o.index: o.texts for o in outs}
        await backend.aclose()
        store.close()


async def test_provider_timeouts_become_retries(tmp_path: Path) -> None:
    plan = FaultPlan(timeout_every=2, timeout_sleep_s=10, routes=frozenset({"chat"}))
    with FakeProvider(faults=plan) as fake:
        backend = get_inference_backend("openai", base_url=fake.url + "/v1", api_key="k")
        s = Scheduler(backend, limits=Limits(timeout_s=0.3, backoff_initial_s=0.01))
        t0 = time.monotonic()
        outs = [o async for o in s.run(_requests(4))]
        assert [o.status for o in outs] == ["ok"] * 4
        assert s.stats.errors_by_type.get("TransientProviderError", 0) >= 1
        assert time.monotonic() - t0 < 5
        await backend.aclose()
