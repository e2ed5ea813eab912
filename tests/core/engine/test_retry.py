"""`parse_retry_after`: the wait a provider asks for, as the backends read it from a 429."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import httpx
import pytest

from ste_core.engine.retry import parse_retry_after


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
