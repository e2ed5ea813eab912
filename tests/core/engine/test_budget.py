"""Budget: charges, checks with actionable messages, token estimates."""

from __future__ import annotations

import pytest

from ste_core.engine.budget import Budget, cost_of, estimate_request_tokens, estimate_tokens
from ste_core.errors import BudgetExceeded
from ste_core.records import ChatRequest, Completion, Usage


def test_request_limit() -> None:
    b = Budget(max_requests=2)
    b.check(estimated_requests=2)
    b.charge_request()
    b.charge_request()
    with pytest.raises(BudgetExceeded, match=r"max_requests = 2.*re-run"):
        b.check(estimated_requests=1)
    assert b.remaining_requests == 0


def test_cost_limit_uses_completion_cost_then_prices() -> None:
    b = Budget(max_cost_usd=1.0)
    assert b.charge(Completion(texts=("x",), cost_usd=0.6)) == 0.6
    b.check(estimated_cost_usd=0.4)
    with pytest.raises(BudgetExceeded, match=r"max_cost_usd = \$1.0000"):
        b.check(estimated_cost_usd=0.5)
    # cached completions are free
    assert b.charge(Completion(texts=("x",), cost_usd=5.0, cached=True)) == 0.0
    priced = Budget(max_cost_usd=1.0, input_per_million=2.0, output_per_million=10.0)
    cost = priced.charge(
        Completion(texts=("x",), usage=Usage(prompt_tokens=100_000, completion_tokens=10_000))
    )
    assert cost == pytest.approx(0.2 + 0.1)


def test_spent_budget_refuses_further_requests_but_free_backends_pass() -> None:
    b = Budget(max_cost_usd=0.5)
    b.charge(Completion(texts=("x",), cost_usd=0.5))
    with pytest.raises(BudgetExceeded):
        b.check(estimated_requests=1)
    free = Budget(max_cost_usd=0.0)
    free.charge(Completion(texts=("x",)))  # no cost reported, no prices
    free.check(estimated_requests=1)


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
