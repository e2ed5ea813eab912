"""Rate limiters (ste_core.engine.limits): the token bucket, on virtual time."""

from __future__ import annotations

import pytest

from ste_core.engine.limits import TokenBucket
from tests.core.engine.fake_clock import FakeClock


async def test_token_bucket_tokens_per_minute() -> None:
    clock = FakeClock()
    bucket = TokenBucket.per_minute(600, clock=clock, sleep=clock.sleep)  # 10 tokens/s, cap 10
    await bucket.acquire(10)
    await bucket.acquire(5)
    assert clock.now == pytest.approx(0.5)
    bucket.adjust(10)  # the call used 10 more tokens than estimated: later callers wait
    await bucket.acquire(1)
    assert clock.now == pytest.approx(1.6)
    await bucket.acquire(1000)  # clamped to capacity, never deadlocks
    assert clock.now == pytest.approx(2.6)
