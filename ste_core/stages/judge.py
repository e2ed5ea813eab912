"""Judging pairs: render the judge template for each pair in one or both orders, sample N
verdicts per order through a Scheduler, parse them.

`judge_pairs` streams: it pulls pairs lazily and yields results as requests finish (any order).
A transport failure (after the scheduler's retries) is a `JudgeFailure`, never a verdict; an
answer without a usable verdict marker is a `Judgement` with `verdict=None` (it counts 0.5 in
evaluation and serves as a DPO "rejected" sample).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ste_core.errors import ConfigurationError
from ste_core.records import (
    ChatRequest,
    Judgement,
    Message,
    Order,
    ResponsePair,
    SamplingParams,
    Usage,
)
from ste_core.stages.streams import as_async

if TYPE_CHECKING:
    from ste_core.scheduler import Scheduler
    from ste_prompts import Template

__all__ = ["JudgeFailure", "judge_messages", "judge_pairs", "judge_request", "orders_for"]


class JudgeFailure(BaseModel):
    """A judge request that failed for good (after retries): no verdict, reported apart."""

    model_config = ConfigDict(frozen=True)

    pair_id: str
    order: Order
    sample_index: int
    error_type: str
    message: str


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
    from ste_prompts import get_parser

    if template.purpose != "judge":
        raise ConfigurationError(
            f"template '{template.name}' has purpose '{template.purpose}'; a judge template "
            '(purpose = "judge") is needed here'
        )
    return get_parser(template.parser)


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
) -> AsyncIterator[Judgement | JudgeFailure]:
    """Judge every pair in `orders` with `samples_per_order` samples each; yield as they finish.

    Per (pair, order) one request with `n = samples_per_order` (the scheduler splits n when the
    backend's max_n is lower, and caches). Yields one `Judgement` per returned sample (sample 0
    carries the request's token usage) and one `JudgeFailure` per sample of a failed request. A
    provider that returns fewer choices than asked gives a `JudgeFailure` ("MissingChoice") for
    each missing sample.
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
                yield JudgeFailure(
                    pair_id=pair_id,
                    order=order,
                    sample_index=k,
                    error_type=outcome.error_type or "Error",
                    message=outcome.error or "request failed",
                )
            continue
        texts = outcome.completion.texts
        for k in range(samples_per_order):
            if k >= len(texts):
                yield JudgeFailure(
                    pair_id=pair_id,
                    order=order,
                    sample_index=k,
                    error_type="MissingChoice",
                    message=f"provider returned {len(texts)} of {samples_per_order} samples",
                )
                continue
            result = parse(texts[k])
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
            )
