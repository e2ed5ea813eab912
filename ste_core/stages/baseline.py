"""Stage `baseline` (step 1 of the method): the generator's answer y_w = G(x) to every training
instruction.

Instructions are pulled lazily and answers written as requests finish, in input order. An
instruction that gets no baseline is a `Drop`: `api_error` (the request failed after the
scheduler's retries: transport, never a parse issue) or `empty_baseline`.

Files: data/train.jsonl -> iter_i/baselines.jsonl + iter_i/baseline_drops.jsonl. The same pass
makes the eval pairs' baselines (stage `eval_pairs`). Problems (items with a reference answer,
the mixed recipe) are skipped: stage `solve` makes their pairs. With the verifiable recipe the
stage is off.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ste_core.records import (
    Baseline,
    ChatRequest,
    Drop,
    Funnel,
    Instruction,
    Message,
    Outcome,
    SamplingParams,
)
from ste_core.run.context import RunContext
from ste_core.run.io import count_lines, read_rows
from ste_core.stages._streams import as_async, in_input_order, write_items_and_drops
from ste_core.stages.base import Counts, Stage, Step, flat_counts, uses_instructions

if TYPE_CHECKING:
    from ste_core.engine.scheduler import Scheduler
    from ste_core.run.preflight import Planner, Source, Work

__all__ = [
    "STAGE",
    "BaselineCounts",
    "api_drop",
    "baseline_request",
    "first_choice",
    "generate_baselines",
    "write_baselines",
]


class BaselineCounts(Counts):
    instructions: int = 0
    baselines: int = 0
    dropped: dict[str, int] = flat_counts("dropped_")

    def funnel(self) -> Funnel:
        return Funnel(instructions=self.instructions, drops=self.dropped)


def baseline_request(inst: Instruction, *, model: str, params: SamplingParams) -> ChatRequest:
    """The instruction as a single user turn."""
    return ChatRequest(
        model=model,
        messages=(Message(role="user", content=inst.text),),
        params=params.model_copy(update={"n": 1}),
        metadata={"instruction": inst},
    )


def first_choice(outcome: Outcome) -> tuple[str, str | None] | None:
    """(text, finish reason) of the first sample; None when the request failed for good (after
    the scheduler's retries), which the caller drops as an api_error."""
    c = outcome.completion
    if not outcome.ok or c is None or not c.texts:
        return None
    return c.texts[0], (c.finish_reasons[0] if c.finish_reasons else None)


def api_drop(outcome: Outcome, instruction_id: str, stage: str) -> Drop:
    return Drop(
        instruction_id=instruction_id,
        stage=stage,
        reason="api_error",
        error_type=outcome.error_type,
        message=outcome.error or "request failed",
    )


async def generate_baselines(
    scheduler: Scheduler,
    instructions: Iterable[Instruction] | AsyncIterable[Instruction],
    *,
    model: str,
    params: SamplingParams,
) -> AsyncIterator[Baseline | Drop]:
    """Baseline response y_w = G(x) for each instruction; yields as requests finish."""
    reqs = (baseline_request(i, model=model, params=params) async for i in as_async(instructions))
    async for outcome in scheduler.run(reqs, label="baseline"):
        inst: Instruction = outcome.request.metadata["instruction"]
        choice = first_choice(outcome)
        if choice is None:
            yield api_drop(outcome, inst.id, "baseline")
            continue
        text, finish = choice
        if not text.strip():
            yield Drop(
                instruction_id=inst.id,
                stage="baseline",
                reason="empty_baseline",
                message=f"empty response (finish reason {finish})",
            )
            continue
        yield Baseline(
            instruction_id=inst.id,
            instruction=inst.text,
            response=text.strip(),
            finish_reason=finish,
            model=model,
        )


async def write_baselines(
    ctx: RunContext,
    source: Path,
    out: Path,
    drops_out: Path,
    *,
    what: str,
    phase: str | None = None,
) -> BaselineCounts:
    """A baseline for every instruction of `source`, into `out` (drops into `drops_out`).
    `phase` names this pass on the progress bar when it is one of several in a stage."""
    cfg = ctx.config.generator
    scheduler = ctx.scheduler("generator")
    params = cfg.params.to_params()

    def instructions() -> Iterator[Instruction]:
        return (i for i in read_rows(source, Instruction) if i.answer is None)

    ctx.check_budget(
        scheduler,
        (baseline_request(i, model=cfg.model, params=params) for i in instructions()),
        what,
    )
    ctx.reporter.phase(phase, count_lines(source))
    ordered = in_input_order(
        generate_baselines(scheduler, instructions(), model=cfg.model, params=params),
        (i.id for i in instructions()),
        lambda r: r.instruction_id,
    )
    seen, kept, dropped = await write_items_and_drops(ordered, out, drops_out)
    return BaselineCounts(instructions=seen, baselines=kept, dropped=dropped)


def baselines_work(plan: Planner, key: str, instructions: Source[Instruction] | None) -> Work:
    """What the baselines of `instructions` would still send (the preflight)."""
    from ste_core.run.preflight import Work

    if instructions is None:
        return Work.unknown("instructions unknown before `load` (a hub dataset: set data.limit)")
    cfg = plan.config.generator
    params = cfg.params.to_params()
    return plan.requests(
        key,
        "generator",
        lambda: (
            baseline_request(i, model=cfg.model, params=params)
            for i in instructions.read()
            if i.answer is None
        ),
        upper_bound=not instructions.exact,
    )


def estimate(plan: Planner, iteration: int) -> Work:
    # The same requests every iteration: after the first they come from the cache.
    return baselines_work(plan, "baseline:train", plan.instructions("train"))


async def baseline(step: Step) -> BaselineCounts:
    rundir, i = step.ctx.rundir, step.iteration
    return await write_baselines(
        step.ctx,
        rundir.data("train"),
        rundir.iter_file(i, "baselines.jsonl"),
        rundir.iter_file(i, "baseline_drops.jsonl"),
        what=f"iteration {i} baselines",
    )


STAGE = Stage(
    name="baseline",
    scope="iteration",
    run=baseline,
    counts=BaselineCounts,
    needs=("split",),
    enabled=uses_instructions,
    enabled_when='data.recipe is "instructions" or "mixed"',
    summary="the generator's answer to every training instruction",
    estimate=estimate,
)
