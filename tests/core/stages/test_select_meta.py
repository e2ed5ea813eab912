"""Selection and DPO pairing against a port of Meta's data preparation
(tests/core/stages/meta_selection_port.py), on hand-built and generated judgement sets.

Meta's scripts shuffle with `random`; ours rank with seeded hashes. So the comparisons are on
what does not depend on the draw: which (pair, order)s are eligible, how many of each label
there are and how many the balance keeps, how many DPO pairs a prompt gives, and that every
pick is one Meta's rules allow.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ste_core.records import Drop, Judgement, Order
from ste_core.stages.select import rejection_sample, select
from ste_core.stages.training_data import dpo_combinations
from tests.core.stages.judgements import F, J
from tests.core.stages.meta_selection_port import prepare_dpo_data, prepare_positive_data
from tests.prompts.strategies import SETTINGS

_META_LABEL = {"A": "model_a", "B": "model_b", "tie": "tie", None: None}


def _key(pair_id: str, order: Order | str) -> str:
    return f"{pair_id}|{Order(order).value}"


def _meta_input(
    judgements: list[Judgement | Drop],
) -> tuple[dict[str, list[tuple[str, str | None]]], dict[str, str]]:
    """What Meta's scripts build from their files: outputs per prompt (a failed sample is
    skipped, as Meta skips a missing one) and the gold label of each prompt."""
    outputs: dict[str, list[tuple[str, str | None]]] = {}
    gold: dict[str, str] = {}
    for j in judgements:
        if not isinstance(j, Judgement):
            continue
        key = _key(j.pair_id, j.order)
        outputs.setdefault(key, []).append((j.text, _META_LABEL[j.verdict]))
        gold[key] = "model_a" if Order(j.order) is Order.AB else "model_b"
    return outputs, gold


def _by_key(judgements: list[Judgement | Drop]) -> dict[tuple[str, Order, int], Judgement]:
    return {j.sample: j for j in judgements if isinstance(j, Judgement)}


def _check_against_meta(js: list[Judgement | Drop], threshold: float, num_pairs: int) -> None:
    outputs, gold = _meta_input(js)
    ours = select(js, seed=11, agreement_threshold=threshold)
    texts = _by_key(js)

    # SFT: prepare_sft_data.py (majority_voting None when there is no threshold: with 0 its
    # rejection_sampling raises on a prompt without a correct output).
    meta = prepare_positive_data(
        {k: list(v) for k, v in outputs.items()}, gold, threshold or None, random.Random(42)
    )
    eligible = {k for k, _ in meta["positive_a"] + meta["positive_b"]}
    first = rejection_sample(js, seed=11, agreement_threshold=threshold)
    assert {_key(k.pair_id, k.order) for k in first.kept} == eligible
    assert (ours.counts["label_A"], ours.counts["label_B"]) == (
        len(meta["positive_a"]),
        len(meta["positive_b"]),
    )
    sft = [k for k in ours.kept if k.for_sft]
    assert len(sft) == ours.counts["selected"] == len(meta["examples"])
    assert Counter(k.label for k in sft) == Counter(
        "A" if gold[key] == "model_a" else "B" for key, _ in meta["examples"]
    )
    for k in sft:
        assert _key(k.pair_id, k.order) in eligible
        assert texts[(k.pair_id, k.order, k.sample_index)].correct  # the target is correct

    # DPO: prepare_dpo_data.py has no threshold; ours applies it, so compare at 0.
    if threshold:
        return
    meta_dpo = prepare_dpo_data(
        {k: list(v) for k, v in outputs.items()}, gold, num_pairs, random.Random(42)
    )
    candidates = {k for k in first.kept if k.for_dpo}
    assert {_key(k.pair_id, k.order) for k in candidates} == set(
        meta_dpo["eligible_a"] + meta_dpo["eligible_b"]
    )
    assert (ours.counts["dpo_label_A"], ours.counts["dpo_label_B"]) == (
        len(meta_dpo["eligible_a"]),
        len(meta_dpo["eligible_b"]),
    )
    dpo = [k for k in ours.kept if k.for_dpo]
    assert len(dpo) == ours.counts["dpo_selected"] == len(meta_dpo["keys"])
    assert Counter(k.label for k in dpo) == Counter(
        "A" if gold[key] == "model_a" else "B" for key in meta_dpo["keys"]
    )
    meta_per_key = Counter(key for key, _, _ in meta_dpo["examples"])
    for k in dpo:
        combos = dpo_combinations(k, seed=11, num_pairs=num_pairs)
        assert len(combos) == min(num_pairs, len(k.chosen) * len(k.rejected))
        assert len(set(combos)) == len(combos)
        for c, w in combos:
            assert texts[(k.pair_id, k.order, c)].correct
            assert not texts[(k.pair_id, k.order, w)].correct
        if _key(k.pair_id, k.order) in meta_per_key:
            assert meta_per_key[_key(k.pair_id, k.order)] == len(combos)
    # Which keys the balance keeps is a draw; the pairs each candidate would give are not.
    for key in set(meta_dpo["eligible_a"] + meta_dpo["eligible_b"]):
        outs = outputs[key]
        n_good = sum(1 for _, label in outs if label == gold[key])
        expected = min(num_pairs, n_good * (len(outs) - n_good))
        k = next(k for k in candidates if _key(k.pair_id, k.order) == key)
        assert len(dpo_combinations(k, seed=11, num_pairs=num_pairs)) == expected


def _orders(**spec: str) -> list[Judgement | Drop]:
    """`p1_AB="AAB-"`: one judgement per letter (A, B, T = tie, N = none), `-` a failure."""
    out: list[Judgement | Drop] = []
    for name, verdicts in spec.items():
        pid, order = name.rsplit("_", 1)
        for k, v in enumerate(verdicts):
            if v == "-":
                out.append(F(pid, order, k))
            else:
                out.append(J(pid, order, k, {"A": "A", "B": "B", "T": "tie", "N": None}[v]))
    return out


HAND_BUILT = {
    "balanced, all kinds of wrong": _orders(
        p1_AB="AAB", p1_BA="BTN", p2_AB="ANA", p2_BA="BB", p3_AB="BBA", p3_BA="ABB"
    ),
    "more A than B, failures": _orders(
        p1_AB="AA-", p1_BA="AA", p2_AB="AB", p3_AB="A-N", p4_AB="AAAA", p4_BA="B-B"
    ),
    "only correct, no DPO": _orders(p1_AB="AA", p1_BA="BB", p2_AB="A", p2_BA="B"),
    "no correct at all": _orders(p1_AB="BB", p1_BA="AA", p2_AB="NT"),
    "many combinations": _orders(p1_AB="AAAABBBN", p1_BA="BBBAAT", p2_AB="ANNN", p2_BA="BA"),
}


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
@pytest.mark.parametrize("threshold", [0.0, 0.5, 2 / 3, 1.0])
@pytest.mark.parametrize("num_pairs", [1, 3, 50])
def test_hand_built_sets_match_meta(name: str, threshold: float, num_pairs: int) -> None:
    _check_against_meta(HAND_BUILT[name], threshold, num_pairs)


def test_per_order_threshold_is_meta_and_pooled_is_not() -> None:
    # AB: 3 of 3 correct; BA: 1 of 3. Meta (per prompt, 0.6) keeps AB only.
    js = _orders(p_AB="AAA", p_BA="BAA")
    outputs, gold = _meta_input(js)
    meta = prepare_positive_data(outputs, gold, 0.6, random.Random(0))
    assert {k for k, _ in meta["positive_a"] + meta["positive_b"]} == {"p|AB"}
    order = rejection_sample(js, seed=0, agreement_threshold=0.6)
    pooled = rejection_sample(js, seed=0, agreement_threshold=0.6, threshold_unit="pair")
    assert [_key(k.pair_id, k.order) for k in order.kept] == ["p|AB"]
    assert [_key(k.pair_id, k.order) for k in pooled.kept] == ["p|AB", "p|BA"]


def test_dpo_draws_combinations_not_one_pair_per_wrong_sample() -> None:
    # One wrong sample and three correct ones: Meta makes up to 3 pairs (each correct with the
    # one wrong); one pair per wrong sample would make 1.
    js = _orders(p_AB="AAAB", q_BA="BBBA")
    sel = select(js, seed=0)
    for k in sel.kept:
        combos = dpo_combinations(k, seed=0, num_pairs=3)
        assert len(combos) == 3 and len({c for c, _ in combos}) == 3
    meta = prepare_dpo_data(*_meta_input(js), num_pairs=3, rng=random.Random(0))
    assert len(meta["examples"]) == 6


def test_dpo_draw_is_seeded_and_independent_of_sample_order() -> None:
    js = _orders(p_AB="AAAABBBBNN")
    k = select(js, seed=0, balance=False).kept[0]
    draws = {tuple(dpo_combinations(k, seed=s, num_pairs=4)) for s in range(8)}
    assert len(draws) > 1  # the seed changes the draw
    flipped = k.model_copy(update={"chosen": k.chosen[::-1], "rejected": k.rejected[::-1]})
    assert dpo_combinations(flipped, seed=5, num_pairs=4) == dpo_combinations(
        k, seed=5, num_pairs=4
    )
    assert dpo_combinations(k.model_copy(update={"for_dpo": False}), seed=0, num_pairs=4) == []


# Generated sets: up to 6 pairs, each order with up to 5 samples.
_sample = st.sampled_from("AABBTN-")
_order_spec = st.text(_sample, max_size=5)


@st.composite
def judgement_sets(draw: Any) -> list[Judgement | Drop]:
    n = draw(st.integers(0, 6))
    spec = {}
    for i in range(n):
        for order in ("AB", "BA"):
            spec[f"p{i}_{order}"] = draw(_order_spec)
    return _orders(**spec)


@SETTINGS
@given(
    js=judgement_sets(),
    threshold=st.sampled_from([0.0, 0.2, 0.5, 0.6, 2 / 3, 1.0]),
    num_pairs=st.integers(1, 6),
)
def test_generated_sets_match_meta(js: list[Judgement | Drop], threshold: float, num_pairs: int):
    _check_against_meta(js, threshold, num_pairs)
