"""Interval and test math against values computed independently (by hand / textbook)."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from ste_core.evaluation.stats import (
    SignFlip,
    bootstrap_interval,
    mcnemar_exact,
    paired_bootstrap,
    percentile_interval,
    sign_flip_test,
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
    diff, (lo, hi) = paired_bootstrap(a, b, n_resamples=500, seed=0)
    assert diff == 1.0 and (lo, hi) == (1.0, 1.0)
    diff, _ = paired_bootstrap(a, a, n_resamples=200)
    assert diff == 0.0
    a2 = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    b2 = [1, 1, 1, 0, 1, 0, 1, 0, 1, 0]
    diff, (lo, hi) = paired_bootstrap(a2, b2, seed=3)
    assert diff == pytest.approx(0.1) and lo <= 0 < hi
    d3, (lo3, _) = paired_bootstrap(a2, [1] * 10, seed=3)
    assert d3 == pytest.approx(0.5) and lo3 > 0


def test_sign_flip_on_the_issues_examples() -> None:
    # 3 items +0.5, 2 unchanged: |sum| >= 1.5 in 2 of the 2**3 sign patterns
    assert sign_flip_test([0.5, 0.5, 0.5, 0.0, 0.0]) == SignFlip(0.25, True, 3)
    assert sign_flip_test([0.5]).p_value == 1.0
    assert sign_flip_test([0.0, 0.0]) == SignFlip(1.0, True, 0)


@pytest.mark.parametrize(("b", "c"), [(4, 0), (2, 8), (8, 2), (5, 5), (0, 6), (13, 4), (30, 12)])
def test_sign_flip_on_binary_differences_is_exact_mcnemar(b: int, c: int) -> None:
    diffs = [1.0] * b + [-1.0] * c + [0.0] * 7
    # the exact sign test: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2) (scipy is no dependency)
    n = b + c
    expected = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)
    test = sign_flip_test(diffs)
    assert test.exact and test.p_value == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_sign_flip_on_fractional_differences_matches_enumeration() -> None:
    diffs = [0.5, -0.25, 1.0, 0.5, 0.75, -0.5, 0.25, 1.0, 0.0]
    nonzero = [d for d in diffs if d]
    observed = abs(sum(nonzero))
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, nonzero, strict=True))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(nonzero))
    )
    assert sign_flip_test(diffs).p_value == pytest.approx(extreme / 2 ** len(nonzero))


def test_sign_flip_counts_sums_equal_up_to_rounding_as_ties() -> None:
    # Observed sum 1/2. In exact arithmetic 5 of the 16 sign patterns reach |sum| >= 1/2 (by
    # Fractions below); after rounding 1/6 + 1/6 differs from 1/3 in the last digit, which
    # without a tolerance drops one of them (p = 0.5).
    diffs = [Fraction(1, 6), Fraction(-1, 3), Fraction(1, 2), Fraction(1, 6)]
    observed = abs(sum(diffs))
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, diffs, strict=True))) >= observed
        for signs in itertools.product((1, -1), repeat=4)
    )
    assert extreme / 16 == 0.625
    assert sign_flip_test([float(d) for d in diffs]).p_value == pytest.approx(0.625)


def test_sign_flip_monte_carlo_when_the_distribution_is_too_large() -> None:
    rng = random.Random(5)
    diffs = [rng.random() - 0.3 for _ in range(40)]  # 2**40 distinct sums: not enumerable
    first = sign_flip_test(diffs, seed=1, n_draws=2000)
    assert not first.exact and first.draws == 2000
    assert first == sign_flip_test(diffs, seed=1, n_draws=2000)  # seeded
    # a clear shift: few or no draws are as extreme, and the (k+1)/(n+1) rule keeps p > 0
    assert first.p_value >= 1 / 2001 and first.p_value < 0.01
    null = [d * (1 if i % 2 else -1) for i, d in enumerate([0.3] * 40)]
    assert sign_flip_test(null, n_draws=500).p_value == 1.0  # exact: one magnitude
