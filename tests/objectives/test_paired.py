"""Paired statistics against scipy and float64 loops on synthetic outcome vectors."""

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from objectives.paired import (SeedVariance, compare, mcnemar_exact, mean_interval, paired_bootstrap,
                               pooled_seed_variance, wilson_interval)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (50, 100), (97, 100), (144, 144), (1, 1000)])
def test_wilson_matches_the_published_formula(k, n):
    """Wilson (1927): (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), in float64."""
    lo, hi = wilson_interval(k, n)
    z, p = 1.959963984540054, k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert lo == pytest.approx(max(0.0, (centre - half) / (1 + z * z / n)), abs=1e-9)
    assert hi == pytest.approx(min(1.0, (centre + half) / (1 + z * z / n)), abs=1e-9)


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_matches_the_exact_binomial_tail(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    a = rng.random(n) < rng.uniform(0.3, 0.9)
    b = np.where(rng.random(n) < 0.15, ~a, a) if seed % 2 else rng.random(n) < 0.6
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n, k = only_a + only_b, min(only_a, only_b)  # float64 loop over the exact binomial tail, doubled
    ref = min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n) if n else 1.0
    assert mcnemar_exact(a, b) == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_paired_bootstrap_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = (rng.random(150) < 0.7).astype(float)
    b = np.where(rng.random(150) < 0.2, 1 - a, a)
    ours = paired_bootstrap(a, b, n_resamples=20000, seed=seed)
    ref = stats.bootstrap((a, b), lambda x, y: np.mean(x) - np.mean(y), paired=True, vectorized=False,
                          n_resamples=20000, method="percentile", random_state=seed + 100).confidence_interval
    assert ours.estimate == pytest.approx(a.mean() - b.mean())
    assert ours.low == pytest.approx(ref.low, abs=0.01) and ours.high == pytest.approx(ref.high, abs=0.01)


def test_compare_without_seed_noise_is_the_paired_t_test():
    rng = np.random.default_rng(0)
    a = rng.random((1, 200))
    b = a - 0.02 + 0.1 * rng.standard_normal((1, 200))
    c = compare(a, b)
    ref = stats.ttest_rel(a[0], b[0], alternative="greater")
    assert c.p_greater == pytest.approx(ref.pvalue, rel=1e-9)
    ci = stats.ttest_rel(a[0], b[0]).confidence_interval(0.95)
    assert (c.low, c.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert not c.covers_seeds


def test_pooled_seed_variance_matches_a_float64_loop():
    rng = np.random.default_rng(1)
    groups = [rng.random((s, 30)) for s in (1, 2, 3, 4)]
    num = sum(statistics.variance(g.mean(axis=1).tolist()) * (len(g) - 1) for g in groups if len(g) > 1)
    pooled = pooled_seed_variance(groups)
    assert pooled.df == 1 + 2 + 3 and pooled.configs == 3
    assert pooled.variance == pytest.approx(num / 6, rel=1e-12)
    assert not pooled_seed_variance([g[:1] for g in groups]).known


def _simulated_config(rng, difficulty, effect, seeds, seed_sd):
    """Right/wrong per (seed, question): a shared difficulty, a seed-level shift and independent flips."""
    shift = seed_sd * rng.standard_normal((seeds, 1))
    p = 1 / (1 + np.exp(-(difficulty[None, :] + effect + shift)))
    return (rng.random(p.shape) < p).astype(float)


def test_compare_with_seed_variance_keeps_its_false_positive_rate():
    """Two equally good configs, seed noise larger than config noise: the test rejects at most ~alpha."""
    rng = np.random.default_rng(7)
    rejections, runs = 0, 300
    for _ in range(runs):
        difficulty = rng.normal(0.5, 1.5, size=150)
        replicated = [_simulated_config(rng, difficulty, 0.0, 3, 0.4) for _ in range(4)]
        seed_var = pooled_seed_variance(replicated)
        a = _simulated_config(rng, difficulty, 0.0, 1, 0.4)
        b = _simulated_config(rng, difficulty, 0.0, 1, 0.4)
        rejections += compare(a, b, seed_variance=seed_var).significantly_greater(0.05)
    assert rejections / runs <= 0.07


def test_question_only_test_is_fooled_by_seed_noise_and_the_seed_term_is_not():
    """The reason seed variance is in the test: with a strong seed shift, question-only p-values over-reject."""
    rng = np.random.default_rng(3)
    naive = aware = 0
    for _ in range(200):
        difficulty = rng.normal(0.5, 1.5, size=150)
        seed_var = pooled_seed_variance([_simulated_config(rng, difficulty, 0.0, 3, 0.8) for _ in range(4)])
        a, b = (_simulated_config(rng, difficulty, 0.0, 1, 0.8) for _ in range(2))
        naive += compare(a, b).significantly_greater(0.05)
        aware += compare(a, b, seed_variance=seed_var).significantly_greater(0.05)
    assert naive > 2 * aware


def test_mean_interval_with_seed_variance_is_wider():
    values = np.random.default_rng(0).random((2, 100))
    plain = mean_interval(values)
    wider = mean_interval(values, seed_variance=SeedVariance(variance=0.001, df=4, configs=2))
    assert wider.high - wider.low > plain.high - plain.low
    assert plain.estimate == pytest.approx(values.mean())
    half = 1.959963984540054 * math.sqrt(np.var(values.mean(axis=0), ddof=1) / 100)
    assert plain.high - plain.estimate == pytest.approx(half, rel=1e-9)


def test_compare_refuses_different_question_sets():
    with pytest.raises(ValueError, match="same non-empty question set"):
        compare(np.zeros((1, 10)), np.zeros((1, 11)))
