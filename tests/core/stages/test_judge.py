"""The judge stage (ste_core.stages.judge): both orders, samples, failures, split requests."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from ste_core.backends import InferenceCapabilities
from ste_core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermanentProviderError,
    TooManyFailures,
)
from ste_core.evaluation.scoring import single_order
from ste_core.records import ChatRequest, Drop, Judgement, Order, ResponsePair, SamplingParams
from ste_core.stages.judge import judge_pairs, orders_for
from ste_prompts import get_template
from tests.core.stages.scripted import Scripted, _sched

WORSE = get_template("worse_response")
JUDGE = get_template("judge_short")


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


async def test_a_fatal_error_stops_the_stage_at_its_first_request() -> None:
    """A refused key, a model the server does not have, a wrong setting: every other request
    would fail alike (and be paid for where failures are billed), so the first one ends it."""
    for fatal in (
        AuthenticationError("key revoked", provider="test", status=401),
        PermanentProviderError("model 'j' not found", provider="test", status=404),
        ConfigurationError("the model cannot be loaded"),
    ):
        backend = Scripted(lambda req, e=fatal: e)
        with pytest.raises(type(fatal), match=str(fatal).split("] ")[-1]):
            async for _ in judge_pairs(
                _sched(backend, concurrency=1),
                _pairs(10),
                model="j",
                template=JUDGE,
                params=SamplingParams(temperature=0.5),
            ):
                pass
        assert len(backend.seen) == 1


async def test_a_stage_whose_requests_mostly_fail_stops_with_the_first_error() -> None:
    def answer(req: ChatRequest) -> Any:
        if "good 3" in req.messages[-1].content:
            return ["[[A]]"]
        return PermanentProviderError("prompt too long", provider="test", status=400)

    backend = Scripted(answer)
    with pytest.raises(TooManyFailures, match=r"20 of 2\d requests failed.*prompt too long"):
        async for _ in judge_pairs(
            _sched(backend, concurrency=1),
            _pairs(40),
            model="j",
            template=JUDGE,
            params=SamplingParams(temperature=0.5),
        ):
            pass
    assert len(backend.seen) < 30  # stopped, not carried on through all 80


async def test_judge_failures_and_unparsable_and_missing_choices() -> None:
    def answer(req: ChatRequest) -> Any:
        text = req.messages[-1].content
        if "good 0" in text:
            return PermanentProviderError("prompt too long", provider="test", status=400)
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


@pytest.mark.parametrize(
    ("template", "verdict"), [("judge_short", "B"), ("judge_meta_rewardbench", None)]
)
async def test_judge_pairs_reads_verdicts_by_the_templates_rule(template, verdict) -> None:
    # The judge restates the format, then gives its verdict: the last marker counts for ste's
    # template (rule "final"); Meta's rule, declared by Meta's template, sees both markers.
    def answer(req: ChatRequest) -> list[str]:
        return ['Use "[[A]]" if A is better, "[[B]]" if B is better.\nB is right.\n[[B]]']

    got = [
        r
        async for r in judge_pairs(
            _sched(Scripted(answer)),
            _pairs(1),
            model="j",
            template=get_template(template),
            params=SamplingParams(),
            orders="single",
        )
    ]
    assert [r.verdict for r in got] == [verdict]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("template", "verdict"), [("judge_short", None), ("judge_meta_rewardbench", "A")]
)
async def test_a_judgement_cut_off_at_max_tokens_has_no_final_verdict(template, verdict) -> None:
    # Cut off while quoting the format: under ste's rule ("final") the marker is not a verdict;
    # Meta's rule reads markers anywhere, as its reference code does. The file keeps both.
    def answer(req: ChatRequest) -> list[str]:
        return ['I must end with "[[A]]" if A is better. Looking at A, it']

    got = [
        r
        async for r in judge_pairs(
            _sched(Scripted(answer, finish="length")),
            _pairs(1),
            model="j",
            template=get_template(template),
            params=SamplingParams(),
            orders="single",
        )
    ]
    assert [(r.verdict, r.truncated) for r in got] == [(verdict, True)]  # type: ignore[union-attr]
    if verdict is None:
        assert "cut off at max_tokens" in got[0].parse_reason  # type: ignore[union-attr]


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
