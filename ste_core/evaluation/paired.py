"""Paired comparison of two judges on the same items (e.g. iteration i vs i-1, or vs the seed).

Only items scored by both are compared (an item a judge could not score, because a request
failed, is in neither). The p-value is always a two-sided paired permutation test of the
per-item differences (`stats.sign_flip_test`): under "no difference" each difference is as likely
to have had the other sign. Its name in the result:

* ``mcnemar``: every common item score is 0 or 1, where the sign-flip test *is* the exact sign
  test on the discordant items, i.e. exact McNemar (computed in closed form).
* ``sign-flip``: fractional scores (0.5 for ties and missing verdicts, position-inconsistent
  items in both-order mode); exact when its distribution is small enough, else Monte Carlo
  (`exact` False, `n_draws` draws).

The difference is always b - a (positive: b is better), with a paired-bootstrap percentile
interval. A judge whose headline was withheld (too many errors) has no paired test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from ste_core.evaluation.stats import (
    DEFAULT_DRAWS,
    DEFAULT_RESAMPLES,
    mcnemar_exact,
    paired_bootstrap,
    sign_flip_test,
)
from ste_core.records import EvalScore, PairedResult, PairedTest

Method = Literal["mcnemar", "sign-flip", "auto"]


def _binary(x: float) -> bool:
    return x == 0.0 or x == 1.0


def paired_comparison(
    a: EvalScore,
    b: EvalScore,
    *,
    method: Method = "auto",
    n_resamples: int = DEFAULT_RESAMPLES,
    n_draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    confidence: float = 0.95,
) -> PairedTest:
    """Compare `b` against `a` on the pair ids both scored (from their `item_scores`).

    Raises ValueError when either score has no headline (too many errors to be compared)."""
    for name, s in (("a", a), ("b", b)):
        if s.accuracy is None:
            raise ValueError(
                f"no paired test: judge {name} has no accuracy ({s.error_count} of {s.n_items} "
                "items could not be scored)"
            )
    common = [k for k in a.item_scores if k in b.item_scores]
    xs = [a.item_scores[k] for k in common]
    ys = [b.item_scores[k] for k in common]
    all_binary = all(_binary(v) for v in xs + ys)
    if method == "auto":
        chosen: Literal["mcnemar", "sign-flip"] = "mcnemar" if all_binary else "sign-flip"
    elif method in ("mcnemar", "sign-flip"):
        chosen = method
    else:
        raise ValueError(f"method must be 'mcnemar', 'sign-flip' or 'auto', got {method!r}")
    if chosen == "mcnemar" and not all_binary:
        raise ValueError(
            "McNemar needs binary item scores (0/1); these have fractional scores (ties, missing "
            "verdicts or both-order judging): use method='sign-flip' or 'auto'"
        )
    diff, (lo, hi) = paired_bootstrap(
        xs, ys, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
    b_better = sum(1 for x, y in zip(xs, ys, strict=True) if y > x)
    a_better = sum(1 for x, y in zip(xs, ys, strict=True) if x > y)
    if chosen == "mcnemar":
        p, exact, draws = mcnemar_exact(b_better, a_better), True, 0
    else:
        test = sign_flip_test(
            [y - x for x, y in zip(xs, ys, strict=True)], seed=seed, n_draws=n_draws
        )
        p, exact, draws = test.p_value, test.exact, test.draws
    n = len(common)
    return PairedTest(
        method=chosen,
        exact=exact,
        n_draws=draws,
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


def paired_tests(
    j: int, score: EvalScore, earlier: Mapping[int, EvalScore], *, seed: int
) -> dict[str, PairedResult]:
    """The tests stored with judge `j`'s metrics: "vs_previous" (judge j-1) and "vs_seed"
    (judge 0, from j >= 2), each against an earlier judge that has an accuracy.

    The one place they are computed: metrics.json, summary.md, the report and `ste view` read
    what this returned, so they agree (and use the run's seed)."""
    out: dict[str, PairedResult] = {}
    for label, other in (("vs_previous", j - 1), ("vs_seed", 0)):
        # At j=1 the previous judge is the seed: one comparison, not the same one twice.
        if other < 0 or other == j or (label == "vs_seed" and other == j - 1):
            continue
        base = earlier.get(other)
        if base is not None and base.accuracy is not None and score.accuracy is not None:
            test = paired_comparison(base, score, seed=seed)
            out[label] = PairedResult(against_iteration=other, **test.model_dump())
    return out
