"""Spending limits: stop a run before it goes over a cost or request budget.

Every provider attempt is **reserved** before it is sent (`reserve`: the check and the count
happen together under one lock, so `max_requests = N` lets at most N requests out whatever the
concurrency) and then **settled** with its real cost (`settle`) or released when it failed before
the provider answered (`release`); cache hits are free and never reserved. With a ledger (the run
store's `ledger` table), each reservation is a row written before the request goes out, so the
spending of a session that was killed mid-stage still counts when the run resumes. Stages call
`check` with an estimate *before* launching a large batch, so a run stops with an actionable
message instead of finding out half-way.

Token estimates use the chars/4 heuristic (about right for English text with BPE tokenisers; off by
up to ~2x for code or non-Latin scripts). It is meant for "will this stage fit the budget",
not for billing: real charges use the provider's `usage` and `cost_usd`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ste_core.errors import BudgetExceeded
from ste_core.records import ChatRequest, Completion, Usage

if TYPE_CHECKING:
    from ste_core.engine.store import RunStore

CHARS_PER_TOKEN = 4.0


def estimate_tokens(text: str) -> int:
    """Rough token count of `text`: ceil(chars / 4)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class TokenEstimate:
    """Estimated tokens for a set of requests. `completion_tokens` assumes every choice uses its
    full `max_tokens` (an upper bound) unless a smaller `expected_completion_tokens` was given."""

    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost_usd(self, input_per_million: float, output_per_million: float) -> float:
        """Cost of this estimate at the given per-million-token prices."""
        return cost_of(
            Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens),
            input_per_million,
            output_per_million,
        )


def estimate_request_tokens(
    requests: Iterable[ChatRequest], *, expected_completion_tokens: int | None = None
) -> TokenEstimate:
    """Estimate prompt and completion tokens of `requests` (streams; holds nothing).

    Prompt tokens: chars/4 over every message plus 4 tokens of chat framing per message.
    Completion tokens: per choice, `expected_completion_tokens` if given, else `max_tokens`.
    """
    n_req = prompt = completion = 0
    for req in requests:
        n_req += 1
        prompt += sum(estimate_tokens(m.content) + 4 for m in req.messages)
        per_choice = req.params.max_tokens
        if expected_completion_tokens is not None:
            per_choice = min(per_choice, expected_completion_tokens)
        completion += per_choice * req.params.n
    return TokenEstimate(requests=n_req, prompt_tokens=prompt, completion_tokens=completion)


def cost_of(usage: Usage, input_per_million: float, output_per_million: float) -> float:
    """USD for `usage` at per-million-token prices."""
    return (
        usage.prompt_tokens * input_per_million + usage.completion_tokens * output_per_million
    ) / 1_000_000


