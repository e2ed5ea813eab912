"""Stage `judge` (steps 3-4 of the method): the previous judge M_{i-1} judges iteration i's
pairs in both orders, N samples per order, and each verdict is parsed.

`judge_pairs` renders the judge template for each pair in one or both orders, samples through a
Scheduler and streams: it pulls pairs lazily and yields results as requests finish (any order).
A transport failure (after the scheduler's retries) is a `Drop`, never a verdict; an answer
without a usable verdict marker is a `Judgement` with `verdict=None` (it counts 0.5 in evaluation
and serves as a DPO "rejected" sample). `judge_file` is shared with the `evaluate` stage (every
judge on the frozen eval pairs and benchmarks); judgement files use the rows `ste score` reads.

Files: iter_i/pairs.jsonl -> iter_i/judgements.jsonl.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ste_core.errors import ConfigurationError
from ste_core.evaluation.pairs_io import judgement_row
from ste_core.records import (
    ChatRequest,
    Drop,
    Funnel,
    Judgement,
    Message,
    Order,
    ResponsePair,
    SamplingParams,
    Usage,
    judgement_from_row,
)
from ste_core.run.io import count_lines, jsonl_writer, read_rows
from ste_core.stages._streams import as_async, in_input_order
from ste_core.stages.base import Counts, Stage, Step

if TYPE_CHECKING:
    from ste_core.config import Config
    from ste_core.engine.scheduler import Scheduler
    from ste_core.run.context import RunContext
    from ste_core.run.preflight import Planner, Source, Work
    from ste_core.run.serving import Judge
    from ste_prompts import Template

__all__ = [
    "STAGE",
    "JudgeCounts",
    "JudgingSetup",
    "judge_file",
    "judge_messages",
    "judge_pairs",
    "judge_request",
    "judges_pairs_at",
    "orders_for",
    "read_judgements",
]


#: when the judge and select stages run, in config words
GRPO_SKIPS = (
    'at iterations trained with SFT or DPO, not at one trained with finetune.method = "grpo" '
    '(GRPO samples its own judgements; with finetune.warmup = "sft" they run at iteration 1)'
)


def judges_pairs_at(config: Config, iteration: int) -> bool:
    """Whether iteration `iteration` needs the judge's judgements (see FineTuneConfig)."""
    return config.finetune.judges_pairs(iteration)


def orders_for(pair_id: str, mode: Literal["both", "single"], seed: int) -> tuple[Order, ...]:
    """The orders a pair is judged in: both, or one seeded-random order (same seed, same order;
    the same coin flip as `ste_core.evaluation.single_order`)."""
    if mode == "both":
        return (Order.AB, Order.BA)
    if mode != "single":
        raise ValueError(f"orders must be 'both' or 'single', got {mode!r}")
    from ste_core.evaluation.scoring import single_order

    return (single_order(pair_id, seed),)


def judge_messages(template: Template, pair: ResponsePair, order: Order) -> tuple[Message, ...]:
    """The judge prompt for `pair` shown in `order` (also the SFT/DPO training input)."""
    response_a, response_b = pair.shown(order)
    rendered = template.render(
        instruction=pair.instruction, response_a=response_a, response_b=response_b
    )
    return tuple(Message(**m) for m in rendered)


def judge_request(
    pair: ResponsePair,
    order: Order,
    *,
    model: str,
    template: Template,
    params: SamplingParams,
    samples: int,
) -> ChatRequest:
    """One request asking for `samples` judgements of `pair` in `order` (n on the request)."""
    return ChatRequest(
        model=model,
        messages=judge_messages(template, pair, order),
        params=params.model_copy(update={"n": samples}),
        metadata={"pair_id": pair.id, "order": order.value},
    )


def _verdict_parser(template: Template) -> Any:
    if template.purpose != "judge":
        raise ConfigurationError(
            f"template '{template.name}' has purpose '{template.purpose}'; a judge template "
            '(purpose = "judge") is needed here'
        )
    # The template's own verdict rule: a judgement reads as the prompt told the judge to write.
    return template.parse_output


