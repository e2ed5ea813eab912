"""Budget: charges, checks with actionable messages, token estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from ste_core.engine.budget import Budget, cost_of, estimate_request_tokens, estimate_tokens
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded
from ste_core.records import ChatRequest, Completion, Usage

REQ = ChatRequest.of("m", [{"role": "user", "content": "x" * 400}], max_tokens=100)


def test_request_limit() -> None:
    b = Budget(max_requests=2)
    b.check(estimated_requests=2)
    b.reserve(REQ)
    b.release(b.reserve(REQ))  # a failed attempt still counts as a request
    with pytest.raises(BudgetExceeded, match=r"max_requests = 2.*re-run"):
        b.reserve(REQ)
    assert b.remaining_requests == 0 and b.requests == 2


def test_cost_limit_uses_completion_cost_then_prices() -> None:
    b = Budget(max_cost_usd=1.0)
    assert b.settle(b.reserve(REQ), Completion(texts=("x",), cost_usd=0.6)) == 0.6
    b.check(estimated_cost_usd=0.4)
    with pytest.raises(BudgetExceeded, match=r"max_cost_usd = \$1.0000"):
        b.check(estimated_cost_usd=0.5)
    priced = Budget(max_cost_usd=1.0, input_per_million=2.0, output_per_million=10.0)
    cost = priced.settle(
        priced.reserve(REQ),
        Completion(texts=("x",), usage=Usage(prompt_tokens=100_000, completion_tokens=10_000)),
    )
    assert cost == pytest.approx(0.2 + 0.1)
    assert priced.spent_usd == pytest.approx(0.3)  # the reservation gave way to the cost


def test_a_reservation_holds_the_estimate_until_settled_or_released() -> None:
    b = Budget(max_cost_usd=1.0, input_per_million=1000.0, output_per_million=1000.0)
    estimate = b.request_estimate(REQ)  # (104 prompt + 100 completion tokens) at $1000 / M
    assert estimate == pytest.approx(0.204)
    tickets = [b.reserve(REQ) for _ in range(4)]
    assert b.spent_usd == pytest.approx(4 * estimate)
    with pytest.raises(BudgetExceeded):  # a fifth in flight could go over: refused up front
        b.reserve(REQ)
    b.release(tickets[0])
    b.settle(tickets[1], Completion(texts=("x",), cost_usd=0.01))
    assert b.spent_usd == pytest.approx(2 * estimate + 0.01)
    b.reserve(REQ)  # room again


def test_spent_budget_refuses_further_requests_but_free_backends_pass() -> None:
    b = Budget(max_cost_usd=0.5)
    b.settle(b.reserve(REQ), Completion(texts=("x",), cost_usd=0.5))
    with pytest.raises(BudgetExceeded):
        b.check(estimated_requests=1)
    with pytest.raises(BudgetExceeded):
        b.reserve(REQ)
    free = Budget(max_cost_usd=0.0)
    free.settle(free.reserve(REQ), Completion(texts=("x",)))  # no cost reported, no prices
    free.check(estimated_requests=1)
    free.reserve(REQ)


def test_the_ledger_keeps_what_a_killed_session_sent(tmp_path: Path) -> None:
    prices = {"input_per_million": 1000.0, "output_per_million": 1000.0}
    with RunStore(tmp_path / "store.sqlite") as store:
        first = Budget(max_requests=10, ledger=store, **prices)
        first.settle(first.reserve(REQ), Completion(texts=("x",), cost_usd=0.05))
        first.release(first.reserve(REQ))
        first.reserve(REQ)  # sent; the session dies before the answer
    with RunStore(tmp_path / "store.sqlite") as store:
        requests, spent = store.ledger_totals()
    assert requests == 3
    # the answered one's cost, the failed one nothing, the unanswered one its estimate
    assert spent == pytest.approx(0.05 + first.request_estimate(REQ))


def test_a_resumed_session_takes_over_what_a_killed_one_left_in_batch_jobs(
    tmp_path: Path,
) -> None:
    """A batch job is paid once whichever session collects it: the same line batched again
    takes the dead session's reservation over. A line sent directly counts anew (the dead
    session's copy may have been answered and billed)."""
    prices = {"input_per_million": 1000.0, "output_per_million": 1000.0}
    estimate = Budget(**prices).request_estimate(REQ)
    with RunStore(tmp_path / "store.sqlite") as store:
        first = Budget(ledger=store, **prices)
        first.reserve(REQ, batch_key="a")  # in a batch job when the session dies
        first.reserve(REQ, batch_key="b")
        first.reserve(REQ)  # sent directly, unanswered
        first.settle(first.reserve(REQ, batch_key="done"), Completion(texts=("x",), cost_usd=0.0))
    with RunStore(tmp_path / "store.sqlite") as store:
        requests, spent = store.ledger_totals()
        assert (requests, spent) == (4, pytest.approx(3 * estimate))
        # At its request limit: taking a line over is no new request, so it is not refused.
        second = Budget(max_requests=4, spent_usd=spent, requests=requests, ledger=store, **prices)
        ticket = second.reserve(REQ, batch_key="a")
        assert second.requests == 4
        second.settle(ticket, Completion(texts=("x",), cost_usd=0.01))
        assert second.spent_usd == pytest.approx(0.01 + 2 * estimate)
        with pytest.raises(BudgetExceeded):
            second.reserve(REQ, batch_key="a")  # taken over once; a second copy is a request
        with pytest.raises(BudgetExceeded):
            second.reserve(REQ, batch_key="done")  # answered before the kill: nothing left open
        second.release(second.reserve(REQ, batch_key="b"))
        assert store.ledger_totals() == (4, pytest.approx(0.01 + estimate))


def test_token_estimate() -> None:
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 2
    reqs = [
        ChatRequest.of("m", [{"role": "user", "content": "x" * 40}], max_tokens=100, n=2)
        for _ in range(3)
    ]
    est = estimate_request_tokens(iter(reqs))
    assert est.requests == 3
    assert est.prompt_tokens == 3 * (10 + 4)
    assert est.completion_tokens == 3 * 200
    assert estimate_request_tokens(reqs, expected_completion_tokens=10).completion_tokens == 60
    assert est.cost_usd(1.0, 2.0) == pytest.approx((42 * 1 + 600 * 2) / 1e6)
    assert cost_of(Usage(prompt_tokens=1_000_000), 3.0, 0) == 3.0


def test_negative_limits_rejected() -> None:
    with pytest.raises(ValueError, match="max_cost_usd"):
        Budget(max_cost_usd=-1)
