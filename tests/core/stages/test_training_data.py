"""Training data (ste_core.stages.training_data): SFT and DPO examples, built in pair order."""

from __future__ import annotations

from pathlib import Path

from ste_core.records import Judgement, Order, ResponsePair
from ste_core.stages.judge import judge_messages
from ste_core.stages.select import rejection_sample, select
from ste_core.stages.training_data import build_examples, examples_for_pair
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