async def judge_pairs(
    scheduler: Scheduler,
    pairs: Iterable[ResponsePair] | AsyncIterable[ResponsePair],
    *,
    model: str,
    template: Template,
    params: SamplingParams,
    samples_per_order: int = 1,
    orders: Literal["both", "single"] = "both",
    seed: int = 0,
    stage: str = "judge",
) -> AsyncIterator[Judgement | Drop]:
    """Judge every pair in `orders` with `samples_per_order` samples each; yield as they finish.

    Per (pair, order) one request with `n = samples_per_order` (the scheduler splits n when the
    backend's max_n is lower, and caches). Yields one `Judgement` per returned sample (sample 0
    carries the request's token usage) and one `Drop` per sample of a failed request. A provider
    that returns fewer choices than asked gives a `Drop` (error type "MissingChoice") for each
    missing sample. `stage` names the stage in those drops.
    """
    if samples_per_order < 1:
        raise ValueError("samples_per_order must be >= 1")
    parse = _verdict_parser(template)

    async def requests() -> AsyncIterator[ChatRequest]:
        async for pair in as_async(pairs):
            for order in orders_for(pair.id, orders, seed):
                yield judge_request(
                    pair,
                    order,
                    model=model,
                    template=template,
                    params=params,
                    samples=samples_per_order,
                )

    async for outcome in scheduler.run(requests(), label=f"judge {model}"):
        pair_id = outcome.request.metadata["pair_id"]
        order = Order(outcome.request.metadata["order"])
        if outcome.status != "ok" or outcome.completion is None:
            for k in range(samples_per_order):
                yield Drop(
                    pair_id=pair_id,
                    order=order,
                    sample_index=k,
                    stage=stage,
                    reason="api_error",
                    error_type=outcome.error_type or "Error",
                    message=outcome.error or "request failed",
                )
            continue
        texts = outcome.completion.texts
        reasons = outcome.completion.finish_reasons
        for k in range(samples_per_order):
            if k >= len(texts):
                yield Drop(
                    pair_id=pair_id,
                    order=order,
                    sample_index=k,
                    stage=stage,
                    reason="api_error",
                    error_type="MissingChoice",
                    message=f"provider returned {len(texts)} of {samples_per_order} samples",
                )
                continue
            truncated = k < len(reasons) and reasons[k] == "length"
            result = parse(texts[k], truncated=truncated)
            yield Judgement(
                pair_id=pair_id,
                order=order,
                sample_index=k,
                text=texts[k],
                verdict=result.verdict,
                judge_model=model,
                template=template.name,
                parse_reason=result.reason,
                usage=outcome.completion.usage if k == 0 else Usage(),
                truncated=truncated,
            )


# --------------------------------------------------------------------------------------------
# Judging a file, and the stage
# --------------------------------------------------------------------------------------------


class JudgeCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "failures": "failed calls",
        "verdict_A": "A verdicts",
        "verdict_B": "B verdicts",
        "tie": "ties",
        "no_verdict": "without a verdict",
    }

    pairs: int = 0
    judgements: int = 0
    failures: int = 0
    verdict_A: int = 0
    verdict_B: int = 0
    tie: int = 0
    no_verdict: int = 0
    correct: int = 0

    def funnel(self) -> Funnel:
        return Funnel(judged=self.judgements, correct=self.correct, judge_failures=self.failures)


@dataclass(frozen=True)
class JudgingSetup:
    """How the judge is asked: prompt template, sampling, samples per order, which orders."""

    template: Template
    params: SamplingParams
    samples: int
    orders: Literal["both", "single"]


def read_judgements(path: Path) -> Iterator[Judgement | Drop]:
    """Stream a judgements file: Judgements, and Drops where a sample produced none."""
    for row in read_rows(path):
        yield judgement_from_row(row)


