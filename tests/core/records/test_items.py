"""Item records (ste_core.records.items): instructions, pairs, orders, judgements."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ste_core import Instruction, Judgement, Order, ResponsePair


def test_instruction_ids_are_content_hashes() -> None:
    assert Instruction.from_text("hi").id == Instruction.from_text("hi").id
    assert Instruction.from_text("hi").id != Instruction.from_text("hi!").id


def test_identical_pair_is_rejected() -> None:
    with pytest.raises(ValidationError, match="identical"):
        ResponsePair(id="p", instruction="q", chosen="same ", rejected=" same")


def test_orders_show_responses_and_define_the_correct_verdict() -> None:
    pair = ResponsePair(id="p", instruction="q", chosen="good", rejected="bad")
    assert pair.shown(Order.AB) == ("good", "bad") and Order.AB.correct_verdict == "A"
    assert pair.shown(Order.BA) == ("bad", "good") and Order.BA.correct_verdict == "B"


@pytest.mark.parametrize(
    ("order", "verdict", "score"),
    [
        ("AB", "A", 1.0),
        ("AB", "B", 0.0),
        ("BA", "B", 1.0),
        ("BA", "A", 0.0),
        ("AB", "tie", 0.5),
        ("BA", None, 0.5),
    ],
)
def test_judgement_scores(order: str, verdict: str | None, score: float) -> None:
    j = Judgement(
        pair_id="p",
        order=Order(order),
        sample_index=0,
        text="t",
        verdict=verdict,
        judge_model="m",
        template="judge_short",
    )
    assert j.picked_chosen == score
