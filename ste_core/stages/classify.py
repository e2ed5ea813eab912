"""Optional instruction curation: classify each instruction into a category (and difficulty)
with the classifier template, then keep a balanced subset of the chosen categories.

The paper kept a balanced, harder subset of WildChat after an LLM classified it; "reasoning"
helped most. Classification streams (`classify_instructions`); the balanced pick (`quotas` +
`pick_balanced`) holds at most the kept instructions.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ste_core.records import ChatRequest, Instruction, Message, SamplingParams, content_hash
from ste_core.stages.streams import as_async

if TYPE_CHECKING:
    from ste_core.scheduler import Scheduler
    from ste_prompts import Template

__all__ = [
    "ClassifyFailure",
    "classify_instructions",
    "classify_request",
    "pick_balanced",
    "quotas",
]


class ClassifyFailure(BaseModel):
    """An instruction that could not be classified (api_error or parse_error), with the reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    status: str
    error_type: str | None = None
    message: str = ""


def classify_request(
    inst: Instruction,
    *,
    model: str,
    template: Template,
    categories_text: str | None,
    params: SamplingParams,
) -> ChatRequest:
    values = {"instruction": inst.text}
    if categories_text is not None:
        values["categories"] = categories_text
    return ChatRequest(
        model=model,
        messages=tuple(Message(**m) for m in template.render(**values)),
        params=params.model_copy(update={"n": 1}),
        metadata={"instruction": inst},
    )


async def classify_instructions(
    scheduler: Scheduler,
    instructions: Iterable[Instruction] | AsyncIterable[Instruction],
    *,
    model: str,
    template: Template,
    params: SamplingParams,
    categories: Mapping[str, str] | None = None,
) -> AsyncIterator[Instruction | ClassifyFailure]:
    """Yield each instruction with `category` and `metadata["difficulty"]` set, or a failure."""
    from ste_prompts import ParseFailure, format_categories, get_parser

    parse = get_parser(template.parser)
    text = format_categories(categories) if categories is not None else None
    names: Sequence[str] | None = list(categories) if categories is not None else None

    def build(inst: Instruction) -> ChatRequest:
        return classify_request(
            inst, model=model, template=template, categories_text=text, params=params
        )

    reqs = (build(inst) async for inst in as_async(instructions))
    async for outcome in scheduler.run(reqs, label="classify"):
        inst: Instruction = outcome.request.metadata["instruction"]
        if not outcome.ok or not outcome.texts:
            yield ClassifyFailure(
                instruction_id=inst.id,
                status="api_error",
                error_type=outcome.error_type,
                message=outcome.error or "request failed",
            )
            continue
        result: Any = (
            parse(outcome.texts[0], names) if names is not None else parse(outcome.texts[0])
        )
        if isinstance(result, ParseFailure):
            yield ClassifyFailure(
                instruction_id=inst.id,
                status="parse_error",
                error_type="ParseError",
                message=result.reason,
            )
            continue
        yield inst.model_copy(
            update={
                "category": result.category,
                "metadata": {**inst.metadata, "difficulty": result.difficulty},
            }
        )


def quotas(
    counts: Mapping[str, int],
    categories: Sequence[str],
    *,
    per_category: int | None,
    balance: bool,
) -> dict[str, int]:
    """How many instructions to keep of each chosen category.

    balance: every chosen category that occurs gets min(count over the chosen categories that
    occur), capped by per_category (a category with no instruction at all gets 0 rather than
    emptying the whole selection; the caller reports it). Without balance each keeps
    min(its count, per_category).
    """
    available = {c: counts.get(c, 0) for c in categories}
    if balance:
        present = [n for n in available.values() if n > 0]
        n = min(present) if present else 0
        if per_category is not None:
            n = min(n, per_category)
        return {c: (n if available[c] > 0 else 0) for c in categories}
    return {c: (a if per_category is None else min(a, per_category)) for c, a in available.items()}


def pick_balanced(
    classified: Iterable[Instruction],
    wanted: Mapping[str, int],
    *,
    seed: int,
    difficulties: Sequence[str] | None = None,
) -> Iterator[Instruction]:
    """The `wanted[c]` instructions of each category with the smallest seeded hash (stable).

    One bounded heap per category (a max-heap by negated key, so the largest key is evicted):
    memory is the kept instructions only.
    """
    heaps: dict[str, list[tuple[int, str, Instruction]]] = {c: [] for c in wanted}
    for inst in classified:
        c = inst.category
        if c is None or wanted.get(c, 0) == 0:
            continue
        if difficulties is not None and inst.metadata.get("difficulty") not in difficulties:
            continue
        key = int(content_hash("filter", seed, inst.id)[:16], 16)
        heap = heaps[c]
        heapq.heappush(heap, (-key, inst.id, inst))
        if len(heap) > wanted[c]:
            heapq.heappop(heap)
    chosen = sorted(
        ((-neg, inst) for heap in heaps.values() for neg, _, inst in heap), key=lambda t: t[0]
    )
    for _, inst in chosen:
        yield inst


def category_counts(
    classified: Iterable[Instruction], difficulties: Sequence[str] | None
) -> Counter[str]:
    """Counts per category (only instructions of the wanted difficulties)."""
    out: Counter[str] = Counter()
    for inst in classified:
        if difficulties is not None and inst.metadata.get("difficulty") not in difficulties:
            continue
        out[inst.category or "?"] += 1
    return out
