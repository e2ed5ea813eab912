"""Stage `select` (steps 5-6 of the method): rejection sampling, the agreement threshold, label
balance.

The known label of every synthetic pair is "the baseline (chosen) wins", so a judgement is correct
when its verdict names the position the chosen response was shown in (A in order AB, B in BA).

* Rejection sampling keeps, per (pair, order), one correct judgement, picked at random among the
  correct ones with a seeded hash (independent of the order judgements arrive in).
* Agreement threshold t: a pair is kept only if at least a fraction t of its samples (both orders)
  are correct. Failed requests (`JudgeFailure`) are not samples: they are counted apart.
* Label balance: as many kept examples whose correct verdict is A as B (truncate the larger side
  after a seeded shuffle), so the trained judge does not learn a position prior.

Memory: one small record per (pair, order): counts and sample indices, never the texts.

Files: iter_i/judgements.jsonl -> iter_i/selected.jsonl (`Kept` records).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ste_core.records import Funnel, Judgement, Kept, Order, content_hash
from ste_core.run.io import write_jsonl
from ste_core.stages.base import Counts, Stage, Step
from ste_core.stages.judge import read_judgements

__all__ = [
    "STAGE",
    "SelectCounts",
    "Selection",
    "balance_labels",
    "rejection_sample",
    "select",
]


class SelectCounts(Counts):
    """Rejection sampling's tally, then label balance's (absent when balance is off)."""

    labels: ClassVar[Mapping[str, str]] = {
        "failures": "failed calls",
        "tie": "ties",
        "no_verdict": "without a verdict",
        "keys": "pair orders",
        "keys_with_correct": "with a correct judgement",
        "pairs_below_threshold": "below the agreement threshold",
        "label_A": "labelled A",
        "label_B": "labelled B",
        "balanced": "after balancing",
        "dropped_for_balance": "dropped to balance A/B",
    }

    judgements: int = 0
    failures: int = 0
    correct: int = 0
    wrong: int = 0
    tie: int = 0
    no_verdict: int = 0
    keys: int = 0
    keys_with_correct: int = 0
    pairs: int = 0
    pairs_below_threshold: int = 0
    kept: int = 0
    label_A: int | None = None
    label_B: int | None = None
    balanced: int | None = None
    dropped_for_balance: int | None = None
    selected: int = 0

    def funnel(self) -> Funnel:
        drops = {}
        if self.pairs_below_threshold:
            drops["below_agreement_threshold"] = self.pairs_below_threshold
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


def rejection_sample(
    judgements: Iterable[Any], *, seed: int, agreement_threshold: float = 0.0
) -> Selection:
    """Keep one correct judgement per (pair, order); apply the agreement threshold per pair.

    `judgements` are Judgement and JudgeFailure records (anything with `error_type` and no
    `verdict` is a failure). Returns the kept (pair, order) entries sorted by (pair_id, order)
    and a funnel: judgements, failures, correct, wrong, tie, no_verdict, keys, keys_with_correct,
    pairs, pairs_below_threshold, kept.
    """
    if not 0.0 <= agreement_threshold <= 1.0:
        raise ValueError("agreement_threshold must be within [0, 1]")
    # Only small ints per sample (the seeded ranking is computed for the kept keys at the end).
    correct: dict[tuple[str, Order], list[int]] = {}
    wrong: dict[tuple[str, Order], list[int]] = {}
    per_pair: dict[str, list[int]] = {}  # pair -> [samples, correct]
    counts = dict.fromkeys(("judgements", "failures", "correct", "wrong", "tie", "no_verdict"), 0)
    for rec in judgements:
        if not isinstance(rec, Judgement):
            counts["failures"] += 1
            continue
        counts["judgements"] += 1
        key = (rec.pair_id, Order(rec.order))
        tally = per_pair.setdefault(rec.pair_id, [0, 0])
        tally[0] += 1
        correct.setdefault(key, [])
        wrong.setdefault(key, [])
        if rec.correct:
            counts["correct"] += 1
            tally[1] += 1
            correct[key].append(rec.sample_index)
        else:
            counts[
                "tie" if rec.verdict == "tie" else "no_verdict" if rec.verdict is None else "wrong"
            ] += 1
            wrong[key].append(rec.sample_index)

    below = {
        pid
        for pid, (n, ok) in per_pair.items()
        if agreement_threshold > 0 and ok < agreement_threshold * n
    }
    kept: list[Kept] = []
    for key in sorted(correct, key=lambda k: (k[0], k[1].value)):
        if not correct[key] or key[0] in below:
            continue
        kept.append(
            Kept(
                pair_id=key[0],
                order=key[1],
                chosen=_seeded_order(seed, key, correct[key]),
                rejected=_seeded_order(seed, key, wrong[key]),
            )
        )
    counts.update(
        keys=len(correct),
        keys_with_correct=sum(1 for v in correct.values() if v),
        pairs=len(per_pair),
        pairs_below_threshold=len(below),
        kept=len(kept),
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
    judgements: Iterable[Any], *, seed: int, agreement_threshold: float = 0.0, balance: bool = True
) -> Selection:
    """Rejection sampling, then (optionally) label balance; counts of both steps merged."""
    first = rejection_sample(judgements, seed=seed, agreement_threshold=agreement_threshold)
    if not balance:
        return Selection(kept=first.kept, counts={**first.counts, "selected": len(first.kept)})
    second = balance_labels(first.kept, seed=seed)
    return Selection(
        kept=second.kept, counts={**first.counts, **second.counts, "selected": len(second.kept)}
    )


async def select_stage(step: Step) -> SelectCounts:
    ctx, i = step.ctx, step.iteration
    cfg = ctx.config
    result = select(
        read_judgements(ctx.rundir.iter_file(i, "judgements.jsonl")),
        seed=cfg.run.seed,
        agreement_threshold=cfg.selection.agreement_threshold,
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
    summary="rejection sampling: a correct judgement per (pair, order); agreement; label balance",
)
