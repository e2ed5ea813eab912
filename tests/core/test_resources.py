"""Resources: what a backend records of the endpoints and batch jobs it creates."""

from __future__ import annotations

import asyncio

import pytest

from ste_core.engine.budget import Budget
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded
from ste_core.resources import LedgerResources, Resources


def test_in_memory_resources_follow_a_resource_from_begin_to_end() -> None:
    res = Resources("fakeprov", "finetune")
    r = res.begin("endpoint", key="m1", detail={"name": "ep-a"}, usd_per_hour=3.6)
    assert (r.state, r.provider_id, r.backend, r.section) == (
        "creating",
        None,
        "fakeprov",
        "finetune",
    )
    r = res.update(r, provider_id="id-1", state="live")
    assert r.ready is not None and res.open("endpoint") == [r]
    ended = res.end(r, cost_usd=0.5)
    assert (ended.state, ended.cost_usd) == ("ended", 0.5)
    assert res.open() == [] and res.all() == [ended]


def test_a_resource_begun_by_a_killed_session_is_found_open_by_the_next(tmp_path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    res = LedgerResources(store, None, "fakeprov", "finetune")
    r = res.begin("endpoint", key="m1", detail={"name": "ep-a"})
    res.update(r, provider_id="id-1", detail={"deployment": "dep-1"})
    other = LedgerResources(store, None, "otherprov", "judge")
    other.begin("batch", key="digest")
    store.close()  # the session dies here: nothing was ended

    again = RunStore(tmp_path / "run.sqlite")
    found = LedgerResources(again, None, "fakeprov", "finetune").open("endpoint")
    assert [(f.key, f.provider_id, f.detail) for f in found] == [
        ("m1", "id-1", {"name": "ep-a", "deployment": "dep-1"})
    ]
    assert [r.backend for r in again.resources(open_only=True)] == ["fakeprov", "otherprov"]


def test_an_hourly_resource_accrues_in_the_budget_until_it_ends(tmp_path) -> None:
    now = [1000.0]
    store = RunStore(tmp_path / "run.sqlite")
    budget = Budget(max_cost_usd=10.0, ledger=store, clock=lambda: now[0])
    res = LedgerResources(store, budget, "fakeprov", "finetune")
    r = res.begin("endpoint", key="m1")
    assert budget.spent_usd == 0.0
    r = res.update(r, usd_per_hour=3.6)  # $0.001 a second from its creation
    now[0] = r.created + 1000.0
    assert budget.spent_usd == pytest.approx(1.0)
    res.end(r, cost_usd=2.0)
    now[0] += 10_000.0  # ended: it accrues no more
    assert budget.spent_usd == pytest.approx(2.0)
    assert store.ledger_totals() == (0, pytest.approx(2.0))


def test_a_resumed_budget_counts_what_an_endpoint_left_open_accrues(tmp_path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    res = LedgerResources(store, Budget(ledger=store), "fakeprov", "finetune")
    r = res.begin("endpoint", key="m1", usd_per_hour=36.0)
    store.close()  # killed while the endpoint was up

    again = RunStore(tmp_path / "run.sqlite")
    resumed = Budget(max_cost_usd=1.0, ledger=again, clock=lambda: r.created + 50.0)
    assert resumed.spent_usd == pytest.approx(0.5)
    late = Budget(max_cost_usd=1.0, ledger=again, clock=lambda: r.created + 200.0)
    with pytest.raises(BudgetExceeded, match="max_cost_usd"):
        LedgerResources(again, late, "fakeprov", "finetune").begin("endpoint", key="m2")


def test_ending_twice_changes_nothing(tmp_path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    budget = Budget(ledger=store)
    res = LedgerResources(store, budget, "fakeprov", "finetune")
    r = res.begin("batch", key="d", estimate_usd=0.25)
    assert budget.spent_usd == pytest.approx(0.25)
    res.end(r, cost_usd=0.1)
    res.end(r, cost_usd=99.0)
    assert budget.spent_usd == pytest.approx(0.1)
    assert store.resource(r.entry).cost_usd == pytest.approx(0.1)


def test_a_session_claims_only_what_no_one_in_it_works_on(tmp_path) -> None:
    store = RunStore(tmp_path / "run.sqlite")
    dead = LedgerResources(store, None, "fakeprov", "judge")
    left = dead.begin("batch", key="lines-a")
    assert dead.claim("batch", "lines-a") is None  # begun here: this session works on it
    now = LedgerResources(store, None, "fakeprov", "judge")  # the next session
    assert now.claim("batch", "lines-b") is None
    claimed = now.claim("batch", "lines-a")
    assert claimed is not None and claimed.entry == left.entry
    assert now.claim("batch", "lines-a") is None  # a second identical batch begins its own
    now.release(claimed)  # its create call failed: a retry may take it again
    assert now.claim("batch", "lines-a") is not None


async def test_settle_waits_for_a_teardown_its_caller_stopped_waiting_for() -> None:
    res = Resources("fakeprov")
    finished: list[str] = []

    async def teardown() -> None:
        await asyncio.sleep(0.05)
        finished.append("cancelled")

    async def interrupted() -> None:
        await asyncio.shield(res.tear_down_later(teardown()))

    task = asyncio.ensure_future(interrupted())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == []
    await res.settle(1.0)
    assert finished == ["cancelled"]
