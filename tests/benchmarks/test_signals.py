"""benchmarks.signals' statistics against float64 loops: Spearman, Kendall tau-b, the percentile bootstrap
over configs and the one-way ANOVA spread, on random inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmarks.signals import rank_agreement, seed_mean_correlation, spread


def _ranks(x):
    """Average ranks (1-based) by a double loop."""
    return np.array([sum(1.0 for b in x if b < a) + (sum(1.0 for b in x if b == a) + 1) / 2 for a in x])


def _pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / np.sqrt((dx * dx).sum() * (dy * dy).sum()))


def _kendall_b(x, y):
    """Kendall tau-b by counting pairs: (C - D) / sqrt((n0 - ties_x) (n0 - ties_y))."""
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tx += sx == 0
        ty += sy == 0
        c += sx * sy > 0
        d += sx * sy < 0
    n0 = len(x) * (len(x) - 1) / 2
    return (c - d) / np.sqrt((n0 - tx) * (n0 - ty))


def _loop_mean(low, high, corr, cross):
    out = []
    for s in range(low.shape[0]):
        rows = [r for r in range(high.shape[0]) if not (cross and r == s)]
        out.append(corr(low[s], high[rows].mean(axis=0)))
    return float(np.mean(out))


def _random(seed, seeds=2, configs=12):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=configs)
    low = np.round(true + rng.normal(size=(seeds, configs)), 1)  # rounded: ties, as accuracies have
    high = np.round(true + 0.3 * rng.normal(size=(seeds, configs)), 2)
    return low, high


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cross", [False, True])
def test_correlations_match_loops(seed, cross):
    low, high = _random(seed, seeds=3)
    spearman = _loop_mean(low, high, lambda x, y: _pearson(_ranks(x), _ranks(y)), cross)
    kendall = _loop_mean(low, high, _kendall_b, cross)
    assert seed_mean_correlation(low, high, kind="spearman", cross=cross) == pytest.approx(spearman, abs=1e-12)
    assert seed_mean_correlation(low, high, kind="kendall", cross=cross) == pytest.approx(kendall, abs=1e-12)


def test_constant_signal_ranks_nothing():
    low, high = _random(0)
    low[:] = 0.5
    assert seed_mean_correlation(low, high, kind="spearman") == 0.0


@pytest.mark.parametrize("baseline", [False, True])
def test_bootstrap_ci_matches_a_resampling_loop(baseline):
    low, high = _random(3)
    other = np.round(low + np.random.default_rng(9).normal(size=low.shape), 1)
    stat = (lambda lo, hi, ot: seed_mean_correlation(lo, hi, kind="spearman")
            - (seed_mean_correlation(ot, hi, kind="spearman") if baseline else 0.0))
    rng = np.random.default_rng(1)
    values = []
    for _ in range(2000):
        idx = rng.integers(0, low.shape[1], low.shape[1])
        values.append(stat(low[:, idx], high[:, idx], other[:, idx]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    got = rank_agreement(low, high, kind="spearman", baseline=other if baseline else None, n_resamples=2000, seed=7)
    assert got["value"] == pytest.approx(stat(low, high, other), abs=1e-12)
    assert got["low"] == pytest.approx(lo, abs=0.1) and got["high"] == pytest.approx(hi, abs=0.1)  # Monte Carlo
    assert got["low"] <= got["value"] <= got["high"]


@pytest.mark.parametrize("seed", range(3))
def test_spread_matches_anova_loops(seed):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(3, 10)) + rng.normal(size=10)
    seeds, configs = values.shape
    grand = sum(v for row in values for v in row) / values.size
    means = [sum(values[s][c] for s in range(seeds)) / seeds for c in range(configs)]
    ssb = sum(seeds * (m - grand) ** 2 for m in means)
    ssw = sum((values[s][c] - means[c]) ** 2 for s in range(seeds) for c in range(configs))
    msb, msw = ssb / (configs - 1), ssw / (configs * (seeds - 1))
    got = spread(values)
    assert got["f"] == pytest.approx(msb / msw, rel=1e-10)
    assert got["seed_sd"] == pytest.approx(np.sqrt(msw), rel=1e-10)
    assert got["config_sd"] == pytest.approx(np.sqrt(sum((m - grand) ** 2 for m in means) / (configs - 1)), rel=1e-10)
    assert got["icc"] == pytest.approx((msb - msw) / (msb + (seeds - 1) * msw), rel=1e-10)
