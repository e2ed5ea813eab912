"""Paired comparison of two judges on the same items (e.g. iteration i vs i-1, or vs the seed).

Only items scored by both are compared. Two methods:

* ``mcnemar``: exact McNemar test on discordant items; needs binary item scores (0/1), i.e.
  single-order judging without ties / missing verdicts.
* ``bootstrap``: paired bootstrap of the mean difference; works for fractional scores (0.5 for
  ties, position-inconsistent items in both-order mode).
* ``auto``: McNemar when every common item score is 0 or 1, the bootstrap otherwise.

The difference is always b - a (positive: b is better), with a paired-bootstrap percentile
interval in every method.
"""

from __future__ import annotations

from typing import Literal

from ste_core.evaluation.stats import DEFAULT_RESAMPLES, mcnemar_exact, paired_bootstrap
from ste_core.records import EvalScore, PairedTest

Method = Literal["mcnemar", "bootstrap", "auto"]


def _binary(x: float) -> bool:
    return x == 0.0 or x == 1.0


def paired_comparison(
    a: EvalScore,
    b: EvalScore,
    *,
    method: Method = "auto",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTest:
    """Compare `b` against `a` on the pair ids both scored (from their `item_scores`)."""
    common = [k for k in a.item_scores if k in b.item_scores]
    xs = [a.item_scores[k] for k in common]
    ys = [b.item_scores[k] for k in common]
    all_binary = all(_binary(v) for v in xs + ys)
    if method == "auto":
        chosen: Literal["mcnemar", "bootstrap"] = "mcnemar" if all_binary else "bootstrap"
    elif method in ("mcnemar", "bootstrap"):
        chosen = method
    else:
        raise ValueError(f"method must be 'mcnemar', 'bootstrap' or 'auto', got {method!r}")
    if chosen == "mcnemar" and not all_binary:
        raise ValueError(
            "McNemar needs binary item scores (0/1); these have fractional scores (ties, missing "
            "verdicts or both-order judging): use method='bootstrap' or 'auto'"
        )
    diff, (lo, hi), p_boot = paired_bootstrap(
        xs, ys, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    b_better = sum(1 for x, y in zip(xs, ys, strict=True) if y > x)
    a_better = sum(1 for x, y in zip(xs, ys, strict=True) if x > y)
    p = mcnemar_exact(b_better, a_better) if chosen == "mcnemar" else p_boot
    n = len(common)
    return PairedTest(
        method=chosen,
        n_common=n,
        n_only_a=len(a.item_scores) - n,
        n_only_b=len(b.item_scores) - n,
        accuracy_a=sum(xs) / n if n else 0.0,
        accuracy_b=sum(ys) / n if n else 0.0,
        difference=diff,
        ci_low=lo,
        ci_high=hi,
        p_value=p,
        b_better=b_better,
        a_better=a_better,
        n_resamples=n_resamples,
        seed=seed,
    )
