"""The eval_pairs stage (ste_core.stages.eval_pairs): generation failures that shrink the frozen
eval set are counted and reported, and below evaluation.min_eval_pairs the stage fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from ste_core.engine.store import RunStore
from ste_core.errors import PermanentProviderError, SteError
from ste_core.pipeline import Pipeline
from ste_core.records import ChatRequest, Instruction
from ste_core.run.io import read_rows
from ste_core.run.progress import Reporter
from tests.core.helpers import ScriptedInference, config_with


class Warnings(Reporter):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def warning(self, message: str) -> None:
        self.seen.append(message)


def _refuse_baselines_of(ids: set[str]):  # type: ignore[no-untyped-def]
    def refuse(request: ChatRequest) -> BaseException | None:
        inst = request.metadata.get("instruction")
        if isinstance(inst, Instruction) and inst.id in ids:
            return PermanentProviderError("bad request", provider="scripted", status=400)
        return None

    return refuse


async def _eval_ids(pipe: Pipeline) -> set[str]:
    await pipe.stage("load")
    await pipe.stage("split")
    return {i.id for i in read_rows(pipe.config.run_dir / "data" / "eval.jsonl", Instruction)}


async def test_failures_are_counted_and_reported(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    config = config_with(tmp_path, **{"evaluation.eval_size": 10})
    reporter = Warnings()
    pipe = Pipeline(config, reporter=reporter)
    eval_ids = await _eval_ids(pipe)
    scripted.refuse = _refuse_baselines_of(set(sorted(eval_ids)[:2]))
    counts = await pipe.stage("eval_pairs")
    assert counts["baseline_dropped_api_error"] == 2
    assert counts["failed"] == 10 - counts["pairs"] >= 2  # + the generator's parse failures
    warning = next(w for w in reporter.seen if w.startswith("eval_pairs:"))
    assert f"{counts['failed']} of 10 held-out items produced no pair" in warning
    assert "2 baseline api error" in warning
    assert f"the frozen eval set has {counts['pairs']} pairs" in warning
    assert str((config.run_dir / "data" / "eval_drops.jsonl").resolve()) in warning


async def test_too_small_an_eval_set_fails_the_stage(
    tmp_path: Path, scripted: type[ScriptedInference]
) -> None:
    config = config_with(tmp_path, **{"evaluation.eval_size": 10})
    assert config.evaluation.min_pairs == 5  # default: half of eval_size
    pipe = Pipeline(config)
    eval_ids = await _eval_ids(pipe)
    scripted.refuse = _refuse_baselines_of(set(sorted(eval_ids)[:6]))
    with pytest.raises(SteError, match=r"fewer than evaluation\.min_eval_pairs = 5") as caught:
        await pipe.stage("eval_pairs")
    assert "lower evaluation.min_eval_pairs" in str(caught.value)
    with RunStore.open_read_only(config.run_dir / "store.sqlite") as store:
        assert not store.stage_done(0, "eval_pairs")
    # a lower minimum accepts the same, smaller set (the answers so far come from the cache)
    lower = config.model_copy(
        update={"evaluation": config.evaluation.model_copy(update={"min_eval_pairs": 2})}
    )
    counts = await Pipeline(lower).stage("eval_pairs")
    assert counts["failed"] >= 6 and counts["pairs"] >= 2
