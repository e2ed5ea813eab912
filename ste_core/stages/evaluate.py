"""Stage `evaluate` (step 9): score judge M_j on the frozen eval pairs.

Runs once per judge: M_0 (the seed judge, at iteration 0) and each fine-tuned M_j (at iteration
j). Every judge sees the same pairs, so the scores are comparable; consecutive judges (and each
with the seed) are compared with a paired test on the same items, computed here once (with
run.seed) and stored: metrics.json, summary.md, the report and `ste view` all read that one. The
judge's `IterationMetrics` (score, paired tests, the iteration's funnel, per-stage usage,
fine-tune job) go to the run store and are exported to iter_j/metrics.json; the `benchmark`
stage adds its benchmark scores.

Items whose requests failed are errors, never scores (`ste_core.evaluation.headline`): a few
are left out of the accuracy with a warning; more than `evaluation.max_error_rate` of the items
fail the stage (EvaluationFailed) before any metrics are saved, so the step is not marked done
and the next run retries it.

Files: eval_pairs.jsonl -> iter_j/eval.jsonl, iter_j/metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ste_core.records import (
    EvalScore,
    FineTuneInfo,
    Funnel,
    IterationMetrics,
    ResponsePair,
)
from ste_core.run.context import RunContext
from ste_core.run.io import read_rows
from ste_core.run.serving import Judge
from ste_core.stages.base import Stage, Step
from ste_core.stages.judge import (
    JudgeCounts,
    JudgingSetup,
    judge_file,
    judging_work,
    read_judgements,
)

if TYPE_CHECKING:
    from ste_core.config import Config
    from ste_core.run.preflight import Planner, Source, Work

__all__ = ["STAGE", "EvaluateCounts", "evaluation_setup", "judge_and_score"]


class EvaluateCounts(JudgeCounts):
    """The judging tally on the eval pairs, and how many eval pairs there are."""

    eval_pairs: int = 0

    def funnel(self) -> Funnel:
        return Funnel()  # a judge's evaluation measures the funnel, it is not a step of it


def evaluation_setup(ctx: RunContext | Planner) -> JudgingSetup:
    """How every judge is asked when it is measured ([evaluation]: greedy by default)."""
    config: Config = ctx.config
    ev = config.evaluation
    return JudgingSetup(
        template=ctx.template(config.eval_template),
        params=ev.params.to_params(),
        samples=ev.samples_per_order,
        orders=ev.orders,
    )


async def evaluate(step: Step) -> EvaluateCounts:
    from ste_core.evaluation.paired import paired_tests

    ctx, j, by = step.ctx, step.iteration, step.judge
    rundir = ctx.rundir
    pairs = list(read_rows(rundir.eval_pairs_path, ResponsePair))
    tally, score = await judge_and_score(
        ctx,
        by,
        pairs,
        rundir.eval_pairs_path,
        rundir.iter_file(j, "eval.jsonl"),
        what=f"evaluation of judge {j}",
    )
    earlier = {i: m.eval for i, m in ctx.store.metrics().items()}
    paired = paired_tests(j, score, earlier, seed=ctx.config.run.seed)
    ctx.save_metrics(
        IterationMetrics(
            iteration=j,
            judge_model=by.model,
            eval=score,
            paired=paired,
            funnel=ctx.funnel(j),
            stages=ctx.store.stage_usage(j),
            finetune=_finetune_info(ctx, j),
        )
    )
    return EvaluateCounts(**tally.model_dump(), eval_pairs=len(pairs))


async def judge_and_score(
    ctx: RunContext,
    by: Judge,
    pairs: list[ResponsePair],
    pairs_path: Path,
    out: Path,
    *,
    what: str,
    phase: str | None = None,
) -> tuple[JudgeCounts, EvalScore]:
    """Judge the pairs of `pairs_path` into `out`, then score those judgements against `pairs`
    (the same pairs, already read: scoring needs them all at once); `phase` as in
    `judge_file`. Raises EvaluationFailed when too many items could not be scored."""
    from ste_core.evaluation import score_pairs
    from ste_core.evaluation.headline import require_headline

    setup = evaluation_setup(ctx)
    tally = await judge_file(
        ctx, by, pairs_path, out, setup, what=what, stage="evaluate", phase=phase
    )
    ev = ctx.config.evaluation
    score = score_pairs(
        pairs,
        read_judgements(out),
        mode=ev.orders,
        majority=ev.majority_vote,
        seed=ctx.config.run.seed,
        max_error_rate=ev.max_error_rate,
    )
    what = f"{what} ({by.model})"
    warning = require_headline(score, what=what, judgements=out)
    if warning:
        ctx.reporter.warning(warning)
    return tally, score


def eval_pairs_source(plan: Planner) -> Source[ResponsePair] | None:
    """The frozen eval pairs once made; else the reused ones, or one per eval instruction."""
    from ste_core.run.preflight import Source

    made = plan.rows(plan.rundir.eval_pairs_path, ResponsePair)
    if made is not None:
        return made
    if plan.config.evaluation.pairs_path:
        reused = plan.reused_eval_pairs()
        return Source(lambda: iter(reused))
    instructions = plan.instructions("eval")
    return None if instructions is None else plan.projected_pairs(instructions)


def estimate(plan: Planner, j: int) -> Work:
    setup = evaluation_setup(plan)
    return judging_work(plan, f"evaluate:{j}", j, eval_pairs_source(plan), setup)


def _finetune_info(ctx: RunContext, j: int) -> FineTuneInfo | None:
    """The fine-tune job and model of iteration `j` (None for the seed judge)."""
    if j == 0:
        return None
    state = ctx.store.get_state(f"finetune/{j}") or {}
    ref = ctx.store.get_state(f"model/{j}") or {}
    return FineTuneInfo(
        job_id=state.get("job_id"),
        status=state.get("status"),
        model=ref.get("model"),
        endpoint=(ref.get("options") or {}).get("base_url"),
        cost_usd=state.get("cost_usd"),
        metrics=state.get("metrics") or {},
    )


STAGE = Stage(
    name="evaluate",
    scope="judge",
    run=evaluate,
    counts=EvaluateCounts,
    # M_j exists once iteration j's fine-tune is done (M_0, the seed judge, always does)
    needs=("eval_pairs", "finetune"),
    judge="current",
    summary="score the judge on the frozen eval pairs; paired tests with earlier judges",
    estimate=estimate,
)
