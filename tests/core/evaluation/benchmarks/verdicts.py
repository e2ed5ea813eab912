"""Judgement records for the pairwise benchmark tests: what a judge decided in each order."""

from __future__ import annotations

from ste_core.records import Drop, Judgement, Order

AB, BA = Order.AB, Order.BA
_TEXT = {"A": "A is better. [[A]]", "B": "B is better. [[B]]", "tie": "Equal. [[C]]"}


def j(pid: str, order: Order, verdict: str | None, model: str = "m") -> Judgement:
    """A judgement; verdict None = an answer without a usable marker."""
    return Judgement(
        pair_id=pid,
        order=order,
        sample_index=0,
        text=_TEXT.get(verdict or "", "I cannot tell."),
        verdict=verdict,  # type: ignore[arg-type]
        judge_model=model,
        template="judge_short",
    )


def fail(pid: str, order: Order) -> Drop:
    return Drop(
        pair_id=pid,
        order=order,
        sample_index=0,
        stage="evaluate",
        reason="api_error",
        error_type="Timeout",
        message="slow",
    )


def picks(pid: str, first: str | None, second: str | None) -> list[Judgement]:
    """Both orders of `pid` by what the judge picked: "chosen", "rejected", "tie" or None."""

    def verdict(order: Order, pick: str | None) -> str | None:
        if pick in (None, "tie"):
            return pick
        right = order.correct_verdict
        return right if pick == "chosen" else ("B" if right == "A" else "A")

    return [j(pid, AB, verdict(AB, first)), j(pid, BA, verdict(BA, second))]
