"""The fronts of a search, in one place: plain Pareto front, noise-aware front, Pareto ranks and hypervolume.

Search progress, reports, export and benchmarks all call these. The parameter axes (trainable, active)
are exact; only the accuracy-side signal is noisy, so the noise-aware front asks for a *significant*
paired gain before a larger config earns its place. Non-dominated sorting and hypervolume are moocore's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol, Sequence

import moocore
import numpy as np

from .paired import UNKNOWN_SEED_VARIANCE, SeedVariance, compare, pooled_seed_variance
from .metrics import PARAMETER_OBJECTIVES
from .records import SIGNALS, QuestionRecords, stored_records

REFERENCE = 1.1  # reference point of the normalised hypervolume box (10% past the worst value seen)


def _as_minimised(points: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    pts = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    bad = [d for d in directions if d not in ("minimize", "maximize")]
    if bad:
        raise ValueError(f"directions must be 'minimize' or 'maximize', got {bad}")
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    return pts * signs


def plain_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (point estimates; duplicates all stay)."""
    if len(points) == 0:
        return []
    mask = moocore.is_nondominated(_as_minimised(points, directions), keep_weakly=True)
    return [i for i, keep in enumerate(mask) if keep]


def dominated_by(points: Sequence[Sequence[float]], others: Sequence[Sequence[float]],
                 directions: Sequence[str]) -> list[bool]:
    """For each of ``points``: whether some point of ``others`` dominates it (better somewhere, no worse anywhere)."""
    out = []
    for p in points:
        pool = [*others, p]
        out.append(len(pool) - 1 not in plain_front(pool, directions))
    return out


