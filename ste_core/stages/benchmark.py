"""Stage `benchmark`: score judge M_j on every labelled benchmark of `[evaluation] benchmarks`.

Runs once per judge, right after its evaluation and in the same serving session. A benchmark's
pairs are frozen at the first judge's run (copied into the run directory), so every judge of the
run is scored on the same pairs even if the user's file changes between sessions. The scores join
the judge's metrics (`IterationMetrics.benchmarks`).

Files: the user's file -> bench_<name>.pairs.jsonl (once) -> iter_j/bench_<name>.jsonl.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from ste_core.config import Config
from ste_core.errors import DataFileError
from ste_core.records import EvalScore, ResponsePair
from ste_core.run.io import read_rows, write_jsonl
from ste_core.stages.base import Counts, Stage, Step, flat_counts
from ste_core.stages.evaluate import evaluation_setup, judge_and_score
from ste_core.stages.judge import judging_work

if TYPE_CHECKING:
    from ste_core.run.preflight import Planner, Work

__all__ = ["STAGE", "BenchmarkCounts"]


class BenchmarkCounts(Counts):
    """Per benchmark: its pairs, and the judgements and failed samples of this judge on them."""

    labels: ClassVar[Mapping[str, str]] = {"failures": "failed samples"}

    pairs: dict[str, int] = flat_counts("pairs_")
    judgements: dict[str, int] = flat_counts("judgements_")
    failures: dict[str, int] = flat_counts("failures_")


async def benchmark(step: Step) -> BenchmarkCounts:
    ctx, j = step.ctx, step.iteration
    rundir = ctx.rundir
    counts = BenchmarkCounts()
    scores: dict[str, EvalScore] = {}
    for bench in ctx.config.evaluation.benchmarks:
        frozen = rundir.root / f"bench_{bench.name}.pairs.jsonl"
        if not frozen.exists():
            key = f"evaluation.benchmarks[{bench.name}].path"
            write_jsonl(frozen, ctx.read_pairs_file(bench.path, key)[: bench.limit])
        pairs = list(read_rows(frozen, ResponsePair))
        tally, scores[bench.name] = await judge_and_score(
            ctx,
            step.judge,
            pairs,
            frozen,
            rundir.iter_file(j, f"bench_{bench.name}.jsonl"),
            what=f"benchmark {bench.name} of judge {j}",
            phase=bench.name,
        )
        counts.pairs[bench.name] = len(pairs)
        counts.judgements[bench.name] = tally.judgements
        counts.failures[bench.name] = tally.failures
    metrics = ctx.store.metrics()[j]
    ctx.save_metrics(metrics.model_copy(update={"benchmarks": scores}))
    return counts


def estimate(plan: Planner, j: int) -> Work:
    from ste_core.evaluation.pairs_io import read_pairs
    from ste_core.run.preflight import Source, Work

    setup = evaluation_setup(plan)
    total = Work()
    for bench in plan.config.evaluation.benchmarks:
        pairs = plan.rows(plan.rundir.root / f"bench_{bench.name}.pairs.jsonl", ResponsePair)
        if pairs is None:
            try:
                given = read_pairs(bench.path, on_error="skip").pairs[: bench.limit]
            except DataFileError as exc:
                plan.problems.append(f"evaluation.benchmarks[{bench.name}].path: {exc}")
                continue
            pairs = Source(lambda given=given: iter(given))  # type: ignore[misc]
        total = total + judging_work(plan, f"benchmark:{bench.name}:{j}", j, pairs, setup)
    return total


def _has_benchmarks(config: Config) -> bool:
    return bool(config.evaluation.benchmarks)


STAGE = Stage(
    name="benchmark",
    scope="judge",
    run=benchmark,
    counts=BenchmarkCounts,
    needs=("evaluate",),
    judge="current",
    enabled=_has_benchmarks,
    enabled_when="[[evaluation.benchmarks]] lists a benchmark",
    summary="score the judge on each labelled benchmark of [evaluation] (RewardBench, ...)",
    estimate=estimate,
)
