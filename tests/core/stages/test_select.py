"""Selection (ste_core.stages.select): rejection sampling, agreement threshold, label balance."""

from __future__ import annotations

import random

import pytest

from ste_core.records import Kept, Order
from ste_core.stages.select import balance_labels, rejection_sample, select
from tests.core.stages.judgements import J, _judgements


def test_rejection_sampling_keeps_one_correct_per_pair_and_order() -> None:
    sel = rejection_sample(_judgements(), seed=0)
    keys = [(k.pair_id, k.order.value) for k in sel.kept]
    assert keys == [("p1", "AB"), ("p2", "AB"), ("p2", "BA"), ("p3", "AB")]
    p1 = sel.kept[0]
    assert set(p1.chosen) == {0, 2} and p1.rejected == (1,)
    assert sel.counts["failures"] == 1
    assert sel.counts["judgements"] == 9
    assert (
        sel.counts["correct"],
        sel.counts["wrong"],
        sel.counts["tie"],
        sel.counts["no_verdict"],
    ) == (5, 2, 1, 1)
    assert sel.counts["keys_with_correct"] == 4 and sel.counts["keys"] == 5


def test_seeded_pick_does_not_depend_on_arrival_order() -> None:
    many = [J("p", "AB", k, "A" if k % 3 else "B") for k in range(12)]
    first = rejection_sample(many, seed=7).kept[0]
    for s in range(5):
        shuffled = many[:]
        random.Random(s).shuffle(shuffled)
        assert rejection_sample(shuffled, seed=7).kept[0] == first
    picks = {rejection_sample(many, seed=s).kept[0].sample_index for s in range(20)}
    assert len(picks) > 1  # the seed changes the pick
    assert all(p % 3 for p in picks)  # always a correct one


def test_agreement_threshold_drops_pairs_with_few_correct_samples() -> None:
    # p1: 2 of 6 correct (1/3); p2: 2 of 2; p3: 1 of 1 ok sample (the failure is not a sample)
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=0.6)
    assert {k.pair_id for k in sel.kept} == {"p2", "p3"}
    assert sel.counts["pairs_below_threshold"] == 1
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=1 / 3)
    assert {k.pair_id for k in sel.kept} == {"p1", "p2", "p3"}  # "at least t" is inclusive
    with pytest.raises(ValueError):
        rejection_sample([], seed=0, agreement_threshold=1.5)


def test_balance_truncates_the_larger_side_seeded() -> None:
    kept = [Kept(pair_id=f"a{i}", order=Order.AB, chosen=(0,)) for i in range(10)]
    kept += [Kept(pair_id=f"b{i}", order=Order.BA, chosen=(0,)) for i in range(4)]
    out = balance_labels(kept, seed=1)
    labels = [k.label for k in out.kept]
    assert labels.count("A") == labels.count("B") == 4
    assert out.counts == {"label_A": 10, "label_B": 4, "balanced": 8, "dropped_for_balance": 6}
    again = balance_labels(list(reversed(kept)), seed=1)
    assert again.kept == out.kept
    other = balance_labels(kept, seed=2)
    assert {k.pair_id for k in other.kept} != {k.pair_id for k in out.kept}


def test_select_without_balance() -> None:
    sel = select(_judgements(), seed=0, balance=False)
    assert sel.counts["selected"] == 4 and "label_A" not in sel.counts
    sel = select(_judgements(), seed=0)
    assert sel.counts["label_A"] == 3 and sel.counts["label_B"] == 1
    assert sel.counts["selected"] == 2
