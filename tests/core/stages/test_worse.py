"""The worse-response stage (ste_core.stages.worse): drops are never a fallback to the baseline."""

from __future__ import annotations

from ste_core.records import Baseline, ChatRequest, Drop, Instruction, ResponsePair, SamplingParams
from ste_core.stages.baseline import generate_baselines
from ste_core.stages.worse import generate_worse
from ste_prompts import format_worse_response, get_template
from tests.core.helpers import ScriptedInference
from tests.core.stages.scripted import Scripted, _sched

WORSE = get_template("worse_response")


def _base(i: int, response: str = "The answer is 4.") -> Baseline:
    return Baseline(instruction_id=f"i{i}", instruction=f"What is 2+2? ({i})", response=response)


async def test_worse_response_drops_are_never_a_fallback_to_the_baseline() -> None:
    outputs = {
        "i0": format_worse_response("What is 2+3?", "The answer is 5."),
        "i1": "Sure! Here is a different answer without any sections.",
        "i2": format_worse_response("What is 2+3?", "The answer is 4."),  # same text as baseline
        "i3": format_worse_response("What is 2+2? (3)", "The answer is 5."),  # same instruction
    }

    def answer(req: ChatRequest) -> str:
        for key, out in outputs.items():
            if f"({key[1]})" in req.messages[-1].content:
                return out
        raise AssertionError("unexpected request")

    got = [
        r
        async for r in generate_worse(
            _sched(Scripted(answer)),
            [_base(i) for i in range(4)],
            model="g",
            template=WORSE,
            params=SamplingParams(),
        )
    ]
    by = {r.instruction_id: r for r in got}
    pair = by["i0"]
    assert isinstance(pair, ResponsePair)
    assert pair.chosen == "The answer is 4." and pair.rejected == "The answer is 5."
    assert pair.modified_instruction == "What is 2+3?"
    assert (by["i1"].reason, by["i2"].reason, by["i3"].reason) == (  # type: ignore[union-attr]
        "parse_error",
        "identical",
        "same_instruction",
    )
    assert by["i1"].text == outputs["i1"]  # type: ignore[union-attr]


async def test_truncated_worse_response_is_counted_as_truncated() -> None:
    cut = format_worse_response("What is 2+3?", "The answer").split("### End")[0]
    got = [
        r
        async for r in generate_worse(
            _sched(Scripted(lambda r: cut, finish="length")),
            [_base(0)],
            model="g",
            template=WORSE,
            params=SamplingParams(),
        )
    ]
    assert isinstance(got[0], Drop) and got[0].reason == "truncated"


async def test_scripted_backend_pairs_are_well_formed() -> None:
    """Sanity check of the test backend itself: the fake's worse responses parse."""
    backend = ScriptedInference(unparsable_rate=0.0)
    sched = _sched(backend)
    insts = [Instruction.from_text(f"Describe topic {i} briefly") for i in range(5)]
    bases = [b async for b in generate_baselines(sched, insts, model="g", params=SamplingParams())]
    pairs = [
        p
        async for p in generate_worse(
            sched, bases, model="g", template=WORSE, params=SamplingParams()
        )
    ]
    assert len(pairs) == 5 and all(isinstance(p, ResponsePair) for p in pairs)
