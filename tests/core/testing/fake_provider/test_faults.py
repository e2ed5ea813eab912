"""Fault plans (ste_core.testing.fake_provider.faults): seeded, and checked when made. (What a
plan does to served requests: test_server.py.)"""

from __future__ import annotations

import pytest

from ste_core.testing.fake_provider import FaultPlan


def test_probabilistic_faults_are_seeded() -> None:
    plan = FaultPlan(server_error_p=0.3, seed=7)
    hits = [plan.decide(i) is not None for i in range(1, 1001)]
    assert hits == [
        FaultPlan(server_error_p=0.3, seed=7).decide(i) is not None for i in range(1, 1001)
    ]
    assert 0.25 < sum(hits) / 1000 < 0.35
    assert hits != [
        FaultPlan(server_error_p=0.3, seed=8).decide(i) is not None for i in range(1, 1001)
    ]
    with pytest.raises(ValueError, match="rate_limit_p"):
        FaultPlan(rate_limit_p=2)
