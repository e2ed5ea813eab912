"""Rejection sampling, agreement threshold, label balance, SFT/DPO building, output ordering."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ste_core.records import Drop, Judgement, Kept, Order, ResponsePair
from ste_core.stages._streams import in_input_order
from ste_core.stages.judge import judge_messages
from ste_core.stages.select import balance_labels, rejection_sample, select
from ste_core.stages.training_data import build_examples, examples_for_pair
from ste_prompts import get_template

JUDGE = get_template("judge_short")


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


def _pair(pid: str) -> ResponsePair:
    return ResponsePair(id=pid, instruction=f"q {pid}", chosen=f"good {pid}", rejected=f"bad {pid}")


def test_sft_and_dpo_examples_for_a_pair() -> None:
    pair = _pair("p1")
    js = [j for j in _judgements() if isinstance(j, Judgement) and j.pair_id == "p1"]
    texts = {(j.order, j.sample_index): j.text for j in js}
    kept = rejection_sample(js, seed=0).kept
    sft, dpo = examples_for_pair(pair, kept, texts, template=JUDGE, num_pairs=3)
    assert len(sft) == 1  # BA has no correct sample
    ex = sft[0]
    assert ex.order is Order.AB
    assert ex.messages == judge_messages(JUDGE, pair, Order.AB)
    assert "Start of response A]\ngood p1" in ex.messages[-1].content  # chosen shown as A
    assert ex.completion == texts[(Order.AB, kept[0].sample_index)]
    assert "[[A]]" in ex.completion
    assert len(dpo) == 1  # only one wrong sample in AB
    assert "[[A]]" in dpo[0].chosen and "[[B]]" in dpo[0].rejected


def test_dpo_cycles_chosen_samples_up_to_num_pairs() -> None:
    js = [J("p", "BA", k, "B") for k in range(2)] + [J("p", "BA", k, "A") for k in range(2, 6)]
    texts = {(j.order, j.sample_index): j.text for j in js}
    kept = rejection_sample(js, seed=0).kept
    _, dpo = examples_for_pair(_pair("p"), kept, texts, template=JUDGE, num_pairs=3)
    assert len(dpo) == 3
    assert len({d.chosen for d in dpo}) == 2  # both correct samples used
    assert len({d.rejected for d in dpo}) == 3
    assert all("[[B]]" in d.chosen and "[[A]]" in d.rejected for d in dpo)
    _, one = examples_for_pair(_pair("p"), kept, texts, template=JUDGE, num_pairs=1)
    assert len(one) == 1


def test_build_examples_streams_in_pair_order_and_cleans_up(tmp_path: Path) -> None:
    pairs = [_pair(p) for p in ("p3", "p1", "p2", "p9")]
    js = _judgements()
    kept = select(js, seed=0, balance=False).kept
    out = list(build_examples(pairs, js, kept, template=JUDGE, num_pairs=2, workdir=tmp_path))
    assert [s[0].pair_id for s, _ in out] == ["p3", "p1", "p2"]
    n_sft = sum(len(s) for s, _ in out)
    n_dpo = sum(len(d) for _, d in out)
    assert (n_sft, n_dpo) == (4, 1)
    assert list(tmp_path.iterdir()) == []  # the temporary join file is gone


async def test_in_input_order_resequences_and_groups() -> None:
    async def results():
        for item in [("b", 1), ("a", 0), ("c", 0), ("b", 0), ("a", 1), ("c", 1)]:
            yield item

    got = [
        x
        async for x in in_input_order(
            results(), iter("abc"), lambda r: r[0], per_key=2, sort=lambda r: r[1]
        )
    ]
    assert got == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1)]

    async def incomplete():
        for item in [("z", 0), ("b", 0)]:
            yield item

    got = [x async for x in in_input_order(incomplete(), iter("ab"), lambda r: r[0])]
    assert got == [("b", 0), ("z", 0)]  # missing "a" does not block; unexpected kept
