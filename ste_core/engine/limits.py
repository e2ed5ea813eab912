"""Call limits of one backend (`[generator.limits]`, `[judge.limits]`) and the token bucket that
paces requests and tokens per minute."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Limits", "TokenBucket"]


class Limits(BaseModel):
    """Call limits for one backend (also the `[backend.limits]`-style config section)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(16, ge=1, description="most requests in flight at once")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(
        None, gt=0, description="paced on estimated prompt tokens + max_tokens * n, then corrected"
    )
    max_retries: int = Field(6, ge=0, description="retries after the first attempt")
    backoff_initial_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(300.0, gt=0, description="per attempt")
    batch_size: int = Field(256, ge=1, description="requests per complete_many chunk (batching)")
    batch_linger_s: float = Field(
        0.05,
        ge=0,
        description="a partial chunk goes when nothing more can join it; only while a slow input "
        "may still add requests, it waits this long for them",
    )
    max_batches_in_flight: int = Field(2, ge=1)
    max_failure_share: float | None = Field(
        0.5,
        gt=0,
        le=1,
        description="stop the stage once at least 20 requests have failed for good and they are "
        "more than this share of those finished (None: never stop for failures)",
    )


class TokenBucket:
    """A token bucket: `rate` tokens per second, holding at most `capacity`.

    `acquire(cost)` waits until `cost` tokens are there (a cost above capacity is clamped, so one
    huge request cannot deadlock); `adjust(delta)` corrects after the fact (may go negative, which
    makes later callers wait). Waiters are served in FIFO order.
    """

    def __init__(
        self,
        rate: float,
        capacity: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.rate, self.capacity = rate, max(capacity, 1e-9)
        self._tokens = self.capacity
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    @classmethod
    def per_minute(cls, per_minute: float, **kw: Any) -> TokenBucket:
        # Burst of one second's worth (at least one request): providers enforce per-minute limits
        # over shorter windows too, and a full-minute burst gets 429s.
        rate = per_minute / 60.0
        return cls(rate, max(1.0, rate), **kw)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    async def acquire(self, cost: float = 1.0) -> None:
        cost = min(cost, self.capacity)
        async with self._lock:
            self._refill()
            while self._tokens < cost:
                await self._sleep((cost - self._tokens) / self.rate)
                self._refill()
            self._tokens -= cost

    def adjust(self, delta: float) -> None:
        self._refill()
        self._tokens = min(self.capacity, self._tokens - delta)
