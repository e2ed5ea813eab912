"""Stage `eval_pairs`: the frozen held-out pairs every judge is scored on.

Made once, from data/eval.jsonl, by the same two passes as training pairs (a baseline, then a
worse response); or copied from a user's file (`evaluation.pairs_path`, e.g. another run's
eval_pairs.jsonl). Every judge of the run is then scored on exactly these pairs, so scores of
different iterations are comparable (the seed implementation regenerated them per model).

The eval pairs follow `data.recipe`: held-out instructions get a baseline and a worse response,
held-out problems (verifiable, mixed) a right and a wrong solution (stage `solve`'s pass). With the
mixed recipe both kinds are kept, all of them: `data.verifiable_ratio` shapes the training pairs,
while the eval set holds the held-out items as the split drew them from the pool.

An eval instruction whose generation failed (a request error, an unparsable worse response)
has no pair: the eval set shrinks. That is counted (`failed`), warned about, and below
`evaluation.min_eval_pairs` (default half of eval_size) the stage fails, since a judge's
accuracy on a handful of pairs is noise.

Files: data/eval.jsonl -> data/eval_baselines.jsonl (+ eval_drops.jsonl) -> eval_pairs.jsonl
(+ data/eval_worse_drops.jsonl); problems -> eval_pairs.jsonl (+ data/eval_solve_drops.jsonl).
Mixed: data/eval_instruction_pairs.jsonl + data/eval_verifiable_pairs.jsonl -> eval_pairs.jsonl.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ste_core.errors import SteError
from ste_core.records import Baseline, Funnel, ResponsePair
from ste_core.run.io import read_rows, write_jsonl
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.baseline import BaselineCounts, baselines_work, write_baselines
from ste_core.stages.solve import SolveCounts, solutions_work, write_solution_pairs
from ste_core.stages.worse import WorseCounts, pairs_work, write_pairs

if TYPE_CHECKING:
    from ste_core.run.context import RunContext
    from ste_core.run.preflight import Planner, Work

__all__ = ["STAGE", "EvalPairsCounts"]


class EvalPairsCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "baseline": "baselines",
        "worse": "worse responses",
        "solve": "solutions",
        "pairs": "eval pairs",
        "failed": "held-out items without a pair",
        "reused": "file reused (evaluation.pairs_path)",
    }

    #: the generation passes (absent when the pairs were reused from a file, or when the recipe
    #: makes no such pairs)
    baseline: BaselineCounts | None = None
    worse: WorseCounts | None = None
    solve: SolveCounts | None = None
    pairs: int = 0
    #: eval instructions whose generation failed (baseline or worse response): no pair
    failed: int = 0
    reused: int = 0

    def funnel(self) -> Funnel:
        drops = {}
        parts = (("baseline", self.baseline), ("worse", self.worse), ("solve", self.solve))
        for name, part in parts:
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
    mixed = cfg.data.recipe == "mixed"
    outs = {
        "instructions": data / "eval_instruction_pairs.jsonl" if mixed else rundir.eval_pairs_path,
        "verifiable": data / "eval_verifiable_pairs.jsonl" if mixed else rundir.eval_pairs_path,
    }
    counts = EvalPairsCounts()
    if cfg.data.uses_instructions:
        counts.baseline = await write_baselines(
            ctx,
            rundir.data("eval"),
            data / "eval_baselines.jsonl",
            data / "eval_drops.jsonl",
            what="eval baselines",
            phase="baselines",
        )
        counts.worse = await write_pairs(
            ctx,
            data / "eval_baselines.jsonl",
            outs["instructions"],
            data / "eval_worse_drops.jsonl",
            what="eval worse",
            phase="worse responses",
        )
        counts.pairs += counts.worse.pairs
        counts.failed += counts.baseline.instructions - counts.worse.pairs
    if cfg.data.uses_problems:
        counts.solve = await write_solution_pairs(
            ctx,
            rundir.data("eval"),
            outs["verifiable"],
            data / "eval_solve_drops.jsonl",
            what="eval solutions",
            phase="solutions",
        )
        counts.pairs += counts.solve.pairs
        counts.failed += counts.solve.problems - counts.solve.pairs
    if mixed:
        write_jsonl(rundir.eval_pairs_path, _both(outs["instructions"], outs["verifiable"]))
    if counts.failed or counts.pairs == 0:
        check_eval_set(ctx, counts)
    return counts


def _both(first: Path, second: Path) -> chain[ResponsePair]:
    return chain(read_rows(first, ResponsePair), read_rows(second, ResponsePair))


def check_eval_set(ctx: RunContext, counts: EvalPairsCounts) -> None:
    """Warn that generation failures (or problems without a right and a wrong solution) shrank
    the eval set; fail below evaluation.min_eval_pairs."""
    ev = ctx.config.evaluation
    data = ctx.rundir.data_dir.resolve()
    steps: list[tuple[str, BaselineCounts | WorseCounts | SolveCounts | None, str]] = [
        ("baseline", counts.baseline, "eval_drops.jsonl"),
        ("worse", counts.worse, "eval_worse_drops.jsonl"),
        ("solve", counts.solve, "eval_solve_drops.jsonl"),
    ]
    reasons = {
        f"{step} {reason.replace('_', ' ')}": n
        for step, c, _ in steps
        if c is not None
        for reason, n in c.dropped.items()
    }
    why = ", ".join(f"{n} {r}" for r, n in reasons.items() if n) or "unknown"
    files = " and ".join(str(data / name) for _, c, name in steps if c is not None)
    n = counts.pairs
    asked = n + counts.failed
    what = (
        f"eval_pairs: {counts.failed} of {asked} held-out items produced no pair ({why}); the "
        f"frozen eval set has {n} pairs. The failures are in {files}"
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


def estimate(plan: Planner, iteration: int) -> Work:
    from ste_core.run.preflight import Work

    if plan.config.evaluation.pairs_path:
        return Work()
    instructions = plan.instructions("eval")
    work = Work()
    if plan.config.data.uses_problems:
        work = solutions_work(plan, "solve:eval", instructions)
    if not plan.config.data.uses_instructions:
        return work
    work += baselines_work(plan, "baseline:eval", instructions)
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
