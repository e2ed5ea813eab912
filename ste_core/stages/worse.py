"""Stage `worse` (step 2 of the method): a worse response by construction for every baseline.

The generator gets x and y_w and writes (a) a modified instruction x', highly relevant to x but
not the same, and (b) a good answer y_l to x'. y_l answers the wrong question, so the pair
(chosen = y_w, rejected = y_l) has a known label. An answer that does not become a pair is a
`Drop`: `api_error`, `parse_error` (the output lacks its sections; never replaced by the
baseline, which the seed implementation did, making identical pairs labelled as different),
`truncated` (cut off at max_tokens), `identical` (no signal) or `same_instruction` (not worse
by construction).

Files: iter_i/baselines.jsonl -> iter_i/pairs.jsonl + iter_i/worse_drops.jsonl (with the mixed
recipe, iter_i/instruction_pairs.jsonl: stage `mix` writes pairs.jsonl). The same pass makes the
eval pairs (stage `eval_pairs`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ste_core.errors import SteError
from ste_core.records import (
    Baseline,
    ChatRequest,
    Drop,
    Funnel,
    Message,
    ResponsePair,
    SamplingParams,
    content_hash,
)
from ste_core.run.context import RunContext
from ste_core.run.io import count_lines, read_rows
from ste_core.stages._streams import as_async, in_input_order, write_items_and_drops
from ste_core.stages.base import Counts, Stage, Step, flat_counts, uses_instructions
from ste_core.stages.baseline import api_drop, first_choice
from ste_core.stages.mix import recipe_pairs_name

if TYPE_CHECKING:
    from ste_core.engine.scheduler import Scheduler
    from ste_core.run.preflight import Planner, Source, Work
    from ste_prompts import Template

__all__ = [
    "STAGE",
    "WorseCounts",
    "generate_worse",
    "make_pair",
    "pair_id",
    "worse_request",
    "write_pairs",
]


class WorseCounts(Counts):
    baselines: int = 0
    pairs: int = 0
    dropped: dict[str, int] = flat_counts("dropped_")

    def funnel(self) -> Funnel:
        return Funnel(pairs=self.pairs, drops=self.dropped)


def worse_request(
    baseline: Baseline, *, model: str, template: Template, params: SamplingParams
) -> ChatRequest:
    """Ask for a modified instruction and a good answer to it (the worse_response template)."""
    rendered = template.render(
        instruction=baseline.instruction, baseline_response=baseline.response
    )
    return ChatRequest(
        model=model,
        messages=tuple(Message(**m) for m in rendered),
        params=params.model_copy(update={"n": 1}),
        metadata={"baseline": baseline},
    )


def pair_id(instruction_id: str, chosen: str, rejected: str) -> str:
    """Content address of a pair (the same texts give the same id in every run)."""
    return content_hash("pair", instruction_id, chosen, rejected)[:16]


def make_pair(
    baseline: Baseline, modified_instruction: str, worse: str, *, generator: str = ""
) -> ResponsePair | Drop:
    """The pair (chosen = baseline, rejected = worse), or the reason it is not one."""
    if worse.strip() == baseline.response.strip():
        return Drop(
            instruction_id=baseline.instruction_id,
            stage="worse",
            reason="identical",
            message="the worse response equals the baseline response",
        )
    if " ".join(modified_instruction.split()) == " ".join(baseline.instruction.split()):
        return Drop(
            instruction_id=baseline.instruction_id,
            stage="worse",
            reason="same_instruction",
            message="the modified instruction repeats the original",
        )
    return ResponsePair(
        id=pair_id(baseline.instruction_id, baseline.response, worse),
        instruction=baseline.instruction,
        chosen=baseline.response,
        rejected=worse,
        modified_instruction=modified_instruction,
        instruction_id=baseline.instruction_id,
        metadata={"generator": generator} if generator else {},
        recipe="instructions",
    )


async def generate_worse(
    scheduler: Scheduler,
    baselines: Iterable[Baseline] | AsyncIterable[Baseline],
    *,
    model: str,
    template: Template,
    params: SamplingParams,
) -> AsyncIterator[ResponsePair | Drop]:
    """Worse response y_l via a modified instruction x' for each baseline; yields pairs or drops."""
    from ste_prompts import ParseFailure, get_parser

    parse = get_parser(template.parser)
    reqs = (
        worse_request(b, model=model, template=template, params=params)
        async for b in as_async(baselines)
    )
    async for outcome in scheduler.run(reqs, label="worse"):
        base: Baseline = outcome.request.metadata["baseline"]
        choice = first_choice(outcome)
        if choice is None:
            yield api_drop(outcome, base.instruction_id, "worse")
            continue
        text, finish = choice
        result = parse(text)
        if isinstance(result, ParseFailure):
            truncated = finish == "length"
            yield Drop(
                instruction_id=base.instruction_id,
                stage="worse",
                reason="truncated" if truncated else "parse_error",
                error_type="ParseError",
                message=result.reason
                + (
                    " (the output hit max_tokens: raise generator.params.max_tokens)"
                    if truncated
                    else ""
                ),
                text=text,
            )
            continue
        if not getattr(result, "ended", True) and finish == "length":
            yield Drop(
                instruction_id=base.instruction_id,
                stage="worse",
                reason="truncated",
                error_type="ParseError",
                message="the worse response was cut off at max_tokens (no end marker); raise "
                "generator.params.max_tokens",
                text=text,
            )
            continue
        yield make_pair(base, result.modified_instruction, result.response.strip(), generator=model)


