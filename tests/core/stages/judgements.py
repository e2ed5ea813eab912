"""Judgements and drops for the selection and training-data tests
(`from tests.core.stages.judgements import J, _judgements`)."""

from __future__ import annotations

from ste_core.records import Drop, Judgement, Order


def J(pid: str, order: str, k: int, verdict: str | None, text: str | None = None) -> Judgement:
    return Judgement(
        pair_id=pid,
        order=Order(order),
        sample_index=k,
        text=text or f"{pid}/{order}/{k}: [[{verdict}]]",
        verdict=verdict,  # type: ignore[arg-type]
        judge_model="m",
        template="judge_short",
    )


def F(pid: str, order: str, k: int) -> Drop:
    return Drop(
        pair_id=pid,
        order=Order(order),
        sample_index=k,
        stage="judge",
        reason="api_error",
        error_type="X",
        message="boom",
    )


def _judgements() -> list[Judgement | Drop]:
    return [
        # p1: AB correct is A; BA correct is B
        J("p1", "AB", 0, "A"),
        J("p1", "AB", 1, "B"),
        J("p1", "AB", 2, "A"),
        J("p1", "BA", 0, "A"),
        J("p1", "BA", 1, None),
        J("p1", "BA", 2, "tie"),
        # p2: all correct
        J("p2", "AB", 0, "A"),
        J("p2", "BA", 0, "B"),
        # p3: one failure, one correct
        F("p3", "AB", 0),
        J("p3", "AB", 1, "A"),
    ]
