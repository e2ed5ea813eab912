"""The evaluation step: score judge M_j on the frozen eval pairs (and benchmarks).

Writes iter_j/eval.jsonl, iter_j/bench_<name>.jsonl and iter_j/metrics.json: the scores, the
paired tests against the previous and the seed judge, the iteration's funnel, per-stage usage
and fine-tune job. Every judge sees the same pairs, so the scores are comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ste_core.judges import Judge
from ste_core.records import ResponsePair
from ste_core.run_metrics import finetune_info, funnel, read_metrics_raw, stage_usage
from ste_core.rundir import jsonl_writer, read_jsonl, write_json
from ste_core.runtime import RunContext
from ste_core.steps.common import read_external_pairs
from ste_core.steps.judging import JudgingSetup, judge_file, read_judgements

if TYPE_CHECKING:
    from ste_core.evaluation import EvalScore

__all__ = ["evaluate"]


async def evaluate(ctx: RunContext, j: int, by: Judge) -> dict[str, int]:
    """Stage `evaluate` of iteration j: `by` (M_j) on the eval pairs and every benchmark."""
    from ste_core.evaluation import EvalScore, paired_comparison

    cfg = ctx.config
    ev = cfg.evaluation
    rundir = ctx.rundir
    setup = JudgingSetup(
        template=ctx.template(cfg.eval_template),
        params=ev.params.to_params(),
        samples=ev.samples_per_order,
        orders=ev.orders,
    )
    pairs = list(read_jsonl(rundir.eval_pairs_path, ResponsePair))
    counts, score = await _judge_and_score(
        ctx,
        by,
        pairs,
        rundir.eval_pairs_path,
        rundir.iter_file(j, "eval.jsonl"),
        setup,
        what=f"evaluation of judge {j}",
    )
    benchmarks: dict[str, Any] = {}
    for bench in ev.benchmarks:
        # Frozen at the first evaluation, like the eval pairs: every judge of the run is scored
        # on the same benchmark pairs even if the user's file changes between sessions.
        bpath = rundir.root / f"bench_{bench.name}.pairs.jsonl"
        if not bpath.exists():
            key = f"evaluation.benchmarks[{bench.name}].path"
            with jsonl_writer(bpath) as w:
                for p in read_external_pairs(ctx, bench.path, key)[: bench.limit]:
                    w.write(p)
        bpairs = list(read_jsonl(bpath, ResponsePair))
        bcounts, benchmarks[bench.name] = await _judge_and_score(
            ctx,
            by,
            bpairs,
            bpath,
            rundir.iter_file(j, f"bench_{bench.name}.jsonl"),
            setup,
            what=f"benchmark {bench.name} of judge {j}",
        )
        counts[f"bench_{bench.name}_judgements"] = bcounts["judgements"]
    paired: dict[str, Any] = {}
    earlier = read_metrics_raw(rundir.root)
    for label, other in (("vs_previous", j - 1), ("vs_seed", 0)):
        # At j=1 the previous judge is the seed: one comparison, not the same one twice.
        if other < 0 or other == j or (label == "vs_seed" and other == j - 1):
            continue
        prev = earlier.get(other)
        if prev and prev.get("eval"):
            test = paired_comparison(
                EvalScore.model_validate(prev["eval"]), score, seed=cfg.run.seed
            )
            paired[label] = {"against_iteration": other, **test.model_dump(mode="json")}
    metrics = {
        "iteration": j,
        "judge_model": by.model,
        "eval": score.model_dump(mode="json"),
        "benchmarks": {k: v.model_dump(mode="json") for k, v in benchmarks.items()},
        "paired": paired,
        "funnel": funnel(ctx.store, j),
        "stages": stage_usage(ctx.store, j),
        "finetune": finetune_info(ctx.store, j),
    }
    rundir.iter_dir(j).mkdir(parents=True, exist_ok=True)
    write_json(rundir.iter_file(j, "metrics.json"), metrics)
    counts["eval_pairs"] = len(pairs)
    return counts


async def _judge_and_score(
    ctx: RunContext,
    by: Judge,
    pairs: list[ResponsePair],
    pairs_path: Path,
    out: Path,
    setup: JudgingSetup,
    *,
    what: str,
) -> tuple[dict[str, int], EvalScore]:
    """Judge the pairs of `pairs_path` into `out`, then score those judgements against `pairs`
    (the same pairs, already read: scoring needs them all at once)."""
    from ste_core.evaluation import score_pairs

    counts = await judge_file(ctx, by, pairs_path, out, setup, what=what)
    ev = ctx.config.evaluation
    score = score_pairs(
        pairs,
        read_judgements(out),
        mode=ev.orders,
        majority=ev.majority_vote,
        seed=ctx.config.run.seed,
    )
    return counts, score
