"""Injectable faults for the fake provider: latency, 429s, 5xx, timeouts, malformed bodies.

Every decision is a pure function of (seed, request sequence number, fault kind), so a plan gives
the same faults for the same request numbers on every run, whatever the thread timing. "The k-th
request" counts the requests the plan applies to (see `routes`), starting at 1, in arrival order.

Order of checks for one request: `fail_first`, then timeout, then 429, then 5xx; a request gets at
most one of those. `malformed` is applied to the handler's own answer (a 200 with a broken JSON
body) when none of the others fired.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal["fail_first", "timeout", "rate_limit", "server_error", "malformed"]


@dataclass(frozen=True)
class FaultAction:
    """What to do to one request instead of (or on top of) answering it normally."""

    kind: FaultKind
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    sleep_s: float = 0.0


@dataclass
class FaultPlan:
    """Which requests fail, and how. All probabilities are per request, seeded.

    Attributes:
        seed: makes every probabilistic decision reproducible.
        latency_s: extra latency for every request (on top of the provider's `latency_s`).
        route_latency_s: extra latency by route name (e.g. {"chat": 0.2}); replaces `latency_s`
            for those routes.
        rate_limit_every / rate_limit_p: answer 429 to every k-th request / with probability p.
        retry_after_s: the Retry-After header sent with a 429 (None: no header).
        server_error_every / server_error_p / server_error_status: the same for 5xx.
        timeout_every / timeout_p: hold the request for `timeout_sleep_s` before answering (longer
            than the client's timeout, so the client gives up; the server wakes early on stop()).
        malformed_every / malformed_p: answer 200 with a truncated, unparsable JSON body.
        fail_first / fail_first_status: the first N requests get this status (a provider that
            is down at the start, then recovers).
        routes: route names the plan applies to (None: every route). Requests to other routes
            do not advance the count.
    """

    seed: int = 0
    latency_s: float = 0.0
    route_latency_s: dict[str, float] = field(default_factory=dict)
    rate_limit_every: int | None = None
    rate_limit_p: float = 0.0
    retry_after_s: float | None = 1.0
    server_error_every: int | None = None
    server_error_p: float = 0.0
    server_error_status: int = 500
    timeout_every: int | None = None
    timeout_p: float = 0.0
    timeout_sleep_s: float = 30.0
    malformed_every: int | None = None
    malformed_p: float = 0.0
    fail_first: int = 0
    fail_first_status: int = 500
    routes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("rate_limit_p", "server_error_p", "timeout_p", "malformed_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"FaultPlan.{name} must be in [0, 1], got {p}")
        for name in ("rate_limit_every", "server_error_every", "timeout_every", "malformed_every"):
            k = getattr(self, name)
            if k is not None and k < 1:
                raise ValueError(f"FaultPlan.{name} must be >= 1 (or None), got {k}")
        if self.routes is not None:
            self.routes = frozenset(self.routes)

    def applies_to(self, route: str) -> bool:
        return self.routes is None or route in self.routes

    def latency_for(self, route: str) -> float:
        return self.route_latency_s.get(route, self.latency_s)

    def _hit(self, kind: str, seq: int, every: int | None, p: float) -> bool:
        if every is not None and seq % every == 0:
            return True
        if p <= 0.0:
            return False
        digest = hashlib.sha256(f"{self.seed}:{kind}:{seq}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < p

    def decide(self, seq: int) -> FaultAction | None:
        """The fault (other than `malformed`) for the request numbered `seq` (1-based)."""
        if seq <= self.fail_first:
            return FaultAction(
                "fail_first",
                status=self.fail_first_status,
                body=_error_body(
                    f"injected failure: first {self.fail_first} requests fail",
                    self.fail_first_status,
                ),
            )
        if self._hit("timeout", seq, self.timeout_every, self.timeout_p):
            return FaultAction("timeout", sleep_s=self.timeout_sleep_s)
        if self._hit("rate_limit", seq, self.rate_limit_every, self.rate_limit_p):
            headers = {}
            if self.retry_after_s is not None:
                headers["Retry-After"] = _fmt_seconds(self.retry_after_s)
            return FaultAction(
                "rate_limit",
                status=429,
                headers=headers,
                body=_error_body("injected rate limit: slow down", 429),
            )
        if self._hit("server_error", seq, self.server_error_every, self.server_error_p):
            return FaultAction(
                "server_error",
                status=self.server_error_status,
                body=_error_body("injected server error", self.server_error_status),
            )
        return None

    def malformed(self, seq: int) -> bool:
        """Whether request `seq` gets a malformed 200 body."""
        return self._hit("malformed", seq, self.malformed_every, self.malformed_p)


def _fmt_seconds(s: float) -> str:
    return str(int(s)) if float(s).is_integer() else f"{s:g}"


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def _error_body(message: str, status: int) -> dict[str, Any]:
    """An error body in the OpenAI wire format (Together uses the same shape)."""
    return {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error"),
            "param": None,
            "code": None,
        }
    }


def error_body(message: str, status: int) -> dict[str, Any]:
    """Public alias: `{"error": {"message", "type", "param", "code"}}` for `status`."""
    return _error_body(message, status)


def malformed_json(obj: Any) -> bytes:
    """A JSON body cut in half (what a dropped proxy connection or a buggy gateway sends)."""
    blob = json.dumps(obj).encode()
    return blob[: max(1, len(blob) // 2)]
