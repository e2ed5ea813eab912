"""`RetryPolicy`, the one retry policy of every loop that asks a provider again, and
`parse_retry_after`: the wait a provider asks for, as the backends read it from a 429."""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Iterator

import httpx
import pytest

from ste_core.engine.retry import (
    MAX_RETRY_AFTER_S,
    POLL_MAX_DELAY_S,
    POLL_MAX_RETRIES,
    RetryPolicy,
    parse_retry_after,
)
from ste_core.errors import (
    AuthenticationError,
    PermanentProviderError,
    RateLimitError,
    TransientProviderError,
)

# -- RetryPolicy ---------------------------------------------------------------------------------


def test_the_wait_doubles_per_failure_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=9, initial_s=1.0, max_s=10.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert policy.delay(5000) == 10  # no overflow, however long the run of failures


def test_full_jitter_draws_below_each_cap_reproducibly() -> None:
    caps = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    policy = RetryPolicy(9, 1.0, 10.0, jitter=True, rng=random.Random(7))
    waits = [policy.delay(n) for n in range(1, 7)]
    expected = random.Random(7)
    assert waits == [expected.uniform(0, cap) for cap in caps]
    assert all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) == len(waits)  # drawn, not the cap itself


def test_retry_after_wins_when_longer_and_is_capped() -> None:
    policy = RetryPolicy(9, 1.0, 60.0, max_retry_after_s=120.0)
    asked = RateLimitError("429", retry_after=30.0)
    assert policy.delay(1, asked) == 30.0  # longer than the 1 s backoff
    assert policy.delay(7, asked) == 60.0  # shorter than the 60 s backoff: the backoff stands
    assert policy.delay(1, RateLimitError("429", retry_after=86_400)) == 120.0
    assert policy.retry_after(RateLimitError("429", retry_after=86_400)) == 120.0
    for none in (RateLimitError("429"), RateLimitError("429", retry_after=0), None):
        assert policy.retry_after(none) is None and policy.delay(2, none) == 2.0
    assert RetryPolicy(9, 1.0, 60.0).retry_after(RateLimitError("", retry_after=1e9)) == (
        MAX_RETRY_AFTER_S
    )


def test_retry_after_is_a_floor_under_jitter_too() -> None:
    policy = RetryPolicy(9, 1.0, 60.0, jitter=True, rng=random.Random(1))
    assert all(policy.delay(3, RateLimitError("429", retry_after=5)) >= 5 for _ in range(50))


def test_polling_doubles_from_the_interval_without_jitter() -> None:
    policy = RetryPolicy.polling(30.0)
    assert policy.max_retries == POLL_MAX_RETRIES and not policy.jitter
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [30, 60, 120, 240, 300, 300]
    assert POLL_MAX_DELAY_S == 300
    # an interval longer than the cap is never shortened by a failure
    assert RetryPolicy.polling(600.0).delay(1) == 600.0
    assert RetryPolicy.polling(1.0, max_retries=3).max_retries == 3


def test_should_retry_needs_a_retryable_error_and_budget_left() -> None:
    policy = RetryPolicy(max_retries=2, initial_s=0, max_s=0)
    transient = TransientProviderError("503")
    assert policy.should_retry(1, transient) and policy.should_retry(2, transient)
    assert not policy.should_retry(3, transient)
    assert not policy.should_retry(1, PermanentProviderError("400"))
    assert not policy.should_retry(1, KeyError("not a ste error"))


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1, initial_s=1, max_s=1)
    with pytest.raises(ValueError, match="max_retry_after_s"):
        RetryPolicy(1, 1, 1, max_retry_after_s=-1)


class Flaky:
    """An async callable that raises each of `errors` in turn, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors, self.calls = list(errors), 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def test_call_retries_then_returns_and_logs_each_retry(caplog) -> None:
    policy = RetryPolicy(max_retries=3, initial_s=1.0, max_s=10.0)
    fn = Flaky(TransientProviderError("503"), RateLimitError("429", retry_after=7))
    sleeps = Sleeps()
    with caplog.at_level(logging.WARNING):
        assert await policy.call("polling job 1", fn, sleep=sleeps) == "ok"
    assert fn.calls == 3 and sleeps == [1.0, 7.0]
    assert "polling job 1 failed (503); asking again in 1.0 s (1/3)" in caplog.text
    assert "asking again in 7.0 s (2/3)" in caplog.text


async def test_call_raises_the_last_error_when_the_budget_is_spent() -> None:
    policy = RetryPolicy(max_retries=2, initial_s=1.0, max_s=10.0)
    errors = [TransientProviderError(f"503 #{k}") for k in range(5)]
    fn, sleeps = Flaky(*errors), Sleeps()
    with pytest.raises(TransientProviderError) as info:
        await policy.call("x", fn, sleep=sleeps)
    assert info.value is errors[2] and fn.calls == 3 and sleeps == [1.0, 2.0]


async def test_call_raises_a_non_retryable_error_at_once() -> None:
    policy = RetryPolicy(max_retries=5, initial_s=1.0, max_s=10.0)
    for error in (AuthenticationError("401"), PermanentProviderError("400"), KeyError("bug")):
        fn, sleeps = Flaky(error), Sleeps()
        with pytest.raises(type(error)):
            await policy.call("x", fn, sleep=sleeps)
        assert fn.calls == 1 and sleeps == []


async def test_a_success_resets_the_budget() -> None:
    policy = RetryPolicy(max_retries=2, initial_s=1.0, max_s=10.0)
    sleeps = Sleeps()
    fn = Flaky(TransientProviderError("a"), TransientProviderError("b"))
    assert await policy.call("x", fn, sleep=sleeps) == "ok"
    # a loop's next call tolerates a full budget again, starting from the initial wait
    fn.errors = [TransientProviderError("c"), TransientProviderError("d")]
    assert await policy.call("x", fn, sleep=sleeps) == "ok"
    assert sleeps == [1.0, 2.0, 1.0, 2.0] and fn.calls == 6


# -- parse_retry_after -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the finer one wins
        ({"retry-after": "12"}, 12.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"Retry-After": "7"}, 7.0),  # a plain dict, matched in any case
        ({"RETRY-AFTER-MS": "250"}, 0.25),
        (httpx.Headers({"Retry-After": "3"}), 3.0),
    ],
)
def test_seconds_and_milliseconds(headers, expected) -> None:
    assert parse_retry_after(headers) == pytest.approx(expected)


@pytest.mark.parametrize(
    "headers",
    [
        None,
        {},
        {"x-request-id": "abc"},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "-5"},
        {"retry-after": "inf"},  # would pause the scheduler forever
        {"retry-after": "nan"},
        {"retry-after-ms": "x"},
    ],
)
def test_missing_or_unusable_values_give_none(headers) -> None:
    assert parse_retry_after(headers) is None


def test_an_unusable_ms_value_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "-1", "Retry-After": "2"}) == 2.0


def test_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"Retry-After": when}) <= 31
    past = email.utils.formatdate(time.time() - 600, usegmt=True)
    assert parse_retry_after({"Retry-After": past}) == 0.0


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone hours away from UTC, so reading a date as local time shows."""
    monkeypatch.setenv("TZ", "STE-14")  # POSIX form: UTC+14, no tz database needed
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_http_date_in_zone_minus_0000_is_utc(far_from_utc: None) -> None:
    when = email.utils.formatdate(time.time() + 30)  # "... -0000": UTC, zone unknown
    assert when.endswith("-0000")
    assert 25 <= parse_retry_after({"retry-after": when}) <= 31
