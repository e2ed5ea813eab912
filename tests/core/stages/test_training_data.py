"""Training data (ste_core.stages.training_data): SFT and DPO examples, rows in a seeded order;
GRPO prompts."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from ste_core.records import DPOExample, Judgement, Order, ResponsePair, SFTExample
from ste_core.stages.judge import judge_messages
from ste_core.stages.select import rejection_sample, select
from ste_core.stages.training_data import build_examples, examples_for_pair, grpo_examples
from ste_prompts import get_template
from tests.core.stages.judgements import J, _judgements

JUDGE = get_template("judge_short")


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
    # AB: 2 correct x 1 wrong = 2 combinations, both drawn (num_pairs 3).
    assert len(dpo) == 2 and len({d.chosen for d in dpo}) == 2
    assert all("[[A]]" in d.chosen and "[[B]]" in d.rejected for d in dpo)


def test_dpo_draws_up_to_num_pairs_from_correct_x_wrong() -> None:
    js = [J("p", "BA", k, "B") for k in range(2)] + [J("p", "BA", k, "A") for k in range(2, 6)]
    texts = {(j.order, j.sample_index): j.text for j in js}
    kept = rejection_sample(js, seed=0).kept
    _, dpo = examples_for_pair(_pair("p"), kept, texts, template=JUDGE, num_pairs=5)
    assert len(dpo) == 5
    assert len({(d.chosen, d.rejected) for d in dpo}) == 5  # distinct combinations
    assert all("[[B]]" in d.chosen and "[[A]]" in d.rejected for d in dpo)
    _, every = examples_for_pair(_pair("p"), kept, texts, template=JUDGE, num_pairs=100)
    assert len(every) == 8  # 2 x 4: no more than there are
    _, one = examples_for_pair(_pair("p"), kept, texts, template=JUDGE, num_pairs=1)
    assert len(one) == 1
    only_sft = [k.model_copy(update={"for_dpo": False}) for k in kept]
    sft, none = examples_for_pair(_pair("p"), only_sft, texts, template=JUDGE, num_pairs=5)
    assert len(sft) == 1 and none == []
    only_dpo = [k.model_copy(update={"for_sft": False}) for k in kept]
    no_sft, _ = examples_for_pair(_pair("p"), only_dpo, texts, template=JUDGE, num_pairs=5)
    assert no_sft == []


def test_build_examples_gives_what_examples_for_pair_gives_and_cleans_up(tmp_path: Path) -> None:
    pairs = [_pair(p) for p in ("p3", "p1", "p2", "p9")]
    js = _judgements()
    kept = select(js, seed=0, balance=False).kept
    out = list(
        build_examples(pairs, js, kept, template=JUDGE, num_pairs=2, seed=4, workdir=tmp_path)
    )
    sft = [e for e in out if isinstance(e, SFTExample)]
    dpo = [e for e in out if isinstance(e, DPOExample)]
    assert out == sft + dpo  # every SFT example, then every DPO example
    expected_sft, expected_dpo = [], []
    for p in pairs:
        ks = [k for k in kept if k.pair_id == p.id]
        texts = {
            (j.order, j.sample_index): j.text
            for j in js
            if isinstance(j, Judgement) and j.pair_id == p.id
        }
        s_, d_ = examples_for_pair(p, ks, texts, template=JUDGE, num_pairs=2, seed=4)
        expected_sft += s_
        expected_dpo += d_
    assert sorted(sft, key=repr) == sorted(expected_sft, key=repr)
    assert sorted(dpo, key=repr) == sorted(expected_dpo, key=repr)
    assert (len(sft), len(dpo)) == (4, 2)
    assert list(tmp_path.iterdir()) == []  # the temporary join file is gone


def test_rows_are_shuffled_with_the_seed_not_grouped_by_pair(tmp_path: Path) -> None:
    ids = [f"p{i:02d}" for i in range(30)]
    pairs = [_pair(p) for p in ids]
    js = []
    for p in ids:
        js += [J(p, "AB", 0, "A"), J(p, "AB", 1, "B"), J(p, "BA", 0, "B"), J(p, "BA", 1, "A")]
    kept = select(js, seed=0).kept

    def rows(seed: int) -> list[tuple[str, str]]:
        out = build_examples(
            pairs, js, kept, template=JUDGE, num_pairs=1, seed=seed, workdir=tmp_path
        )
        return [(e.pair_id, e.order.value) for e in out if isinstance(e, SFTExample)]

    first = rows(1)
    assert len(first) == 60 and first == rows(1)  # seeded: the same order again
    assert first != rows(2)
    assert first != sorted(first)  # not in pair order
    adjacent = sum(1 for a, b in pairwise(first) if a[0] == b[0])
    assert adjacent < 10  # both orders of a pair side by side only by chance (~1 in 30)
    # the order does not depend on the order of the input files
    again = build_examples(
        pairs[::-1], js[::-1], kept[::-1], template=JUDGE, num_pairs=1, seed=1, workdir=tmp_path
    )
    assert [(e.pair_id, e.order.value) for e in again if isinstance(e, SFTExample)] == first


def test_grpo_examples_are_both_orders_with_their_labels() -> None:
    pair = _pair("p1")
    ab, ba = grpo_examples(pair, template=JUDGE)
    assert (ab.order, ab.label, ba.order, ba.label) == (Order.AB, "A", Order.BA, "B")
    assert ab.messages == judge_messages(JUDGE, pair, Order.AB)
    assert ba.messages == judge_messages(JUDGE, pair, Order.BA)
    assert ab.pair_id == ba.pair_id == "p1" and ab.parser == JUDGE.parser == "verdict"
    assert ab.verdict_rule == JUDGE.verdict_rule == "final"
