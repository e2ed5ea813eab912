"""The model-calling stages through a real Scheduler: generation drops, judging, classifying."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from ste_core.backends import InferenceBackend, InferenceCapabilities
from ste_core.engine.limits import Limits
from ste_core.engine.scheduler import Scheduler
from ste_core.errors import ConfigurationError, PermanentProviderError
from ste_core.evaluation.scoring import single_order
from ste_core.records import (
    Baseline,
    ChatRequest,
    Completion,
    Drop,
    Instruction,
    Judgement,
    Order,
    ResponsePair,
    SamplingParams,
    Usage,
)
from ste_core.stages.baseline import generate_baselines
from ste_core.stages.classify import classify_instructions, pick_balanced, quotas
from ste_core.stages.judge import judge_pairs, orders_for
from ste_core.stages.worse import generate_worse
from ste_prompts import format_category, format_worse_response, get_template
from tests.core.helpers import ScriptedInference

WORSE = get_template("worse_response")
JUDGE = get_template("judge_short")
FAST = Limits(max_retries=1, backoff_initial_s=0.0, backoff_max_s=0.0)


class Scripted(InferenceBackend):
    """Answers with `answer(request) -> str | list[str] | Exception`."""

    name = "test"
    capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=None)

    def __init__(self, answer: Callable[[ChatRequest], Any], finish: str = "stop") -> None:
        super().__init__()
        self.answer, self.finish, self.seen = answer, finish, []

    async def complete(self, request: ChatRequest) -> Completion:
        self.seen.append(request)
        out = self.answer(request)
        if isinstance(out, Exception):
            raise out
        texts = tuple(out) if isinstance(out, list) else (out,) * request.params.n
        return Completion(
            texts=texts,
            finish_reasons=(self.finish,) * len(texts),
            usage=Usage(prompt_tokens=10, completion_tokens=4),
        )


def _sched(backend: InferenceBackend) -> Scheduler:
    return Scheduler(backend, limits=FAST)


def _base(i: int, response: str = "The answer is 4.") -> Baseline:
    return Baseline(instruction_id=f"i{i}", instruction=f"What is 2+2? ({i})", response=response)


async def test_baselines_and_api_errors() -> None:
    def answer(req: ChatRequest) -> Any:
        text = req.messages[-1].content
        if "fail" in text:
            return PermanentProviderError("bad request", provider="test", status=400)
        return "" if "empty" in text else f"answer to {text}"

    insts = [Instruction.from_text(t) for t in ("ok one", "please fail", "empty please")]
    got = [
        r
        async for r in generate_baselines(
            _sched(Scripted(answer)), insts, model="g", params=SamplingParams()
        )
    ]
    by = {r.instruction_id: r for r in got}
    assert isinstance(by[insts[0].id], Baseline) and by[insts[0].id].response == "answer to ok one"
    fail = by[insts[1].id]
    assert isinstance(fail, Drop) and fail.reason == "api_error"
    assert fail.error_type == "PermanentProviderError"
    assert by[insts[2].id].reason == "empty_baseline"  # type: ignore[union-attr]


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


def _pairs(n: int) -> list[ResponsePair]:
    return [
        ResponsePair(id=f"p{i}", instruction=f"q{i}", chosen=f"good {i}", rejected=f"bad {i}")
        for i in range(n)
    ]


def _picks_good(req: ChatRequest) -> list[str]:
    text = req.messages[-1].content
    a_good = text.index("good") < text.index("bad")
    verdict = "[[A]]" if a_good else "[[B]]"
    return [f"sample {k}: {verdict}" for k in range(req.params.n)]


async def test_judge_pairs_both_orders_with_samples() -> None:
    backend = Scripted(_picks_good)
    got = [
        r
        async for r in judge_pairs(
            _sched(backend),
            _pairs(3),
            model="j",
            template=JUDGE,
            params=SamplingParams(temperature=0.7),
            samples_per_order=2,
        )
    ]
    assert len(got) == 3 * 2 * 2 and all(isinstance(r, Judgement) for r in got)
    assert all(r.correct for r in got)  # type: ignore[union-attr]
    assert {(r.pair_id, r.order, r.sample_index) for r in got} == {
        (f"p{i}", o, k) for i in range(3) for o in Order for k in range(2)
    }
    assert len(backend.seen) == 6 and all(r.params.n == 2 for r in backend.seen)
    # A request's token usage is carried once, by its sample 0.
    assert all(r.usage.total_tokens == (14 if r.sample_index == 0 else 0) for r in got)


async def test_judge_pairs_single_order_is_seeded_and_matches_scoring() -> None:
    pairs = _pairs(20)
    got = [
        r
        async for r in judge_pairs(
            _sched(Scripted(_picks_good)),
            pairs,
            model="j",
            template=JUDGE,
            params=SamplingParams(),
            orders="single",
            seed=5,
        )
    ]
    assert len(got) == 20
    assert all(r.order == single_order(r.pair_id, 5) for r in got)
    assert {r.order for r in got} == {Order.AB, Order.BA}
    assert orders_for("p1", "single", 5) == orders_for("p1", "single", 5)


async def test_judge_failures_and_unparsable_and_missing_choices() -> None:
    def answer(req: ChatRequest) -> Any:
        text = req.messages[-1].content
        if "good 0" in text:
            return PermanentProviderError("model not found", provider="test", status=404)
        if "good 1" in text:
            return ["no marker here"]  # 1 of 2 samples, unparsable
        return ["[[A]] and [[B]]", "[[A]]"]

    got = [
        r
        async for r in judge_pairs(
            _sched(Scripted(answer)),
            _pairs(3),
            model="j",
            template=JUDGE,
            params=SamplingParams(temperature=0.5),
            samples_per_order=2,
        )
    ]
    fails = [r for r in got if isinstance(r, Drop)]
    assert {(f.pair_id, f.error_type) for f in fails} == {
        ("p0", "PermanentProviderError"),
        ("p1", "MissingChoice"),
    }
    assert len([f for f in fails if f.pair_id == "p0"]) == 4  # 2 orders x 2 samples
    p1 = [r for r in got if isinstance(r, Judgement) and r.pair_id == "p1"]
    assert all(r.verdict is None and r.parse_reason == "no verdict marker" for r in p1)
    p2 = sorted(
        (r for r in got if isinstance(r, Judgement) and r.pair_id == "p2"),
        key=lambda r: (r.order.value, r.sample_index),
    )
    assert [r.verdict for r in p2] == [None, "A", None, "A"]
    assert "conflicting" in p2[0].parse_reason


async def test_judge_pairs_refuses_a_non_judge_template() -> None:
    with pytest.raises(ConfigurationError, match="judge template"):
        async for _ in judge_pairs(
            _sched(Scripted(_picks_good)),
            _pairs(1),
            model="j",
            template=WORSE,
            params=SamplingParams(),
        ):
            pass


async def test_judge_requests_are_split_when_max_n_is_lower() -> None:
    class OneAtATime(Scripted):
        capabilities: ClassVar[InferenceCapabilities] = InferenceCapabilities(max_n=1)

    backend = OneAtATime(_picks_good)
    got = [
        r
        async for r in judge_pairs(
            _sched(backend),
            _pairs(1),
            model="j",
            template=JUDGE,
            params=SamplingParams(temperature=0.7),
            samples_per_order=3,
        )
    ]
    assert len(got) == 6 and sorted({r.sample_index for r in got}) == [0, 1, 2]
    assert len(backend.seen) == 6 and all(r.params.n == 1 for r in backend.seen)


async def test_classify_then_balanced_pick() -> None:
    labels = {"math": "math", "code": "coding", "logic": "reasoning", "poem": "writing"}

    def answer(req: ChatRequest) -> str:
        text = req.messages[-1].content
        word = next(w for w in labels if f"{w} task" in text)
        if word == "poem" and "7" in text:
            return "I cannot decide."
        return format_category(labels[word], "hard" if "1" in text else "easy")

    insts = [Instruction.from_text(f"{w} task {i}") for w in labels for i in range(8)]
    got = [
        r
        async for r in classify_instructions(
            _sched(Scripted(answer)),
            insts,
            model="c",
            template=get_template("classify_category"),
            params=SamplingParams(),
        )
    ]
    done = [r for r in got if isinstance(r, Instruction)]
    assert len(done) == 31 and len(got) == 32
    counts = {c: sum(1 for r in done if r.category == c) for c in labels.values()}
    assert counts == {"math": 8, "coding": 8, "reasoning": 8, "writing": 7}
    wanted = quotas(counts, ["math", "reasoning", "writing"], per_category=5, balance=True)
    assert wanted == {"math": 5, "reasoning": 5, "writing": 5}
    picked = list(pick_balanced(done, wanted, seed=0))
    assert len(picked) == 15
    assert picked == list(pick_balanced(list(reversed(done)), wanted, seed=0))
    hard = list(pick_balanced(done, {"math": 8}, seed=0, difficulties=["hard"]))
    assert [i.text for i in hard] == ["math task 1"]
    assert quotas(counts, ["math", "writing"], per_category=None, balance=True) == {
        "math": 7,
        "writing": 7,
    }
    assert quotas(counts, ["math", "writing"], per_category=None, balance=False) == {
        "math": 8,
        "writing": 7,
    }
    # A chosen category that never occurs does not empty the selection.
    assert quotas(counts, ["math", "roleplay"], per_category=None, balance=True) == {
        "math": 8,
        "roleplay": 0,
    }


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
