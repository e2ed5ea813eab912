"""Retrying provider calls: how long the provider asked us to wait.

Backends read a 429's headers with `parse_retry_after` and put the result on
`RateLimitError.retry_after`, which the scheduler honours.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from datetime import UTC
from typing import Any

__all__ = ["parse_retry_after"]


def parse_retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds to wait before retrying, from a response's headers; None when there is no usable
    value, so the scheduler falls back to its own backoff.

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
