"""Interval estimates and paired tests, in the standard library only (seeded, reproducible).

* `wilson_interval`: the Wilson score interval for a proportion. It accepts fractional
  successes: an item score in [0, 1] with mean p has variance at most p(1-p), so using the
  binomial variance for items that score 0, 0.5 or 1 is conservative (never too narrow).
* `bootstrap_interval`: percentile bootstrap of any statistic of resampled items, with a
  stratified variant (resample within each stratum) for RewardBench's weighted scores, whose
  weights assume fixed subset sizes.
* `mcnemar_exact`: the exact (binomial) McNemar test on discordant pairs.
* `sign_flip_test`: the paired permutation test of "no difference": under the null each item's
  difference is as likely to have had the other sign. Exact (the full distribution of the signed
  sum) when it is small enough, Monte Carlo otherwise. On binary scores it *is* the exact sign
  test, i.e. exact McNemar.
* `paired_bootstrap`: a paired bootstrap interval of the mean difference of two per-item score
  lists. Only the interval: a bootstrap p-value on a handful of discordant items is far too small
  (one item +0.5 gave p = 0.001), because resampling never flips a difference's sign.

Randomness always comes from `random.Random(seed)`, so the same inputs and seed give the same
interval on every machine (no numpy: it is not a dependency of the core).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import NamedTuple

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


#: the exact distribution may hold at most this many distinct signed sums (2**20: always
#: enough for 20 non-zero differences, and for any number of differences on a coarse grid)
MAX_EXACT_STATES = 2**20
#: ... and take at most this many steps to build (a few seconds of pure Python)
MAX_EXACT_WORK = 20_000_000
#: Monte Carlo draws when the exact distribution is too large
DEFAULT_DRAWS = 20_000
#: differences are compared on this integer grid, so equal sums are equal exactly
_GRID = 10**9


class SignFlip(NamedTuple):
    """A sign-flip test: two-sided p, and whether it is exact or Monte Carlo over `draws`."""

    p_value: float
    exact: bool
    n_nonzero: int
    draws: int = 0


def sign_flip_test(
    diffs: Sequence[float], *, seed: int = 0, n_draws: int = DEFAULT_DRAWS
) -> SignFlip:
    """Two-sided paired permutation test of "mean difference = 0" by flipping signs.

    The statistic is |sum of differences|; zero differences carry no information and are left
    out. Exact: the distribution of the signed sum over all 2**m sign patterns of the m
    non-zero differences, built per distinct magnitude (binomial weights), so it stays small for
    scores on a grid (0, 0.5, 1, or means of k samples) whatever m is. When it would exceed
    MAX_EXACT_STATES values or MAX_EXACT_WORK steps: Monte Carlo with `n_draws` seeded draws and
    p = (1 + hits) / (1 + draws), which never reports p = 0.
    """
    signed = [s for s in (round(d * _GRID) for d in diffs) if s != 0]
    m = len(signed)
    if m == 0:
        return SignFlip(1.0, True, 0)
    # Each difference is rounded to the grid by at most half a unit, so sums that are equal in
    # exact arithmetic (1/3 vs 1/6 + 1/6) differ by at most m units: count them as ties.
    observed = abs(sum(signed)) - m
    dist = _signed_sum_distribution(signed)
    if dist is not None:
        hits = sum(count for total, count in dist.items() if abs(total) >= observed)
        return SignFlip(min(1.0, hits / 2**m), True, m)
    rng = random.Random(seed)
    hits = 0
    for _ in range(n_draws):
        bits = rng.getrandbits(m)
        total = sum(v if (bits >> i) & 1 else -v for i, v in enumerate(signed))
        hits += abs(total) >= observed
    return SignFlip(min(1.0, (1 + hits) / (1 + n_draws)), False, m, n_draws)


def _signed_sum_distribution(signed: Sequence[int]) -> dict[int, int] | None:
    """{sum: number of sign patterns giving it}, or None when too large to enumerate."""
    dist: dict[int, int] = {0: 1}
    work = 0
    for magnitude, c in Counter(abs(v) for v in signed).items():
        # c copies of +-magnitude sum to magnitude * (2j - c) in comb(c, j) ways
        work += len(dist) * (c + 1)
        if work > MAX_EXACT_WORK:
            return None
        step = {magnitude * (2 * j - c): math.comb(c, j) for j in range(c + 1)}
        nxt: dict[int, int] = {}
        for s, n in dist.items():
            for t, w in step.items():
                nxt[s + t] = nxt.get(s + t, 0) + n * w
        if len(nxt) > MAX_EXACT_STATES:
            return None
        dist = nxt
    return dist


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """Mean difference (b - a) of paired scores and its percentile bootstrap interval (items
    resampled as pairs). For the p-value use `sign_flip_test`."""
    if len(a) != len(b):
        raise ValueError("paired score lists must have the same length")
    n = len(a)
    if n == 0:
        return (0.0, (0.0, 0.0))
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    observed = sum(diffs) / n
    rng = random.Random(seed)
    reps = [sum(rng.choices(diffs, k=n)) / n for _ in range(n_resamples)]
    return (observed, percentile_interval(reps, confidence))
