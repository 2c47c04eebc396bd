"""Uncertainty of accuracies and paired comparisons of configs scored on the same questions.

An accuracy is a sample twice over: of questions (the validation set is one draw of the task) and of
training seeds (one fine-tune is one draw of the optimiser's noise). Every comparison here is *paired*
on questions (both configs answered the same ones) and adds the training-seed variance, pooled over the
configs the study trained more than once. docs/statistics.md gives the model and what it covers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import special, stats


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (question sampling only), by scipy."""
    if n <= 0:
        raise ValueError(f"wilson_interval: n must be positive, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: successes must be in 0..{n}, got {successes}")
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value: are ``a`` and ``b`` (right/wrong on the same questions) equally accurate?

    Only discordant questions carry information; under the null each is a fair coin (scipy's binomtest, p = 1/2).
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mcnemar_exact: outcome vectors must be 1-D and of one length, got {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


@dataclass(frozen=True)
class Interval:
    """A difference (or a mean) with its confidence interval."""

    estimate: float
    low: float
    high: float
    confidence: float


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 4000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Percentile bootstrap of ``mean(a) - mean(b)`` resampling questions jointly (paired)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_bootstrap: vectors must be 1-D, non-empty and of one length, got {a.shape}, {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_resamples, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), confidence)


@dataclass(frozen=True)
class SeedVariance:
    """Pooled variance, across training seeds, of a config's mean score on the fixed question set.

    ``df`` is its degrees of freedom (sum of seeds - 1 over the replicated configs); 0 means unknown.
    """

    variance: float
    df: int
    configs: int

    @property
    def known(self) -> bool:
        return self.df > 0


UNKNOWN_SEED_VARIANCE = SeedVariance(variance=0.0, df=0, configs=0)


def pooled_seed_variance(groups: Sequence[np.ndarray]) -> SeedVariance:
    """Pool the across-seed variance of the per-seed mean over every config with two or more seeds.

    ``groups``: one ``(seeds, questions)`` array of per-question values per config. Assumes the seed
    variance is alike across configs (homoscedastic), which pooling needs and docs/statistics.md states.
    """
    total, df, configs = 0.0, 0, 0
    for values in groups:
        values = np.atleast_2d(np.asarray(values, dtype=float))
        if values.shape[0] < 2:
            continue
        means = values.mean(axis=1)
        total += float(np.sum((means - means.mean()) ** 2))
        df += values.shape[0] - 1
        configs += 1
    return SeedVariance(variance=total / df, df=df, configs=configs) if df else UNKNOWN_SEED_VARIANCE


@dataclass(frozen=True)
class Comparison:
    """``mean(a) - mean(b)`` over questions and seeds, its interval, and the one-sided p-value of a > b."""

    delta: float
    low: float
    high: float
    p_greater: float
    n_questions: int
    seeds_a: int
    seeds_b: int
    covers_seeds: bool  # the interval includes training-seed variance (else question sampling only)
    confidence: float

    def significantly_greater(self, alpha: float) -> bool:
        return self.p_greater < alpha

    def non_inferior(self, margin: float) -> bool:
        """The lower end of the interval is above ``-margin``."""
        return self.low > -margin


def compare(a: np.ndarray, b: np.ndarray, *, seed_variance: SeedVariance = UNKNOWN_SEED_VARIANCE,
            confidence: float = 0.95) -> Comparison:
    """Paired comparison of two configs' ``(seeds, questions)`` per-question values (higher is better).

    Var(delta) = Var_q(u) / n + s2 (1/S_a + 1/S_b), u = per-question difference of the seed means, s2 the
    pooled seed variance. The question term also holds part of the seed noise, so the sum is conservative.
    Degrees of freedom by Welch-Satterthwaite over the two terms.
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"compare: both configs must be scored on the same non-empty question set, got "
                         f"{a.shape[1]} and {b.shape[1]} questions")
    n = a.shape[1]
    u = a.mean(axis=0) - b.mean(axis=0)
    delta = float(u.mean())
    v_q = float(np.var(u, ddof=1)) / n if n > 1 else 0.0
    v_s = seed_variance.variance * (1 / a.shape[0] + 1 / b.shape[0]) if seed_variance.known else 0.0
    var = v_q + v_s
    if var <= 0:  # identical outcomes on every question and no seed noise known
        p = 0.5 if delta == 0 else (0.0 if delta > 0 else 1.0)
        return Comparison(delta, delta, delta, p, n, a.shape[0], b.shape[0], seed_variance.known, confidence)
    terms = [(v_q, n - 1)] + ([(v_s, seed_variance.df)] if v_s > 0 else [])
    df = var ** 2 / sum(v ** 2 / d for v, d in terms if v > 0 and d > 0) if any(d > 0 for _, d in terms) else math.inf
    se = math.sqrt(var)
    # Student t quantile and survival function by scipy.special (the frozen stats.t object costs ~10x more,
    # and noise-aware sorting runs this for every pair of configs)
    half = float(special.stdtrit(df, 0.5 + confidence / 2)) * se
    return Comparison(delta=delta, low=delta - half, high=delta + half, p_greater=float(special.stdtr(df, -delta / se)),
                      n_questions=n, seeds_a=a.shape[0], seeds_b=b.shape[0], covers_seeds=seed_variance.known,
                      confidence=confidence)


def mean_interval(values: np.ndarray, *, seed_variance: SeedVariance = UNKNOWN_SEED_VARIANCE,
                  confidence: float = 0.95) -> Interval:
    """A config's mean over ``(seeds, questions)`` with an interval covering questions and (when known) seeds."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    n, s = values.shape[1], values.shape[0]
    m = values.mean(axis=0)
    v_q = float(np.var(m, ddof=1)) / n if n > 1 else 0.0
    v_s = seed_variance.variance / s if seed_variance.known else 0.0
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(v_q + v_s)
    est = float(m.mean())
    return Interval(est, est - half, est + half, confidence)