class Budget:
    """A cost and/or request limit for one run; None means unlimited.

    If the backend does not report `completion.cost_usd`, give `input_per_million` and
    `output_per_million` (USD per million tokens) and the cost is computed from `usage`; a
    request is then reserved at its estimated cost (prompt + `expected_completion_tokens`, or
    `max_tokens`, per choice) until it is settled. `ledger`: the run store whose ledger records
    every reservation (`Budget.of_run` reads its totals back). Thread-safe.
    """

    def __init__(
        self,
        max_cost_usd: float | None = None,
        max_requests: int | None = None,
        *,
        input_per_million: float | None = None,
        output_per_million: float | None = None,
        expected_completion_tokens: int | None = None,
        spent_usd: float = 0.0,
        requests: int = 0,
        ledger: RunStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_cost_usd is not None and max_cost_usd < 0:
            raise ValueError("budget.max_cost_usd must be >= 0 (or unset for no limit)")
        if max_requests is not None and max_requests < 0:
            raise ValueError("budget.max_requests must be >= 0 (or unset for no limit)")
        self.max_cost_usd = max_cost_usd
        self.max_requests = max_requests
        self.input_per_million = input_per_million
        self.output_per_million = output_per_million
        self.expected_completion_tokens = expected_completion_tokens
        self._fixed_usd = spent_usd  # everything but the hourly accrual of open resources
        self.requests = requests
        self._ledger = ledger
        self._reserved: dict[int, float] = {}  # ticket -> estimated cost of a request in flight
        # ticket -> (USD per hour, unix time it started): endpoints billed while they live
        self._hourly: dict[int, tuple[float, float]] = {}
        self._clock = clock
        self._tickets = 0
        self._lock = threading.Lock()
        # cache key -> ledger tickets of batched requests a dead session left open. They are
        # already in `requests` and `spent_usd` (the ledger's totals): the same request batched
        # again re-attaches to that session's batch job (or to none, when the job was never
        # created), so it takes such a ticket over instead of counting a second time.
        self._left_open: dict[str, list[tuple[int, float]]] = {}
        if ledger is not None:
            for resource in ledger.resources(open_only=True):
                if resource.usd_per_hour:
                    self._hourly[resource.entry] = (resource.usd_per_hour, resource.created)
            for entry, key, estimate in ledger.ledger_open_batched():
                self._left_open.setdefault(key, []).append((entry, estimate))

    @property
    def spent_usd(self) -> float:
        """Spent so far: settled costs, reservations at their estimates, and what every open
        hourly-priced resource (a dedicated endpoint) has accrued up to now."""
        now = self._clock()
        accrued = sum(
            rate * max(0.0, now - since) / 3600.0 for rate, since in self._hourly.values()
        )
        return self._fixed_usd + accrued

    @property
    def priced(self) -> bool:
        return self.input_per_million is not None or self.output_per_million is not None

    def completion_cost(self, completion: Completion) -> float:
        """The completion's own `cost_usd`, else its usage at the configured prices, else 0."""
        if completion.cost_usd is not None:
            return completion.cost_usd
        if self.priced:
            return cost_of(
                completion.usage, self.input_per_million or 0.0, self.output_per_million or 0.0
            )
        return 0.0

    def request_estimate(self, request: ChatRequest) -> float:
        """What `request` may cost at the configured prices (0 without prices)."""
        if not self.priced:
            return 0.0
        est = estimate_request_tokens(
            [request], expected_completion_tokens=self.expected_completion_tokens
        )
        return est.cost_usd(self.input_per_million or 0.0, self.output_per_million or 0.0)

    # -- one request: reserve, then settle or release --------------------------------------------

    def reserve(self, request: ChatRequest, *, batch_key: str | None = None) -> int:
        """Count one provider attempt and reserve its estimated cost, or raise BudgetExceeded
        when it would go over a limit. Check and count are one step under the lock: concurrent
        callers can never overshoot `max_requests`. Returns the ticket to settle or release.

        `batch_key`: the request's cache key when it goes out in a batch job. An earlier
        session's open reservation of the same key is then taken over, not doubled: a batch
        job is paid once whichever session collects it. A request sent directly always
        counts anew (a dead session's copy may have been answered, and billed)."""
        if batch_key is not None:
            with self._lock:
                left = self._left_open.get(batch_key)
                if left:
                    ticket, estimate = left.pop()
                    self._reserved[ticket] = estimate
                    return ticket
        return self._reserve("request", self.request_estimate(request), requests=1, key=batch_key)

    def reserve_cost(self, kind: str, estimate_usd: float) -> int:
        """Reserve a paid thing that is not a request (a fine-tune job, say) at its estimated
        cost, or raise BudgetExceeded when that would go over `max_cost_usd`."""
        return self._reserve(kind, estimate_usd, requests=0)

    def _reserve(self, kind: str, estimate: float, *, requests: int, key: str | None = None) -> int:
        with self._lock:
            self._refuse_if_over(estimate, requests)
            self.requests += requests
            self._fixed_usd += estimate
            if self._ledger is not None:
                ticket = self._ledger.ledger_reserve(
                    kind, estimate_usd=estimate, requests=requests, key=key
                )
            else:
                self._tickets += 1
                ticket = self._tickets
            self._reserved[ticket] = estimate
        return ticket

    def settle(self, ticket: int, completion: Completion) -> float:
        """The attempt was answered: replace its estimate by its cost; returns the cost. Never
        raises: the next check does, so an answer already paid for is always kept."""
        cost = self.completion_cost(completion)
        self.settle_cost(ticket, cost, completion.usage)
        return cost

    def settle_cost(self, ticket: int, cost_usd: float, usage: Usage | None = None) -> None:
        """A reserved thing ended at `cost_usd` (it replaces the estimate). The ticket may come
        from an earlier session (a job re-attached to): its estimate is in the ledger."""
        with self._lock:
            self._fixed_usd += cost_usd - self._unreserve(ticket)
        if self._ledger is not None:
            self._ledger.ledger_settle(ticket, cost_usd=cost_usd, usage=usage)

    def release(self, ticket: int) -> None:
        """The reserved thing failed without being paid for (an error, not an answer): it still
        counts as a request, its estimated cost is given back."""
        with self._lock:
            self._fixed_usd -= self._unreserve(ticket)
        if self._ledger is not None:
            self._ledger.ledger_release(ticket)

    # -- resources billed by the hour (endpoints) ------------------------------------------------

    def hold(self, estimate_usd: float) -> None:
        """Count a resource about to be created (written to the ledger by its caller) at its
        estimated cost, or raise BudgetExceeded when the run is at or over a cost limit."""
        with self._lock:
            self._refuse_if_over(estimate_usd, 0, paid=True)
            self._fixed_usd += estimate_usd

    def accrue(self, ticket: int, usd_per_hour: float, since: float) -> None:
        """Ledger entry `ticket` (a resource) costs `usd_per_hour` from unix time `since` on,
        until `stop_accruing`."""
        with self._lock:
            self._hourly[ticket] = (usd_per_hour, since)

    def stop_accruing(self, ticket: int, change_usd: float) -> None:
        """The resource ended: its accrual stops and `change_usd` (its final cost less the
        estimate it was held at) is counted."""
        with self._lock:
            self._hourly.pop(ticket, None)
            self._fixed_usd += change_usd

    def _unreserve(self, ticket: int) -> float:
        """The estimate `ticket` holds in `spent_usd` (0 once settled or released)."""
        if ticket in self._reserved:
            return self._reserved.pop(ticket)
        if self._ledger is not None:
            return self._ledger.ledger_reserved_estimate(ticket)
        return 0.0

    def check(self, estimated_cost_usd: float = 0.0, estimated_requests: int = 0) -> None:
        """Raise BudgetExceeded if spending the estimate would go over a limit."""
        with self._lock:
            self._refuse_if_over(estimated_cost_usd, estimated_requests)

    def _refuse_if_over(
        self, estimated_cost_usd: float, estimated_requests: int, *, paid: bool = False
    ) -> None:
        """`paid`: the thing costs money even without an estimate (a resource)."""
        spent, reqs = self.spent_usd, self.requests
        # A request with no cost estimate is refused once the money is used up (spent > 0 so a
        # free local backend is never stopped by max_cost_usd = 0).
        if self.max_cost_usd is not None and (
            spent + estimated_cost_usd > self.max_cost_usd
            or ((estimated_requests > 0 or paid) and spent > 0 and spent >= self.max_cost_usd)
        ):
            raise BudgetExceeded(
                f"Budget: ${spent:.4f} spent so far, and the next step needs about "
                f"${estimated_cost_usd:.4f} more, over budget.max_cost_usd = "
                f"${self.max_cost_usd:.4f}. Raise budget.max_cost_usd in the config and re-run "
                f"the same command: finished requests are cached and will not be paid for again."
            )
        if self.max_requests is not None and reqs + estimated_requests > self.max_requests:
            raise BudgetExceeded(
                f"Budget: {reqs} provider requests made so far, and the next step needs "
                f"{estimated_requests} more, over budget.max_requests = {self.max_requests}. "
                f"Raise budget.max_requests in the config and re-run the same command: "
                f"finished requests are cached and will not be made again."
            )

    @property
    def remaining_usd(self) -> float | None:
        return None if self.max_cost_usd is None else max(0.0, self.max_cost_usd - self.spent_usd)

    @property
    def remaining_requests(self) -> int | None:
        return None if self.max_requests is None else max(0, self.max_requests - self.requests)

    def __repr__(self) -> str:
        return (
            f"Budget(max_cost_usd={self.max_cost_usd}, max_requests={self.max_requests}, "
            f"spent_usd={self.spent_usd:.4f}, requests={self.requests})"
        )
