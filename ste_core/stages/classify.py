"""Stage `classify` (only with [filter] enabled): classify each instruction into a category (and
difficulty) with the classifier template, then keep a balanced subset of the chosen categories.

The paper kept a balanced, harder subset of WildChat after an LLM classified it; "reasoning"
helped most. Classification streams (`classify_instructions`); the balanced pick (`quotas` +
`pick_balanced`) holds at most the kept instructions.

Files (under data/): instructions.jsonl -> classified.jsonl + classify_failures.jsonl (drops) ->
filtered.jsonl.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ste_core.config import Config
from ste_core.errors import ConfigurationError
from ste_core.records import ChatRequest, Drop, Instruction, Message, SamplingParams, content_hash
from ste_core.run.io import count_lines, jsonl_writer, read_rows
from ste_core.stages._streams import as_async, in_input_order
from ste_core.stages.base import Counts, Stage, Step, flat_counts

if TYPE_CHECKING:
    from ste_core.engine.scheduler import Scheduler
    from ste_core.run.preflight import Planner, Work
    from ste_prompts import Template

__all__ = [
    "STAGE",
    "ClassifyCounts",
    "classify_instructions",
    "classify_request",
    "pick_balanced",
    "quotas",
]


class ClassifyCounts(Counts):
    labels: ClassVar[Mapping[str, str]] = {
        "api_errors": "failed calls",
        "parse_errors": "unparsable answers",
        "categories": "by category",
    }

    instructions: int = 0
    classified: int = 0
    api_errors: int = 0
    parse_errors: int = 0
    categories: dict[str, int] = flat_counts("category_")
    kept: int = 0


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
) -> AsyncIterator[Instruction | Drop]:
    """Yield each instruction with `category` and `metadata["difficulty"]` set, or its Drop."""
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
            yield Drop(
                instruction_id=inst.id,
                stage="classify",
                reason="api_error",
                error_type=outcome.error_type,
                message=outcome.error or "request failed",
            )
            continue
        result: Any = (
            parse(outcome.texts[0], names) if names is not None else parse(outcome.texts[0])
        )
        if isinstance(result, ParseFailure):
            yield Drop(
                instruction_id=inst.id,
                stage="classify",
                reason="parse_error",
                error_type="ParseError",
                message=result.reason,
                text=outcome.texts[0],
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


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


async def classify(step: Step) -> ClassifyCounts:
    ctx = step.ctx
    cfg = ctx.config
    f = cfg.filter
    rundir = ctx.rundir
    scheduler = ctx.scheduler("generator")
    template = ctx.template(f.template)
    model = f.model or cfg.generator.model
    params = cfg.generator.params.to_params().model_copy(
        update={"temperature": 0.0, "top_p": 1.0, "max_tokens": f.max_tokens}
    )
    source = rundir.data("instructions")

    def instructions() -> Iterator[Instruction]:
        return read_rows(source, Instruction)

    descriptions = f.category_descriptions
    categories_text = None
    if descriptions is not None:
        from ste_prompts import format_categories

        categories_text = format_categories(descriptions)
    ctx.check_budget(
        scheduler,
        (
            classify_request(
                i,
                model=model,
                template=template,
                categories_text=categories_text,
                params=params,
            )
            for i in instructions()
        ),
        "classify",
    )
    counts = ClassifyCounts()
    ctx.reporter.phase(total=count_lines(source))
    results = classify_instructions(
        scheduler,
        instructions(),
        model=model,
        template=template,
        params=params,
        categories=descriptions,
    )
    ordered = in_input_order(
        results,
        (i.id for i in instructions()),
        lambda r: r.instruction_id if isinstance(r, Drop) else r.id,
    )
    classified = rundir.data("classified")
    with jsonl_writer(classified) as w, jsonl_writer(rundir.data("classify_failures")) as wf:
        async for r in ordered:
            counts.instructions += 1
            if isinstance(r, Drop):
                if r.reason == "api_error":
                    counts.api_errors += 1
                else:
                    counts.parse_errors += 1
                wf.write(r)
            else:
                counts.classified += 1
                w.write(r)
    per_category = category_counts(read_rows(classified, Instruction), f.difficulties)
    wanted = quotas(per_category, f.categories, per_category=f.per_category, balance=f.balance)
    with jsonl_writer(rundir.data("filtered")) as w:
        for inst in pick_balanced(
            read_rows(classified, Instruction),
            wanted,
            seed=cfg.run.seed,
            difficulties=f.difficulties,
        ):
            w.write(inst)
            counts.kept += 1
    counts.categories = dict(sorted(per_category.items()))
    absent = [c for c in f.categories if per_category.get(c, 0) == 0]
    if absent:
        ctx.reporter.warning(
            f"filter: no instruction was classified as {', '.join(absent)}; the balanced "
            "subset uses the other chosen categories"
        )
    if counts.kept == 0:
        raise ConfigurationError(
            f"filter: no instruction of the categories {f.categories} was found "
            f"(classified: {dict(per_category)}); change filter.categories or disable "
            "the filter"
        )
    return counts


def estimate(plan: Planner, iteration: int) -> Work:
    from ste_core.run.preflight import Work

    cfg = plan.config
    f = cfg.filter
    instructions = plan.instructions("loaded")
    if instructions is None:
        return Work.unknown("instructions unknown before `load` (a hub dataset: set data.limit)")
    template = plan.template(f.template)
    model = f.model or cfg.generator.model
    params = cfg.generator.params.to_params().model_copy(
        update={"temperature": 0.0, "top_p": 1.0, "max_tokens": f.max_tokens}
    )
    text = None
    if f.category_descriptions is not None:
        from ste_prompts import format_categories

        text = format_categories(f.category_descriptions)
    return plan.requests(
        "classify",
        "generator",
        lambda: (
            classify_request(i, model=model, template=template, categories_text=text, params=params)
            for i in instructions.read()
        ),
        upper_bound=not instructions.exact,
    )


def _filter_enabled(config: Config) -> bool:
    return config.filter.enabled


STAGE = Stage(
    name="classify",
    scope="run",
    run=classify,
    counts=ClassifyCounts,
    needs=("load",),
    enabled=_filter_enabled,
    enabled_when="filter.enabled = true",
    summary="[filter]: a category per instruction by the generator, then a balanced subset",
    estimate=estimate,
)
