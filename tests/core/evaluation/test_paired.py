"""paired_comparison on constructed examples."""

from __future__ import annotations

import pytest

from ste_core.evaluation import paired_comparison, score_pairs
from ste_core.records import EvalScore, Judgement, Order, ResponsePair


def scores(verdicts: dict[str, str | None], mode: str = "single") -> object:
    pairs = [ResponsePair(id=k, instruction="q", chosen="good", rejected="bad") for k in verdicts]
    judged = []
    for k, v in verdicts.items():
        orders = [Order.AB, Order.BA] if mode == "both" else [Order.AB]
        for o in orders:
            verdict = v if o is Order.AB else {"A": "B", "B": "A"}.get(v or "", v)
            judged.append(
                Judgement(
                    pair_id=k,
                    order=o,
                    sample_index=0,
                    text="",
                    verdict=verdict,
                    judge_model="m",
                    template="t",
                )
            )
    return score_pairs(pairs, judged, mode=mode)  # type: ignore[arg-type]


def test_mcnemar_on_binary_items() -> None:
    # a right on items 0-4; b right on 0-8: 4 discordant items, all for b
    a = scores({str(i): ("A" if i < 5 else "B") for i in range(10)})
    b = scores({str(i): ("A" if i < 9 else "B") for i in range(10)})
    t = paired_comparison(a, b)  # auto -> McNemar (all scores 0/1)
    assert t.method == "mcnemar"
    assert (t.b_better, t.a_better, t.n_common) == (4, 0, 10)
    assert t.p_value == pytest.approx(2 / 16)  # 2 * 0.5**4
    assert t.difference == pytest.approx(0.4)
    assert t.accuracy_a == 0.5 and t.accuracy_b == 0.9
    assert t.ci_low <= 0.4 <= t.ci_high


def test_only_common_items_are_compared() -> None:
    a = scores({"x": "A", "y": "B", "only_a": "A"})
    b = scores({"x": "A", "y": "A", "only_b": "B"})
    t = paired_comparison(a, b)
    assert (t.n_common, t.n_only_a, t.n_only_b) == (2, 1, 1)
    assert t.difference == pytest.approx(0.5)


def test_fractional_scores_use_the_sign_flip_test() -> None:
    a = scores({str(i): ("A" if i % 2 else None) for i in range(20)})  # 1 or 0.5
    b = scores({str(i): "A" for i in range(20)})
    t = paired_comparison(a, b, method="auto", seed=1)
    assert t.method == "sign-flip" and t.exact
    assert t.difference == pytest.approx(0.25)
    # 10 items +0.5, none worse: exact two-sided p = 2 / 2**10
    assert 0 < t.ci_low < 0.25 < t.ci_high and t.p_value == pytest.approx(2 / 1024)
    with pytest.raises(ValueError, match="binary"):
        paired_comparison(a, b, method="mcnemar")


def _item_scores(values: list[float]) -> EvalScore:
    """An EvalScore that holds only these per-item scores (what a paired test reads)."""
    n = len(values)
    return EvalScore(
        accuracy=sum(values) / n,
        ci_low=0.0,
        ci_high=1.0,
        n_items=n,
        n_judgements=2 * n,
        mode="both",
        item_scores={str(i): v for i, v in enumerate(values)},
    )


def test_the_issues_examples_are_no_longer_significant() -> None:
    # Issue 14: 3 items +0.5 and 2 unchanged gave p = 0.013 by the bootstrap; one item +0.5
    # gave p = 0.001. By flipping signs: 2 of the 8 patterns are as extreme, and 2 of 2.
    before = _item_scores([0.5, 0.5, 0.5, 1.0, 0.0])
    after = _item_scores([1.0, 1.0, 1.0, 1.0, 0.0])
    t = paired_comparison(before, after, seed=7)
    assert t.method == "sign-flip" and t.exact and t.p_value == pytest.approx(0.25)
    one = paired_comparison(_item_scores([0.5, 1.0]), _item_scores([1.0, 1.0]))
    assert one.p_value == pytest.approx(1.0)


def test_no_paired_test_without_an_accuracy() -> None:
    ok = _item_scores([1.0, 0.0])
    withheld = ok.model_copy(update={"accuracy": None, "ci_low": None, "ci_high": None})
    with pytest.raises(ValueError, match="no paired test"):
        paired_comparison(ok, withheld)


def test_identical_judges_have_p_one() -> None:
    a = scores({str(i): ("A" if i % 3 else "B") for i in range(12)}, mode="both")
    t = paired_comparison(a, a, method="sign-flip")
    assert t.difference == 0 and t.p_value == 1.0
