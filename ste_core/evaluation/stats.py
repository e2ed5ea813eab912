"""Interval estimates and paired tests, in the standard library only (seeded, reproducible).

* `wilson_interval`: the Wilson score interval for a proportion. It accepts fractional
  successes: an item score in [0, 1] with mean p has variance at most p(1-p), so using the
  binomial variance for items that score 0, 0.5 or 1 is conservative (never too narrow).
* `bootstrap_interval`: percentile bootstrap of any statistic of resampled items, with a
  stratified variant (resample within each stratum) for RewardBench's weighted scores, whose
  weights assume fixed subset sizes.
* `mcnemar_exact`: the exact (binomial) McNemar test on discordant pairs.
* `paired_bootstrap`: a paired bootstrap of the mean difference of two per-item score lists.

Randomness always comes from `random.Random(seed)`, so the same inputs and seed give the same
interval on every machine (no numpy: it is not a dependency of the core).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist

DEFAULT_RESAMPLES = 1000


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (1.959964 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for `successes` out of `n` (successes may be fractional).

    Returns (0.0, 1.0) for n == 0 (nothing is known).
    """
    if n < 0 or successes < 0 or successes > n + 1e-9:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    z = z_for(confidence)
    p = min(1.0, successes / n)
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default 'linear' method) of sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def percentile_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap replicates."""
    s = sorted(values)
    alpha = (1.0 - confidence) / 2.0
    return (_percentile(s, alpha), _percentile(s, 1.0 - alpha))


def bootstrap_interval(
    scores: Sequence[float],
    *,
    statistic: Callable[[Sequence[float]], float] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (default: the mean) over resampled items."""
    if not scores:
        return (0.0, 1.0)
    stat = statistic or (lambda xs: sum(xs) / len(xs))
    rng = random.Random(seed)
    n = len(scores)
    reps = [stat(rng.choices(scores, k=n)) for _ in range(n_resamples)]
    return percentile_interval(reps, confidence)


def stratified_bootstrap(
    strata: Mapping[str, Sequence[float]],
    statistic: Callable[[dict[str, float]], dict[str, float]],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Resample items within each stratum; `statistic` maps {stratum: mean} to named values.

    Returns the percentile interval of each named value. Strata keep their sizes, which is what
    a weighted score with fixed per-subset weights assumes.
    """
    rng = random.Random(seed)
    keys = [k for k, v in strata.items() if len(v) > 0]
    reps: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        means = {}
        for k in keys:
            xs = strata[k]
            means[k] = sum(rng.choices(xs, k=len(xs))) / len(xs)
        for name, value in statistic(means).items():
            reps.setdefault(name, []).append(value)
    return {name: percentile_interval(vals, confidence) for name, vals in reps.items()}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for `b` and `c` discordant pairs.

    Under the null each discordant pair goes either way with probability 1/2, so the p-value is
    2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1 (p = 1 when b + c == 0).
    """
    if b < 0 or c < 0:
        raise ValueError("counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float], float]:
    """Mean difference (b - a) of paired scores, its percentile interval and a two-sided p-value.

    Items are resampled as pairs. The p-value tests "mean difference = 0" by the centred
    bootstrap: p = (1 + #{|d* - d| >= |d|}) / (B + 1), where d* are replicates and d the observed
    difference. With d == 0 it is 1.
    """
    if len(a) != len(b):
        raise ValueError("paired score lists must have the same length")
    n = len(a)
    if n == 0:
        return (0.0, (0.0, 0.0), 1.0)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    observed = sum(diffs) / n
    rng = random.Random(seed)
    reps = [sum(rng.choices(diffs, k=n)) / n for _ in range(n_resamples)]
    interval = percentile_interval(reps, confidence)
    if abs(observed) < 1e-12:
        return (observed, interval, 1.0)
    extreme = sum(1 for r in reps if abs(r - observed) >= abs(observed) - 1e-12)
    p = (1 + extreme) / (n_resamples + 1)
    return (observed, interval, min(1.0, p))
