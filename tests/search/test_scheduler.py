"""Promotion order of the successive-halving scheduler against a brute-force definition (scipy's paired t-test,
all-pairs loops, neighbour-scan crowding distance) on synthetic rung results."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from objectives import Fidelity
from objectives.front import Candidate, crowding_distance, noise_aware_sort
from search.scheduler import Rung, Schedule, default_rungs, parse_rungs, promoted_count, promotion_order


def _candidates(rng, n, questions=80, axes=2):
    out = []
    for i in range(n):
        params = tuple(float(x) for x in rng.uniform(1, 10, size=axes))
        skill = 0.4 + 0.05 * sum(params) / axes + rng.normal(0, 0.03)  # bigger tends to be better, noisily
        values = np.clip(rng.normal(skill, 0.25, size=(1, questions)), 0, 1)  # one seed: gold-choice probs
        out.append(Candidate(key=f"c{i}", params=params, values=values, order=i))
    return out


def _greater(a, b, alpha):
    return stats.ttest_rel(a.values[0], b.values[0], alternative="greater").pvalue < alpha


def _earns(c, pool, alpha):
    for o in pool:
        if o is c or not all(x <= y for x, y in zip(o.params, c.params)):
            continue
        if o.params == c.params:
            if (o.mean, -o.order) > (c.mean, -c.order):
                return False
        elif not _greater(c, o, alpha):
            return False
    return True


def _brute_crowding(points):
    points = [tuple(p) for p in points]
    if len(points) <= 2:
        return [math.inf] * len(points)
    out = []
    for p in points:
        d = 0.0
        for j in range(len(p)):
            col = [q[j] for q in points]
            below = [v for v in col if v < p[j]]
            above = [v for v in col if v > p[j]]
            if not below or not above:
                d = math.inf
                break
            d += (min(above) - max(below)) / (max(col) - min(col))
        out.append(d)
    return out


def _brute_order(cands, alpha):
    left, order = list(cands), []
    while left:
        front = [c for c in left if _earns(c, left, alpha)]
        cd = _brute_crowding([(-c.mean, *c.params) for c in front])
        ranked = sorted(zip(front, cd), key=lambda fc: (-fc[1], fc[0].params, fc[0].order))
        order += [c.order for c, _ in ranked]
        left = [c for c in left if c not in front]
    return order


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_promotion_order_equals_brute_force(seed, alpha):
    cands = _candidates(np.random.default_rng(seed), n=14)
    got = [cands[i].order for i in promotion_order(cands, alpha=alpha)]
    assert got == _brute_order(cands, alpha)
    assert sorted(got) == list(range(14))


def test_sorting_is_a_partition_whose_first_front_holds_the_smallest():
    cands = _candidates(np.random.default_rng(3), n=20)
    fronts = noise_aware_sort(cands)
    assert sorted(itertools.chain(*fronts)) == list(range(20)) and all(fronts)
    smallest = min(range(20), key=lambda i: cands[i].params)
    assert smallest in fronts[0]


def test_configs_not_separable_order_by_size():
    """Equal per-question values: nothing is significantly better, so the smaller config comes first."""
    values = np.random.default_rng(0).uniform(size=(1, 60))
    big = Candidate("big", (5.0, 5.0), values, order=0)
    small = Candidate("small", (1.0, 1.0), values + 1e-9, order=1)
    assert promotion_order([big, small]) == [1, 0]
    clearly = Candidate("better", (5.0, 5.0), np.clip(values + 0.5, 0, 2), order=0)
    assert promotion_order([clearly, small])[0] in (0, 1) and len(noise_aware_sort([clearly, small])) == 1


def test_crowding_distance_matches_the_neighbour_scan():
    pts = np.random.default_rng(1).uniform(size=(9, 3))
    assert np.allclose(crowding_distance(pts), _brute_crowding(pts))


def test_rungs_parse_default_and_validate():
    assert parse_rungs("4:50, 12:100,36:200") == (Rung(4, 50), Rung(12, 100), Rung(36, 200))
    assert default_rungs(36, 200, 3) == (Rung(4, 50), Rung(12, 67), Rung(36, 200))
    assert default_rungs(4, 20, 3) == (Rung(1, 20), Rung(4, 20))  # a repeated step count is dropped
    s = Schedule("asha", 3, parse_rungs("2:8,6:16"))
    assert Schedule.from_dict(s.to_dict()) == s
    f = s.fidelity(Fidelity(steps=6, max_eval_examples=16, eval_every=2), 0)
    assert (f.steps, f.max_eval_examples, f.eval_every) == (2, 8, 0)
    assert [promoted_count(n, 3) for n in (2, 3, 8, 9)] == [0, 1, 2, 3]
    for bad, match in [(("sh", 3, parse_rungs("6:8,2:16")), "steps must increase"),
                       (("sh", 1, parse_rungs("2:8,6:16")), "eta"), (("x", 3, parse_rungs("2:8,6:16")), "scheduler"),
                       (("sh", 3, parse_rungs("2:8")), "two rungs")]:
        with pytest.raises(ValueError, match=match):
            Schedule(*bad)
    with pytest.raises(ValueError, match="steps:questions"):
        parse_rungs("4-50")
