"""The stages of the loop, one module each, and the plan: the order they run in.

Each module exports a `STAGE` (`ste_core.stages.base.Stage`): its name, scope, what it needs,
which judge it calls, its counts record and its `run` coroutine. `ste_core.pipeline` runs any
plan; `ste run --plan CONFIG` prints this one for a config. Adding a stage means one new module
and one line below.

    iteration 0:  load -> classify ([filter]) -> split -> eval_pairs -> evaluate (M_0)
                  -> benchmark (M_0, [[evaluation.benchmarks]])
    iteration i:  baseline -> worse ([data.recipe] instructions, mixed) -> solve (verifiable,
                  mixed) -> mix (mixed) -> judge (by M_{i-1}) -> select -> training_data
                  -> finetune (M_i) -> evaluate (M_i) -> benchmark (M_i)
                  (an iteration trained with GRPO has no judge or select: `Stage.at`)
"""

from typing import Any

from ste_core.stages import (
    baseline,
    benchmark,
    classify,
    eval_pairs,
    evaluate,
    finetune,
    judge,
    load,
    mix,
    select,
    solve,
    split,
    training_data,
    worse,
)
from ste_core.stages.base import Counts, Stage, Step

__all__ = ["STAGES", "Counts", "Stage", "Step", "stage_named"]

STAGES: tuple[Stage[Any], ...] = (
    load.STAGE,
    classify.STAGE,
    split.STAGE,
    eval_pairs.STAGE,
    baseline.STAGE,
    worse.STAGE,
    solve.STAGE,
    mix.STAGE,
    judge.STAGE,
    select.STAGE,
    training_data.STAGE,
    finetune.STAGE,
    evaluate.STAGE,
    benchmark.STAGE,
)


def stage_named(name: str, plan: tuple[Stage[Any], ...] = STAGES) -> Stage[Any]:
    """The stage called `name` in `plan`; a ConfigurationError naming the stages otherwise."""
    from ste_core.errors import ConfigurationError

    for stage in plan:
        if stage.name == name:
            return stage
    raise ConfigurationError(f"unknown stage {name!r}; stages: {', '.join(s.name for s in plan)}")
