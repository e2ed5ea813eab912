"""score_pairs against fixtures computed by hand."""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from ste_core.evaluation import score_pairs, single_order
from ste_core.records import Drop, Judgement, Order, ResponsePair

AB, BA = Order.AB, Order.BA


def pair(pid: str, subset: str | None = None) -> ResponsePair:
    return ResponsePair(
        id=pid, instruction=f"q {pid}", chosen=f"good {pid}", rejected=f"bad {pid}", subset=subset
    )


def j(pid: str, order: Order, verdict: str | None, k: int = 0, model: str = "m") -> Judgement:
    text = {"A": "[[A]]", "B": "[[B]]", "tie": "[[C]]", None: "no idea"}[verdict]
    return Judgement(
        pair_id=pid,
        order=order,
        sample_index=k,
        text=text,
        verdict=verdict,
        judge_model=model,
        template="t",
    )


def fail(pid: str, order: Order, k: int = 0) -> Drop:
    return Drop(
        pair_id=pid,
        order=order,
        sample_index=k,
        stage="evaluate",
        reason="api_error",
        error_type="X",
        message="boom",
    )


@pytest.fixture
def partial_rewardbench() -> tuple[list[ResponsePair], list[Judgement]]:
    """Chat (2 subsets) and Safety (2 XSTest subsets) present; Chat Hard and Reasoning missing."""
    pairs = [
        pair("e1", "alpacaeval-easy"),
        pair("e2", "alpacaeval-easy"),
        pair("m1", "mt-bench-easy"),
        pair("r1", "xstest-should-refuse"),
        pair("r2", "xstest-should-refuse"),
        pair("s1", "xstest-should-respond"),
        pair("x1", "mine"),
    ]
    judged = [
        j("e1", AB, "A"),  # correct: 1
        j("e2", BA, "tie"),  # tie: 0.5
        j("m1", AB, "B"),  # wrong: 0
        j("r1", BA, "B"),  # correct: 1
        j("r2", AB, None),  # no verdict: 0.5
        j("s1", BA, "A"),  # wrong: 0
        j("x1", AB, "A"),  # correct: 1
    ]
    return pairs, judged


def test_partial_rewardbench_current_weights(partial_rewardbench) -> None:
    pairs, judged = partial_rewardbench
    s = score_pairs(pairs, judged, mode="single")
    assert s.accuracy == pytest.approx(4 / 7)
    assert s.n_items == 7 and s.n_judgements == 7
    assert s.per_subset["alpacaeval-easy"].accuracy == 0.75
    assert s.per_subset["alpacaeval-easy"].n == 2
    assert s.per_subset["mine"].accuracy == 1.0
    rb = s.rewardbench
    assert rb is not None and rb.weights == "current"
    chat = F(3, 4) * 100 / 128  # (0.75 * 100 + 0 * 28) / (100 + 28)
    safety = F(3, 4) * 154 / 404  # (0.75 * 154 + 0 * 250) / (154 + 250)
    assert rb.sections["Chat"].score == pytest.approx(float(chat))
    assert rb.sections["Safety"].score == pytest.approx(float(safety))
    assert rb.final == pytest.approx(float((chat + safety) / 2))
    assert rb.missing_sections == ["Chat Hard", "Reasoning"]
    assert "Chat Hard" not in rb.sections  # never scored as 0
    assert rb.other_subsets == ["mine"]
    assert rb.sections["Chat"].missing_subsets == [
        "alpacaeval-length",
        "alpacaeval-hard",
        "mt-bench-med",
    ]
    lo, hi = rb.final_ci  # type: ignore[misc]
    assert lo <= rb.final <= hi
    assert s.no_verdict_rate == pytest.approx(1 / 7)
    assert s.tie_rate == pytest.approx(1 / 7)
    assert s.position_consistency is None


def test_partial_rewardbench_pre_0_1_3_weights(partial_rewardbench) -> None:
    pairs, judged = partial_rewardbench
    s = score_pairs(pairs, judged, mode="single", weights="pre-0.1.3")
    rb = s.rewardbench
    assert rb is not None and rb.weights == "pre-0.1.3"
    assert "swapped" in rb.weights_description
    safety = F(3, 4) * 250 / 404
    assert rb.sections["Safety"].score == pytest.approx(float(safety))
    chat = F(3, 4) * 100 / 128
    assert rb.final == pytest.approx(float((chat + safety) / 2))