async def write_pairs(
    ctx: RunContext,
    source: Path,
    out: Path,
    drops_out: Path,
    *,
    what: str,
    phase: str | None = None,
) -> WorseCounts:
    """A worse response for every baseline of `source`: pairs into `out`, drops into
    `drops_out`. `phase` names this pass on the progress bar when it is one of several in a
    stage."""
    cfg = ctx.config.generator
    scheduler = ctx.scheduler("generator")
    params = cfg.params.to_params()
    template = ctx.template(cfg.worse_template)

    def baselines() -> Iterator[Baseline]:
        return read_rows(source, Baseline)

    ctx.check_budget(
        scheduler,
        (worse_request(b, model=cfg.model, template=template, params=params) for b in baselines()),
        what,
    )
    ctx.reporter.phase(phase, count_lines(source))
    ordered = in_input_order(
        generate_worse(scheduler, baselines(), model=cfg.model, template=template, params=params),
        (b.instruction_id for b in baselines()),
        lambda r: r.instruction_id,
    )
    seen, kept, dropped = await write_items_and_drops(ordered, out, drops_out)
    return WorseCounts(baselines=seen, pairs=kept, dropped=dropped)


def pairs_work(plan: Planner, key: str, baselines: Source[Baseline] | None) -> Work:
    """What the worse responses of `baselines` would still send (the preflight)."""
    from ste_core.run.preflight import Work

    if baselines is None:
        return Work.unknown("instructions unknown before `load` (a hub dataset: set data.limit)")
    cfg = plan.config.generator
    params = cfg.params.to_params()
    template = plan.template(cfg.worse_template)
    return plan.requests(
        key,
        "generator",
        lambda: (
            worse_request(b, model=cfg.model, template=template, params=params)
            for b in baselines.read()
        ),
        upper_bound=not baselines.exact,
    )


def estimate(plan: Planner, iteration: int) -> Work:
    baselines = plan.rows(plan.rundir.iter_file(iteration, "baselines.jsonl"), Baseline)
    if baselines is None:
        train = plan.instructions("train")
        baselines = None if train is None else plan.projected_baselines(train)
    # The same requests every iteration (the baselines come from the cache).
    return pairs_work(plan, "worse:train", baselines)


async def worse(step: Step) -> WorseCounts:
    rundir, i = step.ctx.rundir, step.iteration
    drops = rundir.iter_file(i, "worse_drops.jsonl")
    counts = await write_pairs(
        step.ctx,
        rundir.iter_file(i, "baselines.jsonl"),
        rundir.iter_file(i, recipe_pairs_name(step.ctx.config, "instructions")),
        drops,
        what=f"iteration {i} worse responses",
    )
    if counts.pairs == 0:
        raise SteError(f"iteration {i}: no pair survived generation ({counts.flat()}); see {drops}")
    return counts


STAGE = Stage(
    name="worse",
    scope="iteration",
    run=worse,
    counts=WorseCounts,
    needs=("baseline",),
    enabled=uses_instructions,
    enabled_when='data.recipe is "instructions" or "mixed"',
    summary="a good answer to a modified instruction: the known-worse response of each pair",
    estimate=estimate,
)
