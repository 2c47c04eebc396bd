"""Fronts and hypervolume against brute-force definitions on random studies."""

import itertools

import numpy as np
import pytest
from scipy import stats

from objectives.front import (Candidate, dominated_by, hypervolume, hypervolume_history, noise_aware_front, normalise,
                              pareto_ranks, plain_front)

DIRS = ["maximize", "minimize", "minimize"]


def _dominates(p, q, dirs):
    sign = [1 if d == "maximize" else -1 for d in dirs]
    better_eq = all(s * a >= s * b for s, a, b in zip(sign, p, q))
    return better_eq and any(s * a > s * b for s, a, b in zip(sign, p, q))


@pytest.mark.parametrize("seed", range(5))
def test_plain_front_and_ranks_equal_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.integers(90, 100, 40) / 100, rng.integers(1, 10, 40), rng.integers(1, 10, 40)])
    front = {i for i in range(len(pts)) if not any(_dominates(pts[j], pts[i], DIRS) for j in range(len(pts)))}
    assert set(plain_front(pts.tolist(), DIRS)) == front
    ranks, rest, level = {}, set(range(len(pts))), 1
    while rest:
        layer = {i for i in rest if not any(_dominates(pts[j], pts[i], DIRS) for j in rest)}
        ranks.update({i: level for i in layer})
        rest -= layer
        level += 1
    assert pareto_ranks(pts.tolist(), DIRS) == [ranks[i] for i in range(len(pts))]


def _hv_2d(points, ref):
    pts = sorted(map(tuple, points))
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def _hv_lattice_3d(points, ref, step):
    """Exact for points on a lattice: count the lattice cells some point dominates."""
    cells = 0
    axes = [np.arange(0, r, step) for r in ref]
    for cell in itertools.product(*axes):
        cells += any(all(p[k] <= cell[k] for k in range(3)) for p in points)
    return cells * step ** 3


@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    p2 = rng.random((12, 2))
    assert hypervolume(p2) == pytest.approx(_hv_2d(p2, (1.1, 1.1)), rel=1e-12)
    p3 = rng.integers(0, 11, (8, 3)) / 10
    assert hypervolume(p3) == pytest.approx(_hv_lattice_3d(p3, (1.1, 1.1, 1.1), 0.1), rel=1e-9)


def test_hypervolume_history_ignores_infeasible_points():
    pts = np.array([[0.5, 0.5], [0.0, 0.0], [0.2, 0.2]])
    hist = hypervolume_history(pts, [True, False, True])
    assert hist[0] == pytest.approx(0.36) and hist[1] == hist[0] and hist[2] == pytest.approx(0.81)


def test_normalise_with_a_shared_box():
    out = normalise([[0.9, 10], [0.8, 20]], ["maximize", "minimize"], box=([1.0, 0], [0.5, 40]))
    assert np.allclose(out, [[0.2, 0.25], [0.4, 0.5]])


def _brute_noise_aware(cands, alpha):
    """The definition by explicit loops, with scipy's paired t-test as the significance test (one seed each)."""
    keep = []
    for i, c in enumerate(cands):
        ok = True
        for j, o in enumerate(cands):
            if i == j or not all(a <= b for a, b in zip(o.params, c.params)):
                continue
            if tuple(o.params) == tuple(c.params):
                ok &= not (o.mean > c.mean or (o.mean == c.mean and o.order < c.order))
            else:
                d = c.values[0] - o.values[0]
                if np.all(d == 0):
                    ok = False
                else:
                    ok &= stats.ttest_rel(c.values[0], o.values[0], alternative="greater").pvalue < alpha
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_noise_aware_front_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_q = 120
    difficulty = rng.normal(0.8, 1.2, n_q)
    cands = []
    for k in range(14):
        params = (float(rng.integers(1, 6)), float(rng.integers(1, 6)))
        effect = 0.15 * (params[0] + params[1]) if seed % 2 else 0.0
        p = 1 / (1 + np.exp(-(difficulty + effect)))
        cands.append(Candidate(key=f"c{k}", params=params, values=(rng.random((1, n_q)) < p).astype(float), order=k))
    got = noise_aware_front(cands, alpha=0.05)
    assert got == _brute_noise_aware(cands, 0.05)
    plain = plain_front([[c.mean, *c.params] for c in cands], DIRS)
    # a noise-aware member is on the plain front, or ties in size with a plain-front member
    for i in got:
        assert i in plain or any(tuple(cands[j].params) == tuple(cands[i].params) for j in plain)


def test_noise_aware_front_keeps_the_smallest_and_drops_a_lucky_large_config():
    rng = np.random.default_rng(0)
    base = (rng.random((1, 200)) < 0.7).astype(float)
    lucky = base.copy()
    lucky[0, np.flatnonzero(base[0] == 0)[:2]] = 1.0  # two more right answers: inside the noise
    clear = base.copy()
    clear[0, np.flatnonzero(base[0] == 0)[:30]] = 1.0  # thirty more: a real gain
    cands = [Candidate("small", (1.0, 1.0), base, 0), Candidate("lucky", (5.0, 5.0), lucky, 1),
             Candidate("clear", (9.0, 9.0), clear, 2)]
    assert noise_aware_front(cands) == [0, 2]
    assert plain_front([[c.mean, *c.params] for c in cands], DIRS) == [0, 1, 2]


@pytest.mark.parametrize("seed", range(3))
def test_dominated_by_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 5, (10, 3)).astype(float).tolist()
    others = rng.integers(0, 5, (6, 3)).astype(float).tolist()
    dirs = ["minimize"] * 3
    assert dominated_by(pts, others, dirs) == [any(_dominates(o, p, dirs) for o in others) for p in pts]
