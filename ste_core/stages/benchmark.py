"""Stage `benchmark`: score judge M_j on every benchmark of `[evaluation] benchmarks`.

Runs once per judge, right after its evaluation and in the same serving session. A benchmark's
data is frozen at the first judge's run (copied into the run directory), so every judge of the
run is scored on the same items even if the user's file changes between sessions.

* labelled pairs (`benchmark = "rewardbench"` / `"pairs"`): judged as `[evaluation]` says and
  scored with `score_pairs` into `IterationMetrics.benchmarks`;
* published benchmarks (rewardbench2, judgebench, rmbench, ppe): judged once per order in both
  orders (or RewardBench 2's rankings / ratings) and scored by the benchmark's own rules into
  `IterationMetrics.benchmark_results`.

Files: the user's file -> bench_<name>.pairs.jsonl (pairs) or bench_<name>.rows.jsonl (the
official rows) once -> iter_j/bench_<name>.jsonl (the judge outputs `ste score` reads).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ste_core.config import Config
from ste_core.errors import ConfigurationError, DataFileError, EvaluationFailed
from ste_core.evaluation.benchmarks.base import as_list
from ste_core.records import BenchmarkResult, ChatRequest, EvalScore, ResponsePair
from ste_core.run.io import read_rows, write_jsonl
from ste_core.stages.base import Counts, Stage, Step, flat_counts
from ste_core.stages.evaluate import evaluation_setup, judge_and_score
from ste_core.stages.judge import JudgingSetup, judge_file, judging_work, read_judgements

if TYPE_CHECKING:
    from ste_core.config import BenchmarkFile
    from ste_core.evaluation.benchmarks import Loaded
    from ste_core.run.context import RunContext
    from ste_core.run.preflight import Planner, Work
    from ste_core.run.serving import Judge

PAIRS_BENCHMARKS = ("rewardbench", "pairs")

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
    results: dict[str, BenchmarkResult] = {}
    validation = None
    if _validation_file(ctx.config) is not None:
        pairs = _frozen_validation(ctx)
        tally, validation = await judge_and_score(
            ctx,
            step.judge,
            pairs,
            _validation_path(ctx),
            rundir.iter_file(j, "validation.jsonl"),
            what=f"validation pairs (evaluation.select_on) of judge {j}",
            phase="validation",
        )
        counts.pairs["validation"] = len(pairs)
        counts.judgements["validation"] = tally.judgements
        counts.failures["validation"] = tally.failures
    for bench in ctx.config.evaluation.benchmarks:
        if bench.benchmark not in PAIRS_BENCHMARKS:
            loaded = _frozen_benchmark(ctx, bench)
            if loaded.skipped:
                first = loaded.skipped[0]
                ctx.reporter.warning(
                    f"{bench.path}: {len(loaded.skipped)} bad row(s) of benchmark {bench.name} "
                    f"skipped (first: row {first.line}: {first.reason})"
                )
            judged, failed, results[bench.name] = await _published(
                ctx, step.judge, j, bench, loaded
            )
            counts.pairs[bench.name] = loaded.n_items
            counts.judgements[bench.name] = judged
            counts.failures[bench.name] = failed
            continue
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
    ctx.save_metrics(
        metrics.model_copy(
            update={"benchmarks": scores, "benchmark_results": results, "validation": validation}
        )
    )
    return counts


def _validation_file(config: Config) -> str | None:
    select_on = config.evaluation.select_on
    return None if select_on in (None, "eval") else select_on


def _validation_path(ctx: RunContext | Planner) -> Path:
    return ctx.rundir.root / "validation.pairs.jsonl"


def _frozen_validation(ctx: RunContext) -> list[ResponsePair]:
    """The validation pairs, frozen on first use without any pair whose instruction is also an
    eval instruction: a judge is never selected on the items it is then scored on."""
    frozen = _validation_path(ctx)
    if not frozen.exists():
        given = ctx.read_pairs_file(_validation_file(ctx.config) or "", "evaluation.select_on")
        held_out = {p.instruction for p in read_rows(ctx.rundir.eval_pairs_path, ResponsePair)}
        kept = [p for p in given if p.instruction not in held_out]
        if len(kept) < len(given):
            ctx.reporter.warning(
                f"evaluation.select_on: {len(given) - len(kept)} validation pair(s) share an "
                "instruction with the eval pairs and were left out (selection must not use the "
                "items the selected judge is scored on)"
            )
        if not kept:
            raise ConfigurationError(
                "evaluation.select_on: every validation pair is also an eval instruction; give "
                'validation pairs disjoint from the eval pairs, or select_on = "eval"'
            )
        write_jsonl(frozen, kept)
    return list(read_rows(frozen, ResponsePair))


def _jsonable(value: Any) -> Any:
    """A row as JSON can hold it (Parquet list columns arrive as numpy arrays)."""
    value = as_list(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    item = getattr(value, "item", None)  # a numpy scalar
    return item() if callable(item) else value


def _frozen_benchmark(ctx: RunContext | Planner, bench: BenchmarkFile) -> Loaded:
    """The benchmark's official rows, copied into the run directory on first use."""
    from ste_core.evaluation.benchmarks import get_benchmark, read_official_rows

    frozen = ctx.rundir.root / f"bench_{bench.name}.rows.jsonl"
    key = f"evaluation.benchmarks[{bench.name}].path"
    try:
        if not frozen.exists():
            src = read_official_rows(bench.path, on_error="skip")
            write_jsonl(frozen, (_jsonable(row) for row in src.frozen()))
        return get_benchmark(bench.benchmark).load(frozen, on_error="skip").limit(bench.limit)
    except DataFileError as exc:
        raise ConfigurationError(f"{key}: {exc}") from exc


