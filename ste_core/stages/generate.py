"""Steps 1-2 of the method: baseline responses and worse responses by a modified instruction.

Both stream: instructions (or baselines) are pulled lazily and results yielded as requests finish.
Every item that does not become a pair is yielded as a `GenerationDrop` with a reason, so the
stage can count its funnel:

* `api_error` - the request failed after the scheduler's retries (transport, never a parse issue);
* `empty_baseline` - the generator answered with nothing;
* `truncated` - the answer hit max_tokens (finish reason "length") before its end marker;
* `parse_error` - the worse-response output lacks its sections. Never replaced by the baseline
  (the seed implementation did that and produced identical pairs labelled as different);
* `identical` - the worse response equals the baseline (no signal in such a pair);
* `same_instruction` - the "modified" instruction is the original one (so the worse response is
  not worse by construction).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ste_core.records import (
    ChatRequest,
    Instruction,
    Message,
    ResponsePair,
    SamplingParams,
    content_hash,
)
from ste_core.stages.streams import as_async

if TYPE_CHECKING:
    from ste_core.scheduler import Outcome, Scheduler
    from ste_prompts import Template

__all__ = [
    "Baseline",
    "GenerationDrop",
    "baseline_request",
    "generate_baselines",
    "generate_worse",
    "make_pair",
    "pair_id",
    "worse_request",
]

DropReason = Literal[
    "api_error", "empty_baseline", "truncated", "parse_error", "identical", "same_instruction"
]


class Baseline(BaseModel):
    """The generator's answer y_w to an instruction x."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    instruction: str
    response: str
    finish_reason: str | None = None
    model: str = ""


class GenerationDrop(BaseModel):
    """An instruction that did not make it to a pair, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    stage: Literal["baseline", "worse"]
    reason: DropReason
    error_type: str | None = None
    message: str = ""
    text: str | None = None  # the model's text for parse failures (to inspect the prompt)


def baseline_request(inst: Instruction, *, model: str, params: SamplingParams) -> ChatRequest:
    """The instruction as a single user turn."""
    return ChatRequest(
        model=model,
        messages=(Message(role="user", content=inst.text),),
        params=params.model_copy(update={"n": 1}),
        metadata={"instruction": inst},
    )


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
) -> ResponsePair | GenerationDrop:
    """The pair (chosen = baseline, rejected = worse), or the reason it is not one."""
    if worse.strip() == baseline.response.strip():
        return GenerationDrop(
            instruction_id=baseline.instruction_id,
            stage="worse",
            reason="identical",
            message="the worse response equals the baseline response",
        )
    if " ".join(modified_instruction.split()) == " ".join(baseline.instruction.split()):
        return GenerationDrop(
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
    )


def _first_choice(outcome: Outcome) -> tuple[str, str | None] | None:
    """(text, finish reason) of the first sample; None when the request failed for good (after
    the scheduler's retries), which the caller drops as an api_error."""
    c = outcome.completion
    if not outcome.ok or c is None or not c.texts:
        return None
    return c.texts[0], (c.finish_reasons[0] if c.finish_reasons else None)


def _api_drop(outcome: Outcome, instruction_id: str, stage: Any) -> GenerationDrop:
    return GenerationDrop(
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
) -> AsyncIterator[Baseline | GenerationDrop]:
    """Baseline response y_w = G(x) for each instruction; yields as requests finish."""
    reqs = (baseline_request(i, model=model, params=params) async for i in as_async(instructions))
    async for outcome in scheduler.run(reqs, label="baseline"):
        inst: Instruction = outcome.request.metadata["instruction"]
        choice = _first_choice(outcome)
        if choice is None:
            yield _api_drop(outcome, inst.id, "baseline")
            continue
        text, finish = choice
        if not text.strip():
            yield GenerationDrop(
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


async def generate_worse(
    scheduler: Scheduler,
    baselines: Iterable[Baseline] | AsyncIterable[Baseline],
    *,
    model: str,
    template: Template,
    params: SamplingParams,
) -> AsyncIterator[ResponsePair | GenerationDrop]:
    """Worse response y_l via a modified instruction x' for each baseline; yields pairs or drops."""
    from ste_prompts import ParseFailure, get_parser

    parse = get_parser(template.parser)
    reqs = (
        worse_request(b, model=model, template=template, params=params)
        async for b in as_async(baselines)
    )
    async for outcome in scheduler.run(reqs, label="worse"):
        base: Baseline = outcome.request.metadata["baseline"]
        choice = _first_choice(outcome)
        if choice is None:
            yield _api_drop(outcome, base.instruction_id, "worse")
            continue
        text, finish = choice
        result = parse(text)
        if isinstance(result, ParseFailure):
            truncated = finish == "length"
            yield GenerationDrop(
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
            yield GenerationDrop(
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
