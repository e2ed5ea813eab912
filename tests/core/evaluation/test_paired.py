"""paired_comparison on constructed examples."""

from __future__ import annotations

import pytest

from ste_core.evaluation import paired_comparison, score_pairs
from ste_core.records import Judgement, Order, ResponsePair


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


def test_fractional_scores_use_the_bootstrap() -> None:
    a = scores({str(i): ("A" if i % 2 else None) for i in range(20)})  # 1 or 0.5
    b = scores({str(i): "A" for i in range(20)})
    t = paired_comparison(a, b, method="auto", seed=1)
    assert t.method == "bootstrap"
    assert t.difference == pytest.approx(0.25)
    assert 0 < t.ci_low < 0.25 < t.ci_high and t.p_value < 0.01
    with pytest.raises(ValueError, match="binary"):
        paired_comparison(a, b, method="mcnemar")


def test_identical_judges_have_p_one() -> None:
    a = scores({str(i): ("A" if i % 3 else "B") for i in range(12)}, mode="both")
    t = paired_comparison(a, a, method="bootstrap")
    assert t.difference == 0 and t.p_value == 1.0
