"""Stage `select` (steps 5-6 of the method): rejection sampling, the agreement threshold, label
balance, following Meta's data preparation (facebookresearch/RAM, projects/self_taught_evaluator/
src/prepare_sft_data.py and prepare_dpo_data.py).

The known label of every synthetic pair is "the baseline (chosen) wins", so a judgement is correct
when its verdict names the position the chosen response was shown in (A in order AB, B in BA).

* Rejection sampling keeps, per (pair, order), one correct judgement, picked at random among the
  correct ones with a seeded hash (independent of the order judgements arrive in).
* Agreement threshold t (`selection.threshold_unit`): "order" (default, Meta's
  `majority_voting`) keeps a (pair, order) only if at least a fraction t of its own samples are
  correct; "pair" pools both orders' samples and keeps or drops the pair whole. Failed requests
  (`Drop`s) are not samples: they are counted apart. A no-verdict or a tie is a sample.
  (Meta's DPO script has no threshold; here it applies to both: at t = 0 the two agree.)
* Label balance: as many examples whose correct verdict is A as B (truncate the larger side after
  a seeded shuffle), so the trained judge does not learn a position prior. SFT balances over the
  kept orders; DPO over the kept orders that also have a wrong sample (a DPO pair needs one), as
  Meta's `prepare_dpo_data` does, so the DPO data is balanced too. `Kept.for_sft` /
  `Kept.for_dpo` say which an entry feeds.

Memory: one small record per (pair, order): counts and sample indices, never the texts.

Files: iter_i/judgements.jsonl -> iter_i/selected.jsonl (`Kept` records).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ste_core.records import Funnel, Judgement, Kept, Order, content_hash
from ste_core.run.io import write_jsonl
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.judge import GRPO_SKIPS, judges_pairs_at, read_judgements

__all__ = [
    "STAGE",
    "SelectCounts",
    "Selection",
    "ThresholdUnit",
    "balance_labels",
    "rejection_sample",
    "select",
]

ThresholdUnit = Literal["order", "pair"]


class SelectCounts(Counts):
    """Rejection sampling's tally, then label balance's for SFT and for DPO (the balance fields
    are absent when balance is off)."""

    labels: ClassVar[Mapping[str, str]] = {
        "failures": "failed calls",
        "tie": "ties",
        "no_verdict": "without a verdict",
        "keys": "pair orders",
        "keys_with_correct": "with a correct judgement",
        "keys_below_threshold": "below the agreement threshold",
        "label_A": "labelled A",
        "label_B": "labelled B",
        "balanced": "after balancing",
        "dropped_for_balance": "dropped to balance A/B",
        "dpo_without_wrong": "without a wrong sample (DPO)",
        "dpo_candidates": "with a wrong sample too (DPO)",
        "dpo_label_A": "labelled A (DPO)",
        "dpo_label_B": "labelled B (DPO)",
        "dpo_dropped_for_balance": "dropped to balance A/B (DPO)",
        "dpo_selected": "selected for DPO",
    }

    judgements: int = 0
    failures: int = 0
    correct: int = 0
    wrong: int = 0
    tie: int = 0
    no_verdict: int = 0
    keys: int = 0
    keys_with_correct: int = 0
    #: (pair, order)s with a correct sample that the agreement threshold dropped (either unit)
    keys_below_threshold: int = 0
    pairs: int = 0
    kept: int = 0
    label_A: int | None = None
    label_B: int | None = None
    balanced: int | None = None
    dropped_for_balance: int | None = None
    selected: int = 0
    dpo_without_wrong: int = 0
    dpo_candidates: int = 0
    dpo_label_A: int | None = None
    dpo_label_B: int | None = None
    dpo_dropped_for_balance: int | None = None
    dpo_selected: int = 0

    def funnel(self) -> Funnel:
        # The funnel follows the SFT examples (kept -> balanced); DPO's own drops are in the
        # counts above and its examples in `dpo_examples`.
        drops = {}
        if self.keys_below_threshold:
            drops["below_agreement_threshold"] = self.keys_below_threshold
        if self.dropped_for_balance:
            drops["label_balance"] = self.dropped_for_balance
        return Funnel(kept_before_balance=self.kept, balanced_kept=self.selected, drops=drops)


@dataclass
class Selection:
    kept: list[Kept]
    counts: dict[str, int] = field(default_factory=dict)


def _seeded_order(seed: int, key: tuple[str, Order], indices: list[int]) -> tuple[int, ...]:
    """Sample indices in a seeded random order that does not depend on arrival order."""
    pid, order = key
    return tuple(sorted(indices, key=lambda i: content_hash("select", seed, pid, order.value, i)))


def _meets(correct: int, samples: int, threshold: float) -> bool:
    # Meta's test, `len(positives) >= len(outputs) * majority_voting`, written the same way so
    # that the float products agree.
    return threshold <= 0 or correct >= samples * threshold


def rejection_sample(
    judgements: Iterable[Any],
    *,
    seed: int,
    agreement_threshold: float = 0.0,
    threshold_unit: ThresholdUnit = "order",
) -> Selection:
    """Keep one correct judgement per (pair, order) that meets the agreement threshold.

    `judgements` are Judgement and Drop records (anything that is not a Judgement is a failed
    sample). `threshold_unit` "order" tests each (pair, order) on its own samples (Meta's
    rule); "pair" tests both orders' samples pooled and keeps or drops the pair whole. Returns
    the kept (pair, order) entries sorted by (pair_id, order), each `for_dpo` when it has a wrong
    sample, and counts: judgements, failures, correct, wrong, tie, no_verdict, keys,
    keys_with_correct, keys_below_threshold, pairs, kept, dpo_candidates, dpo_without_wrong.
    """
    if not 0.0 <= agreement_threshold <= 1.0:
        raise ValueError("agreement_threshold must be within [0, 1]")
    if threshold_unit not in ("order", "pair"):
        raise ValueError(f"threshold_unit must be 'order' or 'pair', got {threshold_unit!r}")
    # Only small ints per sample (the seeded ranking is computed for the kept keys at the end).
    correct: dict[tuple[str, Order], list[int]] = {}
    wrong: dict[tuple[str, Order], list[int]] = {}
    counts = dict.fromkeys(("judgements", "failures", "correct", "wrong", "tie", "no_verdict"), 0)
    for rec in judgements:
        if not isinstance(rec, Judgement):
            counts["failures"] += 1
            continue
        counts["judgements"] += 1
        key = (rec.pair_id, Order(rec.order))
        correct.setdefault(key, [])
        wrong.setdefault(key, [])
        if rec.correct:
            counts["correct"] += 1
            correct[key].append(rec.sample_index)
        else:
            counts[
                "tie" if rec.verdict == "tie" else "no_verdict" if rec.verdict is None else "wrong"
            ] += 1
            wrong[key].append(rec.sample_index)

    def tally(keys: Iterable[tuple[str, Order]]) -> tuple[int, int]:
        ks = list(keys)
        return sum(len(correct[k]) for k in ks), sum(len(correct[k]) + len(wrong[k]) for k in ks)

    by_pair: dict[str, list[tuple[str, Order]]] = {}
    for key in correct:
        by_pair.setdefault(key[0], []).append(key)
    unit_of = (lambda k: [k]) if threshold_unit == "order" else (lambda k: by_pair[k[0]])

    kept: list[Kept] = []
    below = 0
    for key in sorted(correct, key=lambda k: (k[0], k[1].value)):
        if not correct[key]:
            continue
        if not _meets(*tally(unit_of(key)), agreement_threshold):
            below += 1
            continue
        kept.append(
            Kept(
                pair_id=key[0],
                order=key[1],
                chosen=_seeded_order(seed, key, correct[key]),
                rejected=_seeded_order(seed, key, wrong[key]),
                for_sft=True,
                for_dpo=bool(wrong[key]),
            )
        )
    with_wrong = sum(1 for k in kept if k.for_dpo)
    counts.update(
        keys=len(correct),
        keys_with_correct=sum(1 for v in correct.values() if v),
        keys_below_threshold=below,
        pairs=len(by_pair),
        kept=len(kept),
        dpo_candidates=with_wrong,
        dpo_without_wrong=len(kept) - with_wrong,
    )
    return Selection(kept=kept, counts=counts)


def balance_labels(kept: Iterable[Kept], *, seed: int) -> Selection:
    """Equal numbers of A-labelled and B-labelled examples: seeded shuffle, truncate the larger."""
    sides: dict[str, list[tuple[str, Kept]]] = {"A": [], "B": []}
    for k in kept:
        sides[k.label].append((content_hash("balance", seed, k.pair_id, k.order.value), k))
    n = min(len(sides["A"]), len(sides["B"]))
    out = [k for side in ("A", "B") for _, k in sorted(sides[side], key=lambda t: t[0])[:n]]
    out.sort(key=lambda k: (k.pair_id, k.order.value))
    counts = {
        "label_A": len(sides["A"]),
        "label_B": len(sides["B"]),
        "balanced": len(out),
        "dropped_for_balance": len(sides["A"]) + len(sides["B"]) - len(out),
    }
    return Selection(kept=out, counts=counts)


def select(
    judgements: Iterable[Any],
    *,
    seed: int,
    agreement_threshold: float = 0.0,
    threshold_unit: ThresholdUnit = "order",
    balance: bool = True,
) -> Selection:
    """Rejection sampling, then (optionally) label balance, once over the SFT candidates and
    once over the DPO candidates (those with a wrong sample too); the counts of every step
    merged (DPO's balance counts prefixed `dpo_`). The result holds every entry that feeds
    either, with `for_sft` / `for_dpo` set."""
    first = rejection_sample(
        judgements,
        seed=seed,
        agreement_threshold=agreement_threshold,
        threshold_unit=threshold_unit,
    )
    counts = dict(first.counts)
    sft, dpo = first.kept, [k for k in first.kept if k.for_dpo]
    if balance:
        sft_bal, dpo_bal = balance_labels(sft, seed=seed), balance_labels(dpo, seed=seed)
        sft, dpo = sft_bal.kept, dpo_bal.kept
        counts.update(sft_bal.counts)
        counts.update({f"dpo_{k}": v for k, v in dpo_bal.counts.items() if k != "balanced"})
    in_sft = {(k.pair_id, k.order) for k in sft}
    in_dpo = {(k.pair_id, k.order) for k in dpo}
    out = [
        k.model_copy(update={"for_sft": key in in_sft, "for_dpo": key in in_dpo})
        for k in first.kept
        if (key := (k.pair_id, k.order)) in in_sft or key in in_dpo
    ]
    counts.update(selected=len(sft), dpo_selected=len(dpo))
    return Selection(kept=out, counts=counts)


async def select_stage(step: Step) -> SelectCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    result = select(
        read_judgements(ctx.rundir.iter_file(i, "judgements.jsonl")),
        seed=cfg.run.seed,
        agreement_threshold=cfg.selection.agreement_threshold,
        threshold_unit=cfg.selection.threshold_unit,
        balance=cfg.selection.balance_labels,
    )
    write_jsonl(ctx.rundir.iter_file(i, "selected.jsonl"), result.kept)
    return SelectCounts(**result.counts)


STAGE = Stage(
    name="select",
    scope="iteration",
    run=select_stage,
    counts=SelectCounts,
    needs=("judge",),
    at=judges_pairs_at,
    at_when=GRPO_SKIPS,
    summary="rejection sampling: a correct judgement per (pair, order); agreement threshold; "
    "label balance (SFT, DPO)",
)