def pareto_ranks(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Non-dominated sorting: 1 for the front, 2 for the front of the rest, and so on."""
    if len(points) == 0:
        return []
    return [int(r) + 1 for r in moocore.pareto_rank(_as_minimised(points, directions))]  # moocore counts from 0


def normalise(points: Sequence[Sequence[float]], directions: Sequence[str],
              box: tuple[Sequence[float], Sequence[float]] | None = None) -> np.ndarray:
    """Points scaled per objective to [0, 1], 0 the best and 1 the worst value of ``box`` (default: the points).

    ``box`` = (best, worst) per objective in the objectives' own units lets several arms share one box.
    """
    pts = np.asarray(points, dtype=float).reshape(len(points), len(directions))
    if box is None:
        best = [pts[:, j].max() if d == "maximize" else pts[:, j].min() for j, d in enumerate(directions)]
        worst = [pts[:, j].min() if d == "maximize" else pts[:, j].max() for j, d in enumerate(directions)]
    else:
        best, worst = box
    best, worst = np.asarray(best, dtype=float), np.asarray(worst, dtype=float)
    span = worst - best
    safe = np.where(span == 0, 1.0, span)
    return np.where(span == 0, 0.0, (pts - best) / safe)


def hypervolume(normalised: np.ndarray) -> float:
    """Hypervolume of already normalised, minimised points against REFERENCE in every objective."""
    pts = np.asarray(normalised, dtype=float)
    if pts.size == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=[REFERENCE] * pts.shape[1]))


def hypervolume_history(normalised: np.ndarray, feasible: Sequence[bool] | None = None) -> list[float]:
    """Hypervolume after each point in order (infeasible points add nothing)."""
    pts = np.asarray(normalised, dtype=float)
    feasible = [True] * len(pts) if feasible is None else list(feasible)
    history, kept = [], []
    for point, ok in zip(pts, feasible):
        if ok:
            kept.append(point)
        history.append(hypervolume(np.asarray(kept)) if kept else 0.0)
    return history


@dataclass(frozen=True)
class Candidate:
    """One config as the noise-aware front sees it: exact parameter counts and noisy per-question values.

    ``values`` is ``(seeds, questions)`` on the study's fixed question set, higher is better (correct
    0/1, gold-choice probability, or minus the answer NLL); ``params`` are minimised.
    """

    key: str
    params: tuple[float, ...]
    values: np.ndarray
    order: int = 0  # tie-break between equal means: the earlier config (lower trial number) wins

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


def _no_larger(small: Candidate, big: Candidate) -> bool:
    return all(s <= b for s, b in zip(small.params, big.params))


class _Significance:
    """Memoised one-sided paired tests between candidates (by key): sorting re-asks the same pairs every peel."""

    def __init__(self, alpha: float, seed_variance: SeedVariance) -> None:
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.alpha, self.seed_variance, self._seen = alpha, seed_variance, {}

    def greater(self, a: Candidate, b: Candidate) -> bool:
        if (a.key, b.key) not in self._seen:
            self._seen[(a.key, b.key)] = compare(a.values, b.values, seed_variance=self.seed_variance
                                                 ).significantly_greater(self.alpha)
        return self._seen[(a.key, b.key)]


def earns_place(c: Candidate, others: Sequence[Candidate], *, alpha: float,
                seed_variance: SeedVariance, _tests: _Significance | None = None) -> bool:
    """``c`` is on the noise-aware front: among configs of the very same size it has the best mean, and it is
    significantly better (paired, one-sided ``alpha``) than every config no larger on every parameter axis."""
    tests = _tests or _Significance(alpha, seed_variance)
    for o in others:
        if o.key == c.key or not _no_larger(o, c):
            continue
        if tuple(o.params) == tuple(c.params):
            if (o.mean, -o.order) > (c.mean, -c.order):
                return False
        elif not tests.greater(c, o):
            return False
    return True


def noise_aware_front(candidates: Sequence[Candidate], *, alpha: float = 0.05,
                      seed_variance: SeedVariance = UNKNOWN_SEED_VARIANCE, _tests: _Significance | None = None
                      ) -> list[int]:
    """Indices of the candidates that earn their place (see ``earns_place``); the smallest always does."""
    tests = _tests or _Significance(alpha, seed_variance)
    return [i for i, c in enumerate(candidates)
            if earns_place(c, candidates, alpha=alpha, seed_variance=seed_variance, _tests=tests)]


def noise_aware_sort(candidates: Sequence[Candidate], *, alpha: float = 0.05,
                     seed_variance: SeedVariance = UNKNOWN_SEED_VARIANCE) -> list[list[int]]:
    """Noise-aware non-dominated sorting: the noise-aware front, then the front of the rest, and so on.

    Every index appears in exactly one front; each peel is non-empty (the smallest config earns its place).
    Each pair is tested once however many peels ask.
    """
    tests = _Significance(alpha, seed_variance)
    left, fronts = list(range(len(candidates))), []
    while left:
        pool = [candidates[i] for i in left]
        front = [left[j] for j in noise_aware_front(pool, alpha=alpha, seed_variance=seed_variance, _tests=tests)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def crowding_distance(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II crowding distance (Deb et al. 2002) of one front's points: per objective, the gap between a
    point's two neighbours over the objective's range; boundary points get infinity."""
    pts = np.asarray(points, dtype=float).reshape(len(points), -1)
    n = len(pts)
    distance = np.zeros(n)
    if n <= 2:
        return [float("inf")] * n
    for j in range(pts.shape[1]):
        order = np.argsort(pts[:, j], kind="stable")
        span = pts[order[-1], j] - pts[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (pts[order[2:], j] - pts[order[:-2], j]) / span
    return [float(d) for d in distance]


@dataclass(frozen=True)
class Run:
    """One training run of a config: its key (config JSON), trial number, exact parameter counts, records."""

    key: str
    number: int
    params: tuple[float, ...]
    records: QuestionRecords


def group_runs(runs: Sequence[Run], signal: str) -> list[Candidate]:
    """One Candidate per config (its runs' records stacked as seeds), ordered by first trial number.

    Raises:
        ValueError: runs scored on different question sets (their fingerprints differ).
    """
    prints = {r.records.fingerprint for r in runs}
    if len(prints) > 1:
        raise ValueError(f"runs were scored on {len(prints)} different question sets ({sorted(prints)}); "
                         "paired comparisons need one")
    by_key: dict[str, list[Run]] = {}
    for r in sorted(runs, key=lambda r: r.number):
        by_key.setdefault(r.key, []).append(r)
    return [Candidate(key=key, params=group[0].params, order=group[0].number,
                      values=np.stack([r.records.values(signal) for r in group]))
            for key, group in by_key.items()]


def seed_variance_of(candidates: Sequence[Candidate]) -> SeedVariance:
    """Training-seed variance pooled over the candidates trained with two or more seeds."""
    return pooled_seed_variance([c.values for c in candidates])


class TrialLike(Protocol):
    """What ``search_front`` reads of a trial (an Optuna FrozenTrial is one)."""

    number: int
    user_attrs: dict[str, Any]


_PARAM_KEYS = {"trainable": "trainable_params", "active": "active_params"}


def signal_of(objectives: Sequence[str]) -> str:
    """The study's accuracy-side objective (accuracy when it has none)."""
    return next((o for o in objectives if o in SIGNALS), "accuracy")


@dataclass(frozen=True)
class SearchFront:
    """A search's configs as candidates, its noise-aware front and the seed variance it rests on."""

    candidates: list[Candidate]
    front: list[int]  # indices into candidates
    seed_variance: SeedVariance
    trials: dict[str, list[int]]  # config key -> its trial numbers (replicates), in order
    signal: str
    axes: tuple[str, ...]

    def on_front(self) -> set[int]:
        """Trial numbers of every replicate of the configs on the noise-aware front."""
        return {n for i in self.front for n in self.trials[self.candidates[i].key]}


def search_front(trials: Iterable[TrialLike], objectives: Sequence[str], *, alpha: float = 0.05) -> SearchFront:
    """Group completed trials (with records) by config and find the noise-aware front over the study's
    parameter axes (trainable when it has none), on the study's accuracy-side signal."""
    signal = signal_of(objectives)
    axes = tuple(o for o in objectives if o in PARAMETER_OBJECTIVES) or ("trainable",)
    runs, numbers = [], {}
    for t in trials:
        records = stored_records(t.user_attrs)
        key, m = t.user_attrs.get("config"), t.user_attrs.get("metrics") or {}
        if records is None or key is None:
            continue
        one_shot_again = t.user_attrs.get("evaluator") == "one-shot" and key in numbers
        numbers.setdefault(key, []).append(t.number)
        if one_shot_again:  # scored inside one super-adapter: a re-proposal repeats the same draw, not a new seed
            continue
        runs.append(Run(key=key, number=t.number, params=tuple(float(m[_PARAM_KEYS[a]]) for a in axes),
                        records=records))
    candidates = group_runs(runs, signal)
    seed_variance = seed_variance_of(candidates)
    front = noise_aware_front(candidates, alpha=alpha, seed_variance=seed_variance) if candidates else []
    return SearchFront(candidates, front, seed_variance, {k: sorted(v) for k, v in numbers.items()}, signal, axes)