def _pairwise_setup(ctx: RunContext | Planner) -> JudgingSetup:
    """Published pairwise benchmarks: one greedy judgement per order, both orders."""
    ev = ctx.config.evaluation
    return JudgingSetup(
        template=ctx.template(ctx.config.eval_template),
        params=ev.params.to_params(),
        samples=1,
        orders="both",
    )


async def _published(
    ctx: RunContext, by: Judge, j: int, bench: BenchmarkFile, loaded: Loaded
) -> tuple[int, int, BenchmarkResult]:
    """Judge a published benchmark with M_j and score it: (outputs, failed requests, result)."""
    from ste_core.evaluation.benchmarks.judging import judge_benchmark, request_count

    out = ctx.rundir.iter_file(j, f"bench_{bench.name}.jsonl")
    what = f"benchmark {bench.name} of judge {j}"
    seed = ctx.config.run.seed
    outputs: list[Any]
    if loaded.benchmark.to_pairs is not None:
        pairs_path = ctx.rundir.root / f"bench_{bench.name}.pairs.jsonl"
        if not pairs_path.exists():
            write_jsonl(pairs_path, loaded.pairs)
        tally = await judge_file(
            ctx, by, pairs_path, out, _pairwise_setup(ctx), what=what, stage="evaluate",
            phase=bench.name,
        )  # fmt: skip
        outputs = list(read_judgements(out))
        failed = tally.failures
    else:
        ranking = ctx.template(bench.ranking_template)
        rating = ctx.template(bench.rating_template)
        params = ctx.config.evaluation.params.to_params()
        ctx.check_budget(by.scheduler, _rb2_requests(loaded, by.model, bench, ctx), what)
        ctx.reporter.phase(bench.name, request_count(loaded, bench.mode, seed))
        outputs = await judge_benchmark(
            loaded,
            by.scheduler,
            model=by.model,
            template=ctx.template(ctx.config.eval_template),
            ranking_template=ranking,
            rating_template=rating,
            params=params,
            mode=bench.mode,
            seed=seed,
            outputs_path=out,
        )
        failed = sum(o.error is not None for o in outputs)
    result = loaded.benchmark.score(
        loaded,
        outputs,
        mode=bench.mode,
        pair_rule=bench.pair_rule,
        max_error_rate=ctx.config.evaluation.max_error_rate,
        seed=seed,
    )
    if result.refused:
        # As for the eval pairs: a judge whose requests failed gets no figure, and the stage
        # is retried by the next run rather than marked done.
        raise EvaluationFailed(
            f"{what}: {result.refused} The outputs, failed requests included, are in "
            f"{out.absolute()}. Fix the cause and run the same command again: this stage was "
            "not marked done, and the answers already received come from the cache."
        )
    if result.error_count:
        ctx.reporter.warning(
            f"{what}: {result.error_count} of {result.n_items} items not scored (failed "
            f"requests), left out of its figures; see {out.absolute()}"
        )
    return len(outputs) - failed, failed, result


