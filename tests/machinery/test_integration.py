"""Scheduler + the real `openai` backend (through the plugin host) + the fake provider's faults."""

from __future__ import annotations

import time
from pathlib import Path

from ste_core import get_inference_backend
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.engine.store import RunStore
from ste_core.records import ChatRequest
from ste_core.testing.fake_provider import FakeProvider, FaultPlan


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