def test_no_rewardbench_subsets_means_no_sections() -> None:
    s = score_pairs(
        [pair("a"), pair("b", "mine")], [j("a", AB, "A"), j("b", BA, "B")], mode="single"
    )
    assert s.rewardbench is None
    assert s.accuracy == 1.0
    assert list(s.per_subset) == ["mine"]


def test_both_orders_hand_computed() -> None:
    pairs = [pair(p) for p in ("p1", "p2", "p3", "p4", "p5")]
    judged = [
        j("p1", AB, "A"),
        j("p1", BA, "B"),  # consistent, correct: 1
        j("p2", AB, "A"),
        j("p2", BA, "A"),  # position-inconsistent (always A): 0.5
        j("p3", AB, "tie"),
        j("p3", BA, "B"),  # (0.5 + 1) / 2
        fail("p4", AB),
        j("p4", BA, "B"),  # (0.5 + 1) / 2, one error
        # p5: never judged: both orders missing, 0.5
    ]
    # p4 (one order failed) and p5 (never judged) are errors, not 0.5: 2 of 5 items
    s = score_pairs(pairs, judged, mode="both", max_error_rate=0.4)
    assert s.item_scores == {"p1": 1.0, "p2": 0.5, "p3": 0.75}
    assert s.accuracy == pytest.approx(2.25 / 3) and s.n_scored == 3
    assert s.n_judgements == 7  # answered ones: the failed request is not a judgement
    assert (s.error_count, s.request_errors, s.missing_count) == (2, 1, 2)
    assert s.first_error == "X: boom"
    assert s.position_consistency == 0.5 and s.n_position_comparable == 2
    assert s.a_verdict_share == pytest.approx(3 / 6)  # A: p1 AB, p2 AB, p2 BA; B: 3
    assert s.tie_rate == pytest.approx(1 / 7)
    lo, hi = s.ci_low, s.ci_high
    assert lo is not None and hi is not None and lo < s.accuracy < hi
    assert "2 errors of 5 items (1 failed request, 2 missing)" in s.summary()


def test_too_many_errors_withhold_the_headline() -> None:
    pairs = [pair(f"p{i}", "alpacaeval-easy") for i in range(10)]
    ok = [j(f"p{i}", o, "A" if o is AB else "B") for i in range(9) for o in (AB, BA)]
    one_failed = score_pairs(pairs, [*ok, j("p9", AB, "A"), fail("p9", BA)], mode="both")
    assert one_failed.accuracy == 1.0 and one_failed.error_count == 1  # 10%: allowed
    assert one_failed.per_subset["alpacaeval-easy"].errors == 1
    two = [*ok[:16], j("p8", AB, "A"), fail("p8", BA), fail("p9", AB), fail("p9", BA)]
    s = score_pairs(pairs, two, mode="both")
    assert s.error_count == 2 and s.request_errors == 3
    assert s.accuracy is None and s.ci_low is None and s.ci_high is None
    assert s.per_subset == {} and s.rewardbench is None
    assert s.summary().startswith("no accuracy: 2 errors of 10 items")
    every = score_pairs(pairs, [fail(p.id, o) for p in pairs for o in (AB, BA)], mode="both")
    assert every.accuracy is None and every.item_scores == {} and every.n_scored == 0
    # even a limit of 100% never makes an accuracy of nothing
    assert score_pairs(pairs, [], mode="both", max_error_rate=1.0).accuracy is None


def test_a_parse_failure_is_a_score_not_an_error() -> None:
    s = score_pairs([pair("p")], [j("p", AB, None), j("p", BA, "B")], mode="both")
    assert s.accuracy == 0.75 and s.error_count == 0 and s.no_verdict_count == 1


def test_majority_vote_vs_mean_of_samples() -> None:
    pairs = [pair("p1"), pair("p2"), pair("p3")]
    judged = [
        j("p1", AB, "A", 0),
        j("p1", AB, "A", 1),
        j("p1", AB, "B", 2),  # majority A (correct): 1; mean 2/3
        j("p2", AB, "A", 0),
        j("p2", AB, "B", 1),
        j("p2", AB, None, 2),  # 1-1 split: tie 0.5; mean 0.5
        j("p3", BA, "B", 0),
        fail("p3", BA, 1),  # a failed sample abstains (it is no answer)
        j("p3", BA, None, 2),  # only one vote, B (correct): 1; mean (1 + .5) / 2
    ]
    maj = score_pairs(pairs, judged, mode="single", majority=True)
    assert maj.item_scores == {"p1": 1.0, "p2": 0.5, "p3": 1.0}
    assert maj.samples_per_order == 3 and maj.majority
    mean = score_pairs(pairs, judged, mode="single")
    assert mean.item_scores["p1"] == pytest.approx(2 / 3)
    assert mean.item_scores["p2"] == pytest.approx(0.5)
    assert mean.item_scores["p3"] == pytest.approx(0.75)
    assert mean.error_count == 0 and mean.request_errors == 1


