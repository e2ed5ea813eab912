"""The preflight (`ste_core.run.preflight`): backends built before anything is sent, and the
plan estimate checked against what a real run on the scripted backends then makes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ste_core import Pipeline
from ste_core.config import Config, load_config
from ste_core.engine.store import RunStore
from ste_core.errors import BudgetExceeded, ConfigurationError
from ste_core.run.preflight import PlanEstimate, preflight
from ste_core.run.progress import Reporter
from tests.core.helpers import (
    CrashAfter,
    ScriptedFineTune,
    base_config,
    config_with,
    write_config,
)


async def _estimate(config: Config) -> PlanEstimate:
    store_path = config.run_dir / "store.sqlite"
    store = RunStore.open_read_only(store_path) if store_path.exists() else None
    try:
        checked = await preflight(config, store=store)
    finally:
        if store is not None:
            store.close()
    assert checked.problems == []
    assert checked.estimate is not None
    return checked.estimate


def _real_requests(config: Config) -> dict[tuple[str, int], int]:
    """Provider requests each finished step made (the run store's per-stage usage)."""
    with RunStore.open_read_only(config.run_dir / "store.sqlite") as store:
        return {
            (name, i): usage.requests
            for i in store.all_stage_counts()
            for name, usage in store.stage_usage(i).items()
        }


async def test_the_estimate_bounds_the_real_run_and_is_exact_where_inputs_exist(
    tmp_path: Path, scripted
) -> None:
    config = config_with(tmp_path)
    estimate = await _estimate(config)
    assert not config.run_dir.exists()  # the preflight writes nothing
    await Pipeline(config).run()
    real = _real_requests(config)
    for step in estimate.steps:
        w, made = step.work, real[(step.stage, step.iteration)]
        assert w.requests is not None
        if w.upper_bound:
            assert made <= w.requests, step
        else:
            # The training instructions are known before the run: their baselines exactly.
            assert made == w.requests, step
    by_step = {(s.stage, s.iteration): s.work for s in estimate.steps}
    assert not by_step[("baseline", 1)].upper_bound and by_step[("baseline", 1)].requests == 30
    # Every iteration asks the first iteration's baselines and worse responses again: cached.
    assert by_step[("baseline", 2)].requests == 0 == real[("baseline", 2)]
    assert by_step[("worse", 2)].requests == 0 == real[("worse", 2)]
    # Both orders of every pair, one request for the three samples of each.
    assert by_step[("judge", 1)].requests == 2 * 30 and by_step[("judge", 1)].upper_bound
    total = estimate.total
    assert total.requests is not None and sum(real.values()) <= total.requests
    assert total.finetune_jobs == 2 == ScriptedFineTune.submits
    assert estimate.serving_sessions == 2  # M_1 (its eval + iteration 2's judging), M_2


async def test_a_resumed_run_is_estimated_from_what_exists_less_what_is_cached(
    tmp_path: Path, scripted
) -> None:
    config = config_with(tmp_path)
    fresh = await _estimate(config)
    with pytest.raises(RuntimeError, match="simulated crash"):
        await Pipeline(config, reporter=CrashAfter("worse@1", 12)).run()
    resumed = await _estimate(config)
    by_step = {(s.stage, s.iteration): s for s in resumed.steps}
    assert by_step[("eval_pairs", 0)].done and by_step[("baseline", 1)].done
    assert by_step[("eval_pairs", 0)].work.requests == 0
    # The eval pairs exist now: the seed judge's evaluation is exact (both orders of each).
    evaluate = by_step[("evaluate", 0)].work
    assert not evaluate.upper_bound and evaluate.requests == 2 * _lines(config, "eval_pairs.jsonl")
    # The interrupted stage: its baselines exist, so it is exact, less the answers it got.
    worse = by_step[("worse", 1)].work
    assert not worse.upper_bound and worse.cached >= 12
    assert worse.requests is not None and worse.requests + worse.cached == 30
    assert resumed.spent_requests > 0
    assert resumed.total.requests is not None and fresh.total.requests is not None
    assert resumed.total.requests < fresh.total.requests
    await Pipeline(config).run()
    real = _real_requests(config)
    assert real[("worse", 1)] == worse.requests
    assert real[("evaluate", 0)] == evaluate.requests


def _lines(config: Config, name: str) -> int:
    return len((config.run_dir / name).read_text().splitlines())


class Warnings(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[str] = []
        self.infos: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def info(self, message: str) -> None:
        self.infos.append(message)


async def test_over_the_budget_the_run_warns_and_starts_and_the_budget_stops_it(
    tmp_path: Path, scripted
) -> None:
    config = config_with(tmp_path, **{"budget.max_requests": 40})
    estimate = await _estimate(config)
    (line,) = estimate.over_budget()
    assert "over budget.max_requests = 40" in line
    reporter = Warnings()
    with pytest.raises(BudgetExceeded):
        await Pipeline(config, reporter=reporter).run()
    assert any("over budget.max_requests = 40" in w for w in reporter.warnings)
    assert any(i.startswith("estimate of what the run still needs") for i in reporter.infos)
    assert 0 < len(scripted.calls) <= 40  # it started, and the budget stopped it


async def test_priced_estimate_and_fine_tune_cost_from_the_backends_outlook(
    tmp_path: Path, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ste_core.backends import FineTuneOutlook

    monkeypatch.setattr(
        ScriptedFineTune, "outlook", lambda self, spec: FineTuneOutlook(0.5, True), raising=False
    )
    prices = {"budget.input_per_million": 1.0, "budget.output_per_million": 2.0}
    config = config_with(tmp_path, **prices, **{"budget.max_cost_usd": 0.01})
    estimate = await _estimate(config)
    total = estimate.total
    assert total.finetune_cost_usd == 1.0
    cost = estimate.cost_usd(total)
    assert cost == pytest.approx((total.prompt_tokens + 2 * total.completion_tokens) / 1e6)
    assert "max_cost_usd" in estimate.over_budget()[0]
    assert any("dedicated endpoint sessions" in n for n in estimate.notes())


async def test_a_missing_key_stops_the_run_before_anything_is_sent_or_written(
    tmp_path: Path, scripted_and_builtins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOGETHER_API_KEY", raising=False)
    data: dict[str, Any] = base_config(tmp_path)
    data["judge"] = {
        "backend": "together",
        "model": "m",
        "options": {"base_url": "http://127.0.0.1:9"},
    }
    config = load_config(write_config(tmp_path, data))
    checked = await preflight(config, store=None)
    assert len(checked.problems) == 1 and "TOGETHER_API_KEY" in checked.problems[0]
    assert checked.problems[0].startswith("judge.backend 'together'")
    with pytest.raises(ConfigurationError, match="TOGETHER_API_KEY"):
        await Pipeline(config).run()
    assert not config.run_dir.exists()


async def test_a_method_the_fine_tune_backend_lacks_stops_the_run_before_anything_is_sent(
    tmp_path: Path, scripted_and_builtins, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOGETHER_API_KEY", "test-not-a-key")
    data: dict[str, Any] = base_config(tmp_path)
    data["finetune"] = {
        "backend": "together",
        "method": "grpo",
        "init_from": "previous",
        "options": {"base_url": "http://127.0.0.1:9"},
    }
    config = load_config(write_config(tmp_path, data))
    checked = await preflight(config, store=None)
    assert checked.problems == [
        "finetune.method 'grpo': backend 'together' trains only dpo, sft; choose one of those, "
        "or a backend that trains it (`ste backends` lists each one's methods)"
    ]
    with pytest.raises(ConfigurationError, match="backend 'together' trains only dpo, sft"):
        await Pipeline(config).run()
    assert not config.run_dir.exists()
