"""Stage `eval_pairs`: the frozen held-out pairs every judge is scored on.

Made once, from data/eval.jsonl, by the same two passes as training pairs (a baseline, then a
worse response); or copied from a user's file (`evaluation.pairs_path`, e.g. another run's
eval_pairs.jsonl). Every judge of the run is then scored on exactly these pairs, so scores of
different iterations are comparable (the seed implementation regenerated them per model).

An eval instruction whose generation failed (a request error, an unparsable worse response)
has no pair: the eval set shrinks. That is counted (`failed`), warned about, and below
`evaluation.min_eval_pairs` (default half of eval_size) the stage fails, since a judge's
accuracy on a handful of pairs is noise.

Files: data/eval.jsonl -> data/eval_baselines.jsonl (+ eval_drops.jsonl) -> eval_pairs.jsonl
(+ data/eval_worse_drops.jsonl).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from ste_core.errors import SteError
from ste_core.records import Baseline, Funnel
from ste_core.run.io import write_jsonl
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.baseline import BaselineCounts, baselines_work, write_baselines
from ste_core.stages.worse import WorseCounts, pairs_work, write_pairs

if TYPE_CHECKING:
    from ste_core.run.context import RunContext
    from ste_core.run.preflight import Planner, Work

__all__ = ["STAGE", "EvalPairsCounts"]


class EvalPairsCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "baseline": "baselines",
        "worse": "worse responses",
        "pairs": "eval pairs",
        "failed": "eval instructions without a pair",
        "reused": "file reused (evaluation.pairs_path)",
    }

    #: the two generation passes (absent when the pairs were reused from a file)
    baseline: BaselineCounts | None = None
    worse: WorseCounts | None = None
    pairs: int = 0
    #: eval instructions whose generation failed (baseline or worse response): no pair
    failed: int = 0
    reused: int = 0

    def funnel(self) -> Funnel:
        drops = {}
        for name, part in (("baseline", self.baseline), ("worse", self.worse)):
            if part is not None:
                drops.update({f"eval_{name}_{r}": n for r, n in part.dropped.items() if n})
        return Funnel(pairs=self.pairs, drops=drops)


async def eval_pairs(step: Step) -> EvalPairsCounts:
    ctx = step.ctx
    cfg = ctx.config
    rundir = ctx.rundir
    if cfg.evaluation.pairs_path:
        pairs = ctx.read_pairs_file(cfg.evaluation.pairs_path, "evaluation.pairs_path")
        write_jsonl(rundir.eval_pairs_path, pairs)
        return EvalPairsCounts(pairs=len(pairs), reused=1)
    data = rundir.data_dir
    baselines = await write_baselines(
        ctx,
        rundir.data("eval"),
        data / "eval_baselines.jsonl",
        data / "eval_drops.jsonl",
        what="eval baselines",
        phase="baselines",
    )
    worse = await write_pairs(
        ctx,
        data / "eval_baselines.jsonl",
        rundir.eval_pairs_path,
        data / "eval_worse_drops.jsonl",
        what="eval worse",
        phase="worse responses",
    )
    failed = baselines.instructions - worse.pairs
    if failed:
        check_eval_set(ctx, baselines, worse)
    return EvalPairsCounts(baseline=baselines, worse=worse, pairs=worse.pairs, failed=failed)


def check_eval_set(ctx: RunContext, baselines: BaselineCounts, worse: WorseCounts) -> None:
    """Warn that generation failures shrank the eval set; fail below evaluation.min_eval_pairs."""
    ev = ctx.config.evaluation
    data = ctx.rundir.data_dir.resolve()
    reasons = {**_prefixed("baseline", baselines), **_prefixed("worse", worse)}
    why = ", ".join(f"{n} {r}" for r, n in reasons.items() if n) or "unknown"
    n, asked = worse.pairs, baselines.instructions
    what = (
        f"eval_pairs: {asked - n} of {asked} eval instructions produced no pair ({why}); the "
        f"frozen eval set has {n} pairs. The failures are in {data / 'eval_drops.jsonl'} and "
        f"{data / 'eval_worse_drops.jsonl'}"
    )
    if n < ev.min_pairs:
        raise SteError(
            f"{what}, fewer than evaluation.min_eval_pairs = {ev.min_pairs}: every judge would "
            "be scored on too few pairs to tell judges apart. Fix the cause of the failures "
            "(a request error, or a generator whose worse responses do not parse: try a "
            "stronger generator) and run the same command again (this stage was not marked "
            "done; answers already received come from the cache), or lower "
            "evaluation.min_eval_pairs."
        )
    ctx.reporter.warning(what)


def _prefixed(step: str, counts: BaselineCounts | WorseCounts) -> dict[str, int]:
    return {f"{step} {reason.replace('_', ' ')}": n for reason, n in counts.dropped.items()}


def estimate(plan: Planner, iteration: int) -> Work:
    from ste_core.run.preflight import Work

    if plan.config.evaluation.pairs_path:
        return Work()
    instructions = plan.instructions("eval")
    work = baselines_work(plan, "baseline:eval", instructions)
    baselines = plan.rows(plan.rundir.data_dir / "eval_baselines.jsonl", Baseline)
    if baselines is None and instructions is not None:
        baselines = plan.projected_baselines(instructions)
    return work + pairs_work(plan, "worse:eval", baselines)


STAGE = Stage(
    name="eval_pairs",
    scope="run",
    run=eval_pairs,
    counts=EvalPairsCounts,
    needs=("split",),
    summary="the frozen held-out pairs every judge is scored on (or reused from a file)",
    estimate=estimate,
)
