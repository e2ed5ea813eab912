"""Selection (ste_core.stages.select): rejection sampling, agreement threshold, label balance."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ste_core.errors import ConfigurationError
from ste_core.records import Kept, Order
from ste_core.stages.select import SelectCounts, balance_labels, rejection_sample, select
from tests.core.helpers import config_with
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


def test_agreement_threshold_per_order_is_the_default() -> None:
    # p1 AB: 2 of 3 correct; p1 BA: 0 of 3; p2: 1 of 1 each; p3 AB: 1 of 1 (the failure is no
    # sample). Per order (Meta's majority_voting), p1 AB stands on its own 2/3.
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=0.6)
    assert {(k.pair_id, k.order.value) for k in sel.kept} == {
        ("p1", "AB"),
        ("p2", "AB"),
        ("p2", "BA"),
        ("p3", "AB"),
    }
    assert sel.counts["keys_below_threshold"] == 0
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=0.7)
    assert ("p1", Order.AB) not in {(k.pair_id, k.order) for k in sel.kept}
    assert sel.counts["keys_below_threshold"] == 1
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=2 / 3)
    assert len(sel.kept) == 4  # "at least t" is inclusive
    with pytest.raises(ValueError):
        rejection_sample([], seed=0, agreement_threshold=1.5)
    with pytest.raises(ValueError):
        rejection_sample([], seed=0, threshold_unit="sample")  # type: ignore[arg-type]


def test_agreement_threshold_per_pair_pools_both_orders() -> None:
    # p1 pooled: 2 of 6 correct (1/3), so its AB entry goes although AB alone has 2/3.
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=0.6, threshold_unit="pair")
    assert {k.pair_id for k in sel.kept} == {"p2", "p3"}
    assert sel.counts["keys_below_threshold"] == 1
    sel = rejection_sample(_judgements(), seed=0, agreement_threshold=1 / 3, threshold_unit="pair")
    assert {k.pair_id for k in sel.kept} == {"p1", "p2", "p3"}


@pytest.mark.parametrize(
    ("ab", "ba", "t", "by_order", "by_pair"),
    [
        # AB 3/3, BA 1/3: per order BA fails 0.6; pooled 4/6 passes, BA kept with it.
        ("AAA", "BAA", 0.6, {"AB"}, {"AB", "BA"}),
        # AB 1/1, BA 1/4: per order AB passes 0.5; pooled 2/5 fails, AB goes too.
        ("A", "BAAA", 0.5, {"AB"}, set()),
    ],
)
def test_the_two_threshold_units_differ(ab, ba, t, by_order, by_pair) -> None:
    js = [J("p", "AB", k, v) for k, v in enumerate(ab)] + [
        J("p", "BA", k, v) for k, v in enumerate(ba)
    ]
    for unit, expected in (("order", by_order), ("pair", by_pair)):
        sel = rejection_sample(js, seed=0, agreement_threshold=t, threshold_unit=unit)
        assert {k.order.value for k in sel.kept} == expected, unit


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
    assert sel.counts["dpo_selected"] == 1  # only p1 AB has a wrong sample
    sel = select(_judgements(), seed=0)
    assert sel.counts["label_A"] == 3 and sel.counts["label_B"] == 1
    assert sel.counts["selected"] == 2
    # DPO balances over its own candidates: one A (p1 AB), no B, so none.
    assert (sel.counts["dpo_label_A"], sel.counts["dpo_label_B"]) == (1, 0)
    assert sel.counts["dpo_selected"] == 0 and not any(k.for_dpo for k in sel.kept)


def test_dpo_is_balanced_over_the_orders_that_have_a_wrong_sample() -> None:
    # A-labelled (AB) orders: 3, each with a wrong sample. B-labelled (BA): 3 all correct, 1
    # with a wrong sample. Balancing before dropping the orders without a wrong sample (the
    # old way) would give DPO 3 A-labelled and at most 1 B-labelled prompts.
    js = []
    for i in range(3):
        js += [J(f"a{i}", "AB", 0, "A"), J(f"a{i}", "AB", 1, "B")]
        js += [J(f"b{i}", "BA", 0, "B"), J(f"b{i}", "BA", 1, "B")]
    js += [J("b9", "BA", 0, "B"), J("b9", "BA", 1, None)]
    sel = select(js, seed=3)
    sft = [k for k in sel.kept if k.for_sft]
    dpo = [k for k in sel.kept if k.for_dpo]
    assert [k.label for k in sft].count("A") == [k.label for k in sft].count("B") == 3
    assert sorted(k.label for k in dpo) == ["A", "B"]
    assert {k.pair_id for k in dpo if k.label == "B"} == {"b9"}
    assert all(k.rejected for k in dpo)
    assert sel.counts["dpo_candidates"] == 4 and sel.counts["dpo_dropped_for_balance"] == 2
    assert sel.counts["dpo_without_wrong"] == 3
    # Every written entry feeds one or the other.
    assert all(k.for_sft or k.for_dpo for k in sel.kept)
    assert len(sel.kept) == len({(k.pair_id, k.order) for k in sft + dpo})


def test_kept_rows_written_before_for_sft_and_for_dpo_feed_both() -> None:
    old = Kept.model_validate({"pair_id": "p", "order": "AB", "chosen": [0], "rejected": [1]})
    assert old.for_sft and old.for_dpo


def test_counts_and_funnel_add_up() -> None:
    js = [*_judgements(), J("p4", "BA", 0, "B"), J("p4", "BA", 1, "A"), J("p5", "AB", 0, "B")]
    sel = select(js, seed=0, agreement_threshold=0.7)
    c = SelectCounts(**sel.counts)
    assert c.judgements == c.correct + c.wrong + c.tie + c.no_verdict
    assert c.keys_with_correct == c.kept + c.keys_below_threshold
    assert c.kept == c.balanced + c.dropped_for_balance
    assert c.dpo_candidates + c.dpo_without_wrong == c.kept
    assert c.dpo_candidates == c.dpo_selected + c.dpo_dropped_for_balance
    funnel = c.funnel()
    assert funnel.kept_before_balance - sum(funnel.drops.values()) + c.keys_below_threshold == (
        funnel.balanced_kept
    )


@pytest.mark.usefixtures("scripted")
def test_threshold_unit_is_a_result_setting_and_defaults_to_order(tmp_path: Path) -> None:
    cfg = config_with(tmp_path)
    assert cfg.selection.threshold_unit == "order"
    settings = cfg.result_settings()
    assert settings["selection.threshold_unit"] == "order"
    # A run started before the key existed does not resume under the new default (its
    # selection would change): the check that guards resuming names the key.
    before = {k: v for k, v in settings.items() if k != "selection.threshold_unit"}
    assert cfg.changed_settings(before) == ["selection.threshold_unit"]
    pooled = config_with(tmp_path, **{"selection.threshold_unit": "pair"})
    assert pooled.changed_settings(settings) == ["selection.threshold_unit"]
    assert pooled.changed_settings(before) == []  # the old rule, named: the old run resumes
    with pytest.raises(ConfigurationError, match="threshold_unit"):
        config_with(tmp_path, **{"selection.threshold_unit": "sample"})