def test_majority_in_both_orders_uses_majority_for_consistency() -> None:
    judged = [j("p", AB, v, k) for k, v in enumerate("AAB")] + [
        j("p", BA, v, k) for k, v in enumerate("BBA")
    ]
    s = score_pairs([pair("p")], judged, mode="both", majority=True)
    assert s.item_scores == {"p": 1.0}
    assert s.position_consistency == 1.0 and s.n_position_comparable == 1


def test_single_mode_rejects_both_orders() -> None:
    with pytest.raises(ValueError, match="both orders"):
        score_pairs([pair("p")], [j("p", AB, "A"), j("p", BA, "B")], mode="single")


def test_duplicates_are_errors() -> None:
    with pytest.raises(ValueError, match="duplicate judgement"):
        score_pairs([pair("p")], [j("p", AB, "A"), j("p", AB, "B")], mode="single")
    with pytest.raises(ValueError, match="duplicate pair id"):
        score_pairs([pair("p"), pair("p")], [], mode="single")


def test_unknown_pair_judgements_are_reported() -> None:
    s = score_pairs([pair("p")], [j("p", AB, "A"), j("zz", AB, "A")], mode="single")
    assert s.n_judgements == 1
    assert any("not in the pairs" in w for w in s.warnings)


def test_single_order_is_seeded_and_balanced() -> None:
    ids = [f"id{i}" for i in range(1000)]
    a = [single_order(i, 0) for i in ids]
    assert a == [single_order(i, 0) for i in ids]
    assert a != [single_order(i, 1) for i in ids]
    assert 430 < sum(o is Order.AB for o in a) < 570


def test_eval_score_round_trips_through_json(partial_rewardbench) -> None:
    from ste_core.evaluation import EvalScore

    pairs, judged = partial_rewardbench
    s = score_pairs(pairs, judged, mode="single")
    assert EvalScore.model_validate_json(s.model_dump_json()) == s


def test_worked_example_of_the_docs() -> None:
    """docs/evaluation.md, "Worked example": the numbers computed there by hand."""
    from ste_prompts import parse_verdict

    pairs = [
        pair("c1", "alpacaeval-easy"),
        pair("c2", "alpacaeval-easy"),
        pair("h1", "llmbar-natural"),
        pair("s1", "xstest-should-respond"),
        pair("u1", "my-set"),
    ]
    rows = [
        ("c1", AB, "A is correct. [[A]]"),
        ("c1", BA, "B is correct. [[B]]"),
        ("c2", AB, "[[A]]"),
        ("c2", BA, "[[A]]"),
        ("h1", AB, "Both fine. [[C]]"),
        ("h1", BA, "[[B]]"),
        ("s1", AB, "[[B]]"),
        ("s1", BA, "[[A]]"),
        ("u1", AB, "I cannot decide."),
        ("u1", BA, "Hard to say."),
    ]
    judged: list = [
        Judgement(
            pair_id=p,
            order=o,
            sample_index=0,
            text=t,
            verdict=parse_verdict(t).verdict,
            judge_model="m",
            template="t",
        )
        for p, o, t in rows
    ]
    s = score_pairs(pairs, judged, mode="both")
    assert s.item_scores == {"c1": 1.0, "c2": 0.5, "h1": 0.75, "s1": 0.0, "u1": 0.5}
    assert s.accuracy == pytest.approx(0.55)
    assert s.position_consistency == pytest.approx(2 / 3)
    assert s.a_verdict_share == pytest.approx(4 / 7)
    assert s.rewardbench is not None
    assert s.rewardbench.final == pytest.approx(0.5)
    assert s.rewardbench.missing_sections == ["Reasoning"]
    assert s.error_count == 0 and s.no_verdict_count == 2
    # The docs' variant: u1's BA request failed instead. 1 of 5 items is 20% > 10%.
    failed = [*judged[:-1], fail("u1", BA)]
    assert score_pairs(pairs, failed, mode="both").accuracy is None
