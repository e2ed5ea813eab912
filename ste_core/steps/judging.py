"""Judging steps: a judge's verdicts on a file of pairs, in input order.

`judge_file` is shared by the `judge` stage (M_{i-1} annotates iteration i's training pairs, with
the [judge] settings) and by evaluation (M_j on the frozen eval pairs and benchmarks, with the
[evaluation] settings). Judgement files use the row format `ste score` reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ste_core.judges import Judge
from ste_core.records import ChatRequest, Judgement, ResponsePair, SamplingParams
from ste_core.rundir import count_lines, jsonl_writer, read_jsonl
from ste_core.runtime import RunContext
from ste_core.stages.judge import JudgeFailure, judge_pairs, judge_request, orders_for
from ste_core.stages.ordering import in_input_order
from ste_core.steps.common import check_budget

if TYPE_CHECKING:
    from ste_prompts import Template

__all__ = ["JudgingSetup", "judge", "judge_file", "read_judgements"]


@dataclass(frozen=True)
class JudgingSetup:
    """How the judge is asked: prompt template, sampling, samples per order, which orders."""

    template: Template
    params: SamplingParams
    samples: int
    orders: Literal["both", "single"]


def read_judgements(path: Path) -> Iterator[Judgement | JudgeFailure]:
    """Stream a judgements JSONL file (rows of Judgement, or JudgeFailure with error_type)."""
    for row in read_jsonl(path):
        if "error_type" in row and "text" not in row:
            yield JudgeFailure.model_validate(row)
        else:
            yield Judgement.model_validate(row)


def _judgement_row(rec: Judgement | JudgeFailure) -> dict[str, Any]:
    # Same shape as ste_core.evaluation.pairs_io.judgement_row (`ste score` reads these files).
    return rec.model_dump(mode="json")


async def judge(ctx: RunContext, i: int, by: Judge) -> dict[str, int]:
    """Stage `judge` of iteration i: `by` (M_{i-1}) judges iter_i/pairs.jsonl."""
    cfg = ctx.config.judge
    setup = JudgingSetup(
        template=ctx.template(cfg.template),
        params=cfg.params.to_params(),
        samples=cfg.samples_per_order,
        orders=cfg.orders,
    )
    counts = await judge_file(
        ctx,
        by,
        ctx.rundir.iter_file(i, "pairs.jsonl"),
        ctx.rundir.iter_file(i, "judgements.jsonl"),
        setup,
        what=f"iteration {i} judgements",
    )
    if counts["failures"]:
        ctx.reporter.warning(
            f"iteration {i}: {counts['failures']} judgement(s) failed after retries (API "
            "errors, not verdicts); they are excluded from selection"
        )
    return counts


async def judge_file(
    ctx: RunContext, by: Judge, pairs_path: Path, out: Path, setup: JudgingSetup, *, what: str
) -> dict[str, int]:
    """Judge every pair of `pairs_path` with `by`; write the records to `out` in input order."""
    seed = ctx.config.run.seed
    template, params, samples, orders = setup.template, setup.params, setup.samples, setup.orders

    def pairs() -> Iterator[ResponsePair]:
        return read_jsonl(pairs_path, ResponsePair)

    def requests() -> Iterator[ChatRequest]:
        for p in pairs():
            for o in orders_for(p.id, orders, seed):
                yield judge_request(
                    p, o, model=by.model, template=template, params=params, samples=samples
                )

    check_budget(ctx, by.scheduler, requests(), what)
    n_orders = 2 if orders == "both" else 1
    ctx.reporter.progress(0, count_lines(pairs_path) * n_orders)
    counts = {
        "pairs": 0,
        "judgements": 0,
        "failures": 0,
        "verdict_A": 0,
        "verdict_B": 0,
        "tie": 0,
        "no_verdict": 0,
        "correct": 0,
    }
    expected = ((p.id, o) for p in pairs() for o in orders_for(p.id, orders, seed))
    results = judge_pairs(
        by.scheduler,
        pairs(),
        model=by.model,
        template=template,
        params=params,
        samples_per_order=samples,
        orders=orders,
        seed=seed,
    )
    ordered = in_input_order(
        results,
        expected,
        lambda r: (r.pair_id, r.order),
        per_key=samples,
        sort=lambda r: r.sample_index,
    )
    counts["pairs"] = count_lines(pairs_path)
    with jsonl_writer(out) as w:
        async for r in ordered:
            w.write(_judgement_row(r))
            if isinstance(r, JudgeFailure):
                counts["failures"] += 1
                continue
            counts["judgements"] += 1
            key = {"A": "verdict_A", "B": "verdict_B", "tie": "tie"}.get(
                r.verdict or "", "no_verdict"
            )
            counts[key] += 1
            counts["correct"] += r.correct
    return counts
