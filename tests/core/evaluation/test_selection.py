"""Checkpoint selection (`evaluation.select_on`): the best judge on the selection items, its
held-out score, and ties to the earlier iteration."""

from __future__ import annotations

from ste_core.evaluation import score_pairs
from ste_core.evaluation.selection import select_judge
from ste_core.records import EvalScore, IterationMetrics, Judgement, Order, ResponsePair


def scored(right: int, of: int = 4) -> EvalScore:
    pairs = [ResponsePair(id=str(i), instruction="q", chosen="a", rejected="b") for i in range(of)]
    judged = [
        Judgement(pair_id=str(i), order=Order.AB, sample_index=0, text="", verdict="A" if i < right
                  else "B", judge_model="m", template="t")
        for i in range(of)
    ]  # fmt: skip
    return score_pairs(pairs, judged, mode="single")


def metrics(j: int, eval_right: int, validation_right: int | None) -> IterationMetrics:
    return IterationMetrics(
        iteration=j,
        judge_model=f"m{j}",
        eval=scored(eval_right),
        validation=None if validation_right is None else scored(validation_right),
    )


def test_selected_on_validation_reports_the_held_out_eval_accuracy() -> None:
    ms = {0: metrics(0, 4, 1), 1: metrics(1, 2, 3), 2: metrics(2, 3, 3)}
    sel = select_judge(ms, "val.jsonl")
    assert sel is not None
    assert (sel.iteration, sel.value, sel.criterion) == (1, 0.75, "validation")  # tie -> earlier
    assert sel.held_out_accuracy == 0.5  # its eval accuracy, not the best eval accuracy (1.0)
    assert sel.candidates == {0: 0.25, 1: 0.75, 2: 0.75}


def test_selected_on_eval_has_no_held_out_eval_figure() -> None:
    sel = select_judge({0: metrics(0, 2, None), 1: metrics(1, 3, None)}, "eval")
    assert sel is not None and sel.iteration == 1 and sel.held_out_accuracy is None
    assert "biased" in sel.note


def test_nothing_to_select() -> None:
    assert select_judge({0: metrics(0, 2, None)}, None) is None
    assert select_judge({0: metrics(0, 2, None)}, "val.jsonl") is None
