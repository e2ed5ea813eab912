"""The plan and the generic runner (ste_core.pipeline): the schedule, prerequisites, shared judge
sessions, a stage added to the plan from outside. (`ste run --plan`: tests/core/cli/test_run_cmd.py)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ste_core import STAGES, Counts, Funnel, Pipeline, Stage, Step
from ste_core.errors import SteError
from ste_core.pipeline import prerequisites, schedule
from ste_core.records import ResponsePair
from ste_core.run.io import jsonl_writer, read_rows
from ste_core.stages import stage_named
from tests.core.helpers import ScriptedFineTune, config_with


def test_the_schedule_puts_each_judges_steps_side_by_side(tmp_path: Path, scripted) -> None:
    steps = schedule(config_with(tmp_path), 2)
    assert [f"{s.stage.name}@{s.iteration}" for s in steps] == [
        "load@0",
        "split@0",
        "eval_pairs@0",
        "baseline@1",
        "worse@1",
        # M_0's evaluation waits for the next step that calls M_0: one session for both
        "evaluate@0",
        "judge@1",
        "select@1",
        "training_data@1",
        "finetune@1",
        "baseline@2",
        "worse@2",
        "evaluate@1",
        "judge@2",
        "select@2",
        "training_data@2",
        "finetune@2",
        "evaluate@2",
    ]
    assert [s.judge for s in steps if s.judge is not None] == [0, 0, 1, 1, 2]


def test_a_disabled_stage_is_not_scheduled_and_not_a_prerequisite(tmp_path: Path, scripted) -> None:
    off = config_with(tmp_path / "off")
    on = config_with(tmp_path / "on", **{"filter.enabled": True})
    split, evaluate = stage_named("split"), stage_named("evaluate")
    assert "classify" not in [s.stage.name for s in schedule(off, 1)]
    assert [s.stage.name for s in schedule(on, 1)][:3] == ["load", "classify", "split"]
    assert prerequisites(split, 0, off) == [("load", 0)]
    assert prerequisites(split, 0, on) == [("load", 0), ("classify", 0)]
    # M_0 exists without a fine-tune; M_2 needs iteration 2's
    assert prerequisites(evaluate, 0, off) == [("eval_pairs", 0)]
    assert prerequisites(evaluate, 2, off) == [("eval_pairs", 0), ("finetune", 2)]


def test_grpo_iterations_skip_the_judge_and_select(tmp_path: Path, scripted) -> None:
    grpo = config_with(
        tmp_path / "grpo", **{"finetune.method": "grpo", "finetune.init_from": "previous"}
    )
    steps = [f"{s.stage.name}@{s.iteration}" for s in schedule(grpo, 2)]
    assert steps[3:] == [
        "evaluate@0",  # no later step calls M_0: nothing to share a session with
        "baseline@1",
        "worse@1",
        "training_data@1",
        "finetune@1",
        "evaluate@1",
        "baseline@2",
        "worse@2",
        "training_data@2",
        "finetune@2",
        "evaluate@2",
    ]
    # With no select, the pairs are what the GRPO training data needs.
    assert prerequisites(stage_named("training_data"), 2, grpo) == [("worse", 2)]
    # SFT warm-up: iteration 1 judges and selects (and trains SFT), iteration 2 is GRPO.
    warm = config_with(
        tmp_path / "warm",
        **{"finetune.method": "grpo", "finetune.warmup": "sft", "finetune.init_from": "previous"},
    )
    steps = [f"{s.stage.name}@{s.iteration}" for s in schedule(warm, 2)]
    assert {"judge@1", "select@1"} <= set(steps)
    assert "judge@2" not in steps and "select@2" not in steps
    assert prerequisites(stage_named("training_data"), 1, warm) == [("select", 1), ("worse", 1)]
    assert [warm.finetune_spec(i, None).method.value for i in (1, 2)] == ["sft", "grpo"]
    assert warm.finetune_spec(1, None).grpo is None
    assert warm.finetune_spec(2, None).grpo == warm.finetune.grpo


async def test_a_stage_asked_at_an_iteration_it_skips_is_refused(tmp_path: Path, scripted) -> None:
    from ste_core.errors import ConfigurationError

    changes = {"finetune.method": "grpo", "finetune.init_from": "previous"}
    pipeline = Pipeline(config_with(tmp_path, **changes))
    with pytest.raises(ConfigurationError, match=r"'judge' does not run at iteration 2.*grpo"):
        await pipeline.stage("judge", 2)


class LengthCounts(Counts):
    pairs: int = 0
    longer_rejected: int = 0

    def funnel(self) -> Funnel:
        return Funnel(drops={"rejected_longer_than_chosen": self.longer_rejected})


async def _lengths(step: Step) -> LengthCounts:
    """A stage a user adds: how often the known-worse response is the longer one."""
    rundir, i = step.ctx.rundir, step.iteration
    counts = LengthCounts()
    with jsonl_writer(rundir.iter_file(i, "lengths.jsonl")) as w:
        for pair in read_rows(rundir.iter_file(i, "pairs.jsonl"), ResponsePair):
            longer = len(pair.rejected) > len(pair.chosen)
            w.write({"pair_id": pair.id, "rejected_longer": longer})
            counts.pairs += 1
            counts.longer_rejected += longer
    return counts


LENGTHS = Stage(
    name="lengths",
    scope="iteration",
    run=_lengths,
    counts=LengthCounts,
    needs=("worse",),
    summary="how often the worse response is the longer one",
)


async def test_a_stage_added_to_the_plan_runs_in_every_iteration(tmp_path: Path, scripted) -> None:
    # The whole addition: the module above, and this one line of plan.
    plan = (*STAGES[:6], LENGTHS, *STAGES[6:])
    pipe = Pipeline(config_with(tmp_path), plan=plan)
    result = await pipe.run()
    assert result.status == "succeeded"
    for i in (1, 2):
        counts = pipe.funnel(i)["lengths"]
        assert counts["pairs"] == len(list(pipe.pairs(i)))
        rows = list(read_rows(result.run_dir / f"iter_{i}" / "lengths.jsonl"))
        assert counts["longer_rejected"] == sum(r["rejected_longer"] for r in rows)
    # Its counts feed the iteration's funnel, next to the built-in stages'.
    funnel = result.metrics[1].funnel
    assert (
        funnel.drops.get("rejected_longer_than_chosen", 0)
        == pipe.funnel(1)["lengths"]["longer_rejected"]
    )
    assert funnel.judged == pipe.funnel(1)["judge"]["judgements"]
    # One serving session per fine-tuned judge, as without the extra stage.
    assert ScriptedFineTune.served == [result.models[1].model, result.models[2].model]


async def test_a_step_whose_prerequisites_are_missing_is_refused(tmp_path: Path, scripted) -> None:
    pipe = Pipeline(config_with(tmp_path))
    with pytest.raises(SteError, match=r"needs stage 'worse' \(iteration 1\) first"):
        await pipe.stage("judge", 1)
    await pipe.aclose()
