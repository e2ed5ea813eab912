"""The solve stage (ste_core.stages.solve): k solutions per problem, checked, one right and one
wrong make a pair; and the mix stage's sizes (ste_core.stages.mix)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from ste_core.answers import check_numeric
from ste_core.errors import PermanentProviderError
from ste_core.records import ChatRequest, Drop, Instruction, ResponsePair, SamplingParams
from ste_core.stages.mix import mix_sizes
from ste_core.stages.solve import generate_solution_pairs
from ste_prompts import format_solution, get_template
from tests.core.stages.scripted import Scripted, _sched

#: problem -> the answers its k = 4 solutions state ("-": a solution with no answer)
SCRIPT = {
    "What is 2 + 2?": ["5", "4", "4", "3"],  # right and wrong: a pair of sample 1 and sample 0
    "What is 3 + 3?": ["6", "6", "-", "6"],  # every readable answer right: no wrong one
    "What is 4 + 4?": ["7", "-", "9", "-"],  # nothing right
    "What is 5 + 5?": ["-", "-", "-", "10"],  # one right, the rest unanswered: not a pair
    "Which colour?": ["4", "5", "6", "7"],  # the reference is no number
    "Fail please": [],
}
ANSWERS = {
    "What is 2 + 2?": "4",
    "What is 3 + 3?": "6",
    "What is 4 + 4?": "8",
    "What is 5 + 5?": "10",
    "Which colour?": "blue",
    "Fail please": "1",
}


def _answer(request: ChatRequest) -> Any:
    problem = next(p for p in SCRIPT if p in request.messages[-1].content)
    if not SCRIPT[problem]:
        return PermanentProviderError("bad request", provider="test", status=400)
    return [
        "I give up." if a == "-" else format_solution(f"Working on it, try {k}.", a)
        for k, a in enumerate(SCRIPT[problem])
    ]


async def _run(finish: str = "stop") -> tuple[dict[str, ResponsePair | Drop], Counter[str]]:
    problems = [Instruction.from_text(t, answer=a) for t, a in ANSWERS.items()]
    tally: Counter[str] = Counter()
    backend = Scripted(_answer, finish=finish)
    got = [
        r
        async for r in generate_solution_pairs(
            _sched(backend),
            problems,
            model="g",
            template=get_template("solve"),
            params=SamplingParams(temperature=0.8),
            samples=4,
            checker=check_numeric,
            tally=tally,
        )
    ]
    assert {r.params.n for r in backend.seen} == {4}  # one request of k samples per problem
    by_text = {p.id: p.text for p in problems}
    return {by_text[r.instruction_id]: r for r in got}, tally  # type: ignore[index]


async def test_a_right_and_a_wrong_solution_make_a_pair_and_the_rest_are_counted_drops() -> None:
    got, tally = await _run()
    pair = got["What is 2 + 2?"]
    assert isinstance(pair, ResponsePair) and pair.recipe == "verifiable"
    assert pair.chosen.endswith("Answer: 4") and "try 1" in pair.chosen  # the first right one
    assert pair.rejected.endswith("Answer: 5") and "try 0" in pair.rejected  # the first wrong one
    assert pair.metadata == {
        "generator": "g",
        "reference": "4",
        "chosen_answer": "4",
        "rejected_answer": "5",
    }
    reasons = {p: r.reason for p, r in got.items() if isinstance(r, Drop)}
    assert reasons == {
        "What is 3 + 3?": "no_incorrect_solution",
        "What is 4 + 4?": "no_correct_solution",
        "What is 5 + 5?": "no_incorrect_solution",  # an unanswered solution is not a wrong one
        "Which colour?": "bad_reference",
        "Fail please": "api_error",
    }
    assert "answers: 7, 9" in got["What is 4 + 4?"].message  # type: ignore[union-attr]
    assert tally == Counter(correct=6, incorrect=4, unparseable=6, bad_reference=4)


async def test_solutions_cut_off_at_max_tokens_are_neither_right_nor_wrong() -> None:
    got, tally = await _run(finish="length")
    assert all(isinstance(r, Drop) for r in got.values())
    assert got["What is 2 + 2?"].reason == "no_correct_solution"  # type: ignore[union-attr]
    assert tally == Counter(truncated=20)


@pytest.mark.parametrize(
    ("instruction_pairs", "verifiable_pairs", "ratio", "kept"),
    [
        (70, 16, 0.25, (48, 16)),  # problems are scarce: all kept, instructions cut to 3:1
        (10, 100, 0.5, (10, 10)),  # instructions are scarce
        (30, 10, 0.25, (30, 10)),  # exactly the ratio: all kept
        (5, 0, 0.3, (0, 0)),  # no problem pair: nothing can keep the ratio
        (7, 3, 0.5, (3, 3)),
    ],
)
def test_mix_sizes_keep_the_ratio(
    instruction_pairs: int, verifiable_pairs: int, ratio: float, kept: tuple[int, int]
) -> None:
    assert mix_sizes(instruction_pairs, verifiable_pairs, ratio) == kept


def test_mix_sizes_refuse_a_ratio_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        mix_sizes(1, 1, 1.0)
