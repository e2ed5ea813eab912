"""Records validate what flows between stages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ste_core import ChatRequest, Completion, Instruction, Judgement, Order, ResponsePair
from ste_core.records import FineTuneSpec, content_hash


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


def test_sampling_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "user", "content": "x"}], temperature=-1)
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "user", "content": "x"}], n=0)
    with pytest.raises(ValidationError):
        ChatRequest.of("m", [{"role": "robot", "content": "x"}])


def test_completion_needs_a_reason_per_text() -> None:
    with pytest.raises(ValidationError):
        Completion(texts=("a", "b"), finish_reasons=("stop",))


def test_records_round_trip_through_json() -> None:
    req = ChatRequest.of("m", [{"role": "user", "content": "{x} $y [[A]]"}], n=3, stop=["\n"])
    assert ChatRequest.model_validate_json(req.model_dump_json()) == req
    spec = FineTuneSpec(base_model="b", suffix="s" * 40)
    assert FineTuneSpec.model_validate_json(spec.model_dump_json()) == spec
    with pytest.raises(ValidationError):
        FineTuneSpec(base_model="b", suffix="s" * 41)


def test_content_hash_is_order_independent_for_dict_keys() -> None:
    assert content_hash({"a": 1, "b": 2}) == content_hash({"b": 2, "a": 1})
    assert content_hash("a", "b") != content_hash("b", "a")
