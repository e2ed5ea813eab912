"""Retrying provider calls: one policy for every loop that asks a provider again.

`RetryPolicy` says whether a failed call is tried again (the error's type is `retryable` and the
loop's failure budget is not spent) and how long to wait first (exponential backoff, with or
without full jitter, and at least the provider's Retry-After, itself capped). Its users:

- the scheduler, per request: full jitter, from the role's `Limits`;
- the fine-tune stage's job polls and interrupted-submit lookup, the OpenAI and Together Batch API
  polls, Together's dedicated-endpoint readiness polls (`RetryPolicy.polling`: doubling from the
  poll interval, no jitter) and its endpoint delete (a fixed wait).

Backends read a 429's headers with `parse_retry_after` and put the result on
`RateLimitError.retry_after`, which the policy honours.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, TypeVar

from ste_core.errors import SteError

__all__ = [
    "MAX_RETRY_AFTER_S",
    "POLL_MAX_DELAY_S",
    "POLL_MAX_RETRIES",
    "RetryPolicy",
    "parse_retry_after",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The longest Retry-After honoured: a server asking for more (a daily quota, a bogus date) gets
#: this wait, and then the loop's failure budget decides, instead of stalling the run for a day.
MAX_RETRY_AFTER_S = 300.0
#: A poll loop's failure budget: with the 5-minute cap below, ten failed polls in a row span about
#: half an hour of provider trouble (from a 30 s interval) before the loop gives up.
POLL_MAX_RETRIES = 10
#: The longest wait between failed polls (unless the poll interval itself is longer).
POLL_MAX_DELAY_S = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How one loop retries a provider call.

    - `max_retries`: retryable failures in a row tolerated, each followed by a wait and a retry;
      the next one is raised. A success starts the count again.
    - `initial_s`, `max_s`: the wait after the n-th failure in a row is
      `min(max_s, initial_s * 2**(n-1))`.
    - `jitter`: full jitter, a uniform draw from [0, that wait]: many callers failing together
      (the scheduler's concurrent requests) then come back spread out, not all at once.
    - `max_retry_after_s`: an error's `retry_after` (the provider's Retry-After, seconds) is
      waited at least, up to this.
    - `rng`: draws the jitter; seed it for reproducible waits.
    """

    max_retries: int
    initial_s: float
    max_s: float
    jitter: bool = False
    max_retry_after_s: float = MAX_RETRY_AFTER_S
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("max_retries", "initial_s", "max_s", "max_retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def polling(cls, interval_s: float, *, max_retries: int = POLL_MAX_RETRIES) -> RetryPolicy:
        """A poll loop's policy: after a failed poll the wait doubles from the poll interval, up to
        POLL_MAX_DELAY_S (or the interval, when that is longer), without jitter.

        Polling a long job in a tight loop against a struggling API only adds to its load, so
        failures back off. No jitter: a poll loop is one caller (or a few), not a herd, and exact
        waits make its log easy to follow.
        """
        return cls(max_retries, interval_s, max(interval_s, POLL_MAX_DELAY_S))

    def should_retry(self, failures: int, error: BaseException) -> bool:
        """Whether to try again after the `failures`-th failure in a row, `error` being the last."""
        return bool(getattr(error, "retryable", False)) and failures <= self.max_retries

    def retry_after(self, error: BaseException | None) -> float | None:
        """The wait the provider asked for with `error`, capped at `max_retry_after_s`; None when
        it asked for none."""
        asked = getattr(error, "retry_after", None)
        if not asked or asked <= 0:
            return None
        return min(float(asked), self.max_retry_after_s)

    def delay(self, failures: int, error: BaseException | None = None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
        # The exponent is clamped so a huge max_retries cannot overflow a float; the cap has won
        # long before.
        wait = min(self.max_s, self.initial_s * 2.0 ** min(failures - 1, 1000))
        if self.jitter:
            wait = self.rng.uniform(0, wait)
        asked = self.retry_after(error)
        return wait if asked is None else max(wait, asked)

    async def call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> T:
        """`await fn()`, tried again after each retryable SteError with this policy's waits (each
        logged as a warning naming `what`); raises at once on any other error, and raises the
        last error when the budget is spent. Each call has its own budget: a loop that calls this
        once per poll gets a fresh one after every successful poll.

        `sleep` defaults to `asyncio.sleep`, looked up at each wait.
        """
        failures = 0
        while True:
            try:
                return await fn()
            except SteError as exc:
                failures += 1
                if not self.should_retry(failures, exc):
                    raise
                wait = self.delay(failures, exc)
                log.warning(
                    "%s failed (%s); asking again in %.1f s (%d/%d)",
                    what,
                    exc,
                    wait,
                    failures,
                    self.max_retries,
                )
                await (asyncio.sleep if sleep is None else sleep)(wait)


def parse_retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait before retrying, from a response's headers; None when there is no usable
    value, so the retry policy falls back to its own backoff.

    `retry-after-ms` (OpenAI's, finer grained) is preferred to the standard `Retry-After`, which
    holds seconds or an HTTP date (a date in the past gives 0). Header names match in any case,
    whatever the mapping (a plain dict is case-sensitive). A negative or non-finite number is
    unusable, like any other unparsable value: waiting forever is never what a server meant.
    """
    if not headers:
        return None
    lower = {str(name).lower(): str(value) for name, value in headers.items()}
    ms = _number(lower.get("retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    raw = lower.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # a "-0000" zone: UTC by RFC 5322, not this machine's local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def _number(raw: str | None) -> float | None:
    """A header value as a non-negative, finite number, else None."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None