async def judge_file(
    ctx: RunContext,
    by: Judge,
    pairs_path: Path,
    out: Path,
    setup: JudgingSetup,
    *,
    what: str,
    stage: str,
    phase: str | None = None,
) -> JudgeCounts:
    """Judge every pair of `pairs_path` with `by`; write the records to `out` in input order.
    `phase` names this pass on the progress bar when it is one of several in a stage."""
    seed = ctx.config.run.seed
    template, params, samples, orders = setup.template, setup.params, setup.samples, setup.orders

    def pairs() -> Iterator[ResponsePair]:
        return read_rows(pairs_path, ResponsePair)

    def requests() -> Iterator[ChatRequest]:
        for p in pairs():
            for o in orders_for(p.id, orders, seed):
                yield judge_request(
                    p, o, model=by.model, template=template, params=params, samples=samples
                )

    ctx.check_budget(by.scheduler, requests(), what)
    n_orders = 2 if orders == "both" else 1
    ctx.reporter.phase(phase, count_lines(pairs_path) * n_orders)
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
        stage=stage,
    )
    ordered = in_input_order(
        results,
        expected,
        lambda r: r.sample[:2],
        per_key=samples,
        sort=lambda r: r.sample[2],
    )
    counts = JudgeCounts(pairs=count_lines(pairs_path))
    with jsonl_writer(out) as w:
        async for r in ordered:
            # The rows `ste score` reads (`pairs_io.judgement_row`), spaced as json.dumps writes
            w.write(judgement_row(r))
            if isinstance(r, Drop):
                counts.failures += 1
                continue
            counts.judgements += 1
            if r.verdict == "A":
                counts.verdict_A += 1
            elif r.verdict == "B":
                counts.verdict_B += 1
            elif r.verdict == "tie":
                counts.tie += 1
            else:
                counts.no_verdict += 1
            counts.correct += r.correct
    return counts


def judging_work(
    plan: Planner, key: str, j: int, pairs: Source[ResponsePair] | None, setup: JudgingSetup
) -> Work:
    """What judge M_j judging `pairs` as `setup` says would still send (the preflight)."""
    from ste_core.run.preflight import Work

    if pairs is None:
        return Work.unknown("instructions unknown before `load` (a hub dataset: set data.limit)")
    model, seed = plan.judge_model(j), plan.config.run.seed

    def requests() -> Iterator[ChatRequest]:
        for p in pairs.read():
            for o in orders_for(p.id, setup.orders, seed):
                yield judge_request(
                    p,
                    o,
                    model=model,
                    template=setup.template,
                    params=setup.params,
                    samples=setup.samples,
                )

    return plan.requests(key, j, requests, upper_bound=not pairs.exact)


def estimate(plan: Planner, iteration: int) -> Work:
    cfg = plan.config.judge
    setup = JudgingSetup(
        template=plan.template(cfg.template),
        params=cfg.params.to_params(),
        samples=cfg.samples_per_order,
        orders=cfg.orders,
    )
    pairs = plan.rows(plan.rundir.iter_file(iteration, "pairs.jsonl"), ResponsePair)
    if pairs is None:
        train = plan.instructions("train")
        pairs = None if train is None else plan.projected_pairs(train)
    return judging_work(plan, f"judge:{iteration}", iteration - 1, pairs, setup)


async def judge(step: Step) -> JudgeCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config.judge
    setup = JudgingSetup(
        template=ctx.template(cfg.template),
        params=cfg.params.to_params(),
        samples=cfg.samples_per_order,
        orders=cfg.orders,
    )
    counts = await judge_file(
        ctx,
        step.judge,
        ctx.rundir.iter_file(i, "pairs.jsonl"),
        ctx.rundir.iter_file(i, "judgements.jsonl"),
        setup,
        what=f"iteration {i} judgements",
        stage="judge",
    )
    if counts.failures:
        ctx.reporter.warning(
            f"iteration {i}: {counts.failures} judgement(s) failed after retries (API "
            "errors, not verdicts); they are excluded from selection"
        )
    return counts


STAGE = Stage(
    name="judge",
    scope="iteration",
    run=judge,
    counts=JudgeCounts,
    # the pairs come from worse, solve or mix, by data.recipe
    needs=("worse", "solve", "mix"),
    judge="previous",
    at=judges_pairs_at,
    at_when=GRPO_SKIPS,
    summary="the previous judge judges the pairs in both orders, N samples per order",
    estimate=estimate,
)
