"""Interval and test math against values computed independently (by hand / textbook)."""

from __future__ import annotations

import math

import pytest

from ste_core.evaluation.stats import (
    bootstrap_interval,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
    stratified_bootstrap,
    wilson_interval,
    z_for,
)


def test_z_for_95_percent() -> None:
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)


def test_wilson_40_of_50_matches_published_value() -> None:
    # Wilson 95% for 40/50 = (0.6696, 0.8876), e.g. statsmodels
    # proportion_confint(40, 50, method="wilson"); by hand: centre 0.77859, half-width 0.10897.
    lo, hi = wilson_interval(40, 50)
    assert lo == pytest.approx(0.66963, abs=1e-4)
    assert hi == pytest.approx(0.88756, abs=1e-4)


def test_wilson_extremes() -> None:
    # 0/n: upper bound z^2 / (n + z^2) = 3.8415 / 23.8415
    lo, hi = wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(3.841459 / 23.841459, abs=1e-5)
    lo, hi = wilson_interval(50, 50)
    assert hi == pytest.approx(1.0)
    assert lo == pytest.approx(50 / 53.841459, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_accepts_fractional_successes_between_neighbours() -> None:
    lo_a, hi_a = wilson_interval(40, 50)
    lo_b, hi_b = wilson_interval(40.5, 50)
    lo_c, hi_c = wilson_interval(41, 50)
    assert lo_a < lo_b < lo_c and hi_a < hi_b < hi_c


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError):
        wilson_interval(51, 50)


def test_mcnemar_exact_constructed_tables() -> None:
    # b=2, c=8: 2 * P(X<=2), X~Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(2, 8) == pytest.approx(2 * 56 / 1024)
    assert mcnemar_exact(8, 2) == pytest.approx(2 * 56 / 1024)
    # b=0, c=6: 2 / 64
    assert mcnemar_exact(0, 6) == pytest.approx(0.03125)
    # balanced and empty tables: p = 1
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


def test_percentile_interval_interpolates_like_numpy_linear() -> None:
    values = list(range(101))  # 0..100: the 2.5th / 97.5th percentiles are 2.5 and 97.5
    assert percentile_interval(values) == pytest.approx((2.5, 97.5))


def test_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    scores = [1.0] * 30 + [0.0] * 10 + [0.5] * 10
    a = bootstrap_interval(scores, seed=1)
    b = bootstrap_interval(scores, seed=1)
    c = bootstrap_interval(scores, seed=2)
    assert a == b and a != c
    mean = sum(scores) / len(scores)
    assert a[0] < mean < a[1]
    # normal-approximation width as a sanity bound: sd of the mean ~ 0.058 -> +-0.11
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / len(scores) / len(scores))
    assert (a[1] - a[0]) == pytest.approx(2 * 1.96 * sd, rel=0.25)


def test_bootstrap_of_constant_scores_is_degenerate() -> None:
    assert bootstrap_interval([1.0] * 20) == (1.0, 1.0)


def test_stratified_bootstrap_keeps_strata_apart() -> None:
    strata = {"x": [1.0] * 10, "y": [0.0] * 10}
    cis = stratified_bootstrap(strata, lambda m: {"diff": m["x"] - m["y"]}, seed=0)
    assert cis["diff"] == (1.0, 1.0)


def test_paired_bootstrap_constructed_examples() -> None:
    a = [0.0] * 20
    b = [1.0] * 20
    diff, (lo, hi), p = paired_bootstrap(a, b, n_resamples=500, seed=0)
    assert diff == 1.0 and (lo, hi) == (1.0, 1.0)
    assert p == pytest.approx(1 / 501)  # no replicate as far from 1 as 0 is
    diff, _, p = paired_bootstrap(a, a, n_resamples=200)
    assert diff == 0.0 and p == 1.0
    # a small, noisy improvement: p well above 0.05
    a2 = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    b2 = [1, 1, 1, 0, 1, 0, 1, 0, 1, 0]
    diff, (lo, hi), p = paired_bootstrap(a2, b2, seed=3)
    assert diff == pytest.approx(0.1)
    assert lo <= 0 < hi and p > 0.2  # one discordant item is no evidence
    d3, (lo3, _), p3 = paired_bootstrap(a2, [1] * 10, seed=3)
    assert d3 == pytest.approx(0.5) and lo3 > 0 and p3 < 0.05