def _rb2_requests(
    loaded: Loaded, model: str, bench: BenchmarkFile, ctx: RunContext | Planner
) -> Iterator[ChatRequest]:
    """Every request RewardBench 2 sends judge `model` (for the budget check and preflight)."""
    from ste_core.evaluation.benchmarks import rewardbench2
    from ste_core.evaluation.benchmarks.judging import rb2_request

    ranking, rating = ctx.template(bench.ranking_template), ctx.template(bench.rating_template)
    params, seed = ctx.config.evaluation.params.to_params(), ctx.config.run.seed
    for item in loaded.data:
        for req in rewardbench2.requests_for(item, bench.mode, seed):
            yield rb2_request(item, req, model=model, ranking=ranking, rating=rating, params=params)


def estimate(plan: Planner, j: int) -> Work:
    from ste_core.evaluation.pairs_io import read_pairs
    from ste_core.run.preflight import Source, Work

    setup = evaluation_setup(plan)
    total = Work()
    validation = _validation_file(plan.config)
    if validation is not None:
        frozen = plan.rows(_validation_path(plan), ResponsePair)
        if frozen is None:
            try:
                given = read_pairs(validation, on_error="skip").pairs
            except DataFileError as exc:
                plan.problems.append(f"evaluation.select_on: {exc}")
                given = []
            frozen = Source(lambda given=given: iter(given))  # type: ignore[misc]
        total = total + judging_work(plan, f"validation:{j}", j, frozen, setup)
    for bench in plan.config.evaluation.benchmarks:
        if bench.benchmark not in PAIRS_BENCHMARKS:
            total = total + _estimate_published(plan, j, bench)
            continue
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


def _estimate_published(plan: Planner, j: int, bench: BenchmarkFile) -> Work:
    from ste_core.run.preflight import Source

    try:
        loaded = _frozen_benchmark(plan, bench) if _is_frozen(plan, bench) else _load_given(bench)
    except (ConfigurationError, DataFileError) as exc:
        plan.problems.append(str(exc))
        return Work()
    key = f"benchmark:{bench.name}:{j}"
    if loaded.benchmark.to_pairs is not None:
        given = loaded.pairs
        source = Source(lambda: iter(given))
        return judging_work(plan, key, j, source, _pairwise_setup(plan))
    model = plan.judge_model(j)
    return plan.requests(key, j, lambda: _rb2_requests(loaded, model, bench, plan))


def _is_frozen(plan: Planner, bench: BenchmarkFile) -> bool:
    return (plan.rundir.root / f"bench_{bench.name}.rows.jsonl").exists()


def _load_given(bench: BenchmarkFile) -> Loaded:
    from ste_core.evaluation.benchmarks import get_benchmark

    try:
        return get_benchmark(bench.benchmark).load(bench.path, on_error="skip").limit(bench.limit)
    except DataFileError as exc:
        raise ConfigurationError(f"evaluation.benchmarks[{bench.name}].path: {exc}") from exc


def _has_benchmarks(config: Config) -> bool:
    return bool(config.evaluation.benchmarks) or _validation_file(config) is not None


STAGE = Stage(
    name="benchmark",
    scope="judge",
    run=benchmark,
    counts=BenchmarkCounts,
    needs=("evaluate",),
    judge="current",
    enabled=_has_benchmarks,
    enabled_when="[[evaluation.benchmarks]] lists a benchmark, or evaluation.select_on a file",
    summary="score the judge on each benchmark of [evaluation] (RewardBench 1/2, JudgeBench, "
    "RM-Bench, PPE, labelled pairs)",
    estimate=estimate,
)
