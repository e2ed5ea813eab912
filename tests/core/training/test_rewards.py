"""The GRPO rewards (ste_core.training.rewards) on hand-written judgements."""

from __future__ import annotations

import pytest

from ste_core.training.rewards import (
    consistency_rewards,
    correct_rewards,
    format_reward,
    format_rewards,
)
from ste_prompts import parse_verdict


def verdicts(*texts: str) -> list[str | None]:
    return [parse_verdict(t).verdict for t in texts]


def test_correct_means_the_verdict_names_the_better_response() -> None:
    texts = (
        "A answers the question; B does not.\n[[A]]",
        "B is better.\n[[B]]",
        "Both are fine.\n[[C]]",  # a tie is not right
        "I cannot decide.",  # no verdict
        "[[A]] or maybe [[B]]",  # two verdicts: none
    )
    labels = ["A", "A", "A", "B", "B"]
    assert correct_rewards(verdicts(*texts), labels) == [1.0, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="differ in length"):
        correct_rewards(verdicts(*texts), labels[:2])


def test_consistency_pays_only_when_both_orders_are_right() -> None:
    # Pair p: 2 completions per order. Pair q: both right in one slot only.
    pair_ids = ["p", "p", "p", "p", "q", "q", "q", "q"]
    orders = ["AB", "AB", "BA", "BA", "AB", "AB", "BA", "BA"]
    labels = ["A", "A", "B", "B", "A", "A", "B", "B"]
    texts = ["[[A]]", "[[A]]", "[[B]]", "[[B]]", "[[A]]", "[[B]]", "[[B]]", "[[B]]"]
    got = consistency_rewards(verdicts(*texts), labels, pair_ids, orders)
    # q: slot 0 both right; slot 1 AB is wrong, so its BA partner gets nothing either.
    assert got == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    # Rows may come in any order: partners are the k-th of each order, by position.
    shuffled = [3, 0, 2, 1]
    got = consistency_rewards(
        [verdicts(*texts)[i] for i in shuffled],
        [labels[i] for i in shuffled],
        [pair_ids[i] for i in shuffled],
        [orders[i] for i in shuffled],
    )
    assert got == [1.0, 1.0, 1.0, 1.0]


def test_consistency_without_the_other_order_is_not_scored() -> None:
    got = consistency_rewards(
        verdicts("[[A]]", "[[A]]", "[[B]]"), ["A", "A", "B"], ["p", "p", "r"], ["AB", "AB", "BA"]
    )
    assert got == [None, None, None]
    # Three AB completions, two BA: the third AB has no partner.
    got = consistency_rewards(
        verdicts("[[A]]", "[[A]]", "[[A]]", "[[B]]", "[[B]]"),
        ["A", "A", "A", "B", "B"],
        ["p"] * 5,
        ["AB", "AB", "AB", "BA", "BA"],
    )
    assert got == [1.0, 1.0, None, 1.0, 1.0]


@pytest.mark.parametrize(
    ("text", "reward"),
    [
        ("A follows the rubric.\nFinal verdict: [[A]]", 1.0),
        ("[[B]]", 1.0),
        ("Reasoning.\n[[A]]\n\n", 1.0),  # trailing blank lines are fine
        ("Reasoning.\n[[B]] then [[B]] again", 1.0),  # the same verdict, all in the last line
        ("[[A]] is my guess.\nA is better.", 0.0),  # the verdict is not in the last line
        ("I said [[A]] before.\nFinal: [[A]]", 0.0),  # given twice
        ("Reasoning only.", 0.0),
        ("Final: [[A]] and [[B]]", 0.0),  # no single verdict
        ("", 0.0),
    ],
)
def test_format_wants_one_verdict_in_the_last_line(text: str, reward: float) -> None:
    assert format_reward(text, parse_verdict) == reward


def test_format_rewards_use_each_prompts_parser() -> None:
    def shouting(text: str):
        return parse_verdict(text.replace("WINNER: ", "[[").replace("!", "]]"))

    assert format_rewards(["x\nWINNER: A!", "x\nWINNER: A!"], [shouting, parse_verdict]) == [
        1.0,
        0.0,
    ]
