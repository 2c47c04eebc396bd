"""Hypervolume of the front after each completed trial, in a normalised objective box.

Objectives differ by six orders of magnitude (accuracy ~1, parameters ~1e6), so each is scaled to its
observed range over the completed trials and turned into minimisation: 0 = the best value seen, 1 = the
worst. The reference point is 1.1 in every objective (10% past the worst trial, so every completed trial
adds volume). The largest possible value is therefore 1.1^d; values compare trials within one study, not
across studies. Computed by optuna's public ``optuna.visualization.plot_hypervolume_history`` on an
in-memory copy of the normalised trials (its private ``optuna._hypervolume`` is not used).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import optuna
from optuna.trial import TrialState, create_trial

from .load import StudyData

REFERENCE = 1.1


def normalised(data: StudyData) -> list[list[float]]:
    """Each completed trial's objectives scaled to [0, 1], 0 best, in ``data.completed`` order."""
    return normalise([[r.value(n) for n in data.objectives] for r in data.completed], data.directions)


def normalise(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[list[float]]:
    """Objective vectors scaled per objective to [0, 1] over ``points``: 0 the best value seen, 1 the worst."""
    columns = []
    for values, direction in zip(zip(*points), directions):
        best, worst = (max(values), min(values)) if direction == "maximize" else (min(values), max(values))
        span = worst - best
        columns.append([(v - best) / span if span else 0.0 for v in values])
    return [list(point) for point in zip(*columns)]


def hypervolume_history(data: StudyData) -> tuple[list[int], list[float]]:
    """``(trial numbers, hypervolume after each)`` over the completed trials; infeasible ones add nothing."""
    done = data.completed
    points = normalised(data)
    if len(data.objectives) == 1:
        history, best = [], REFERENCE
        for row, (v,) in zip(done, points):
            best = min(best, v) if row.feasible else best
            history.append(REFERENCE - best)
        return [r.number for r in done], history
    xs, ys = hypervolume_of(points, [r.feasible for r in done])
    # the shadow study numbers its trials 0..n-1 in the same order as ``done``
    return [done[i].number for i in xs], ys


def hypervolume_of(points: list[list[float]], feasible: list[bool] | None = None) -> tuple[list[int], list[float]]:
    """Hypervolume after each of ``points`` (already normalised, minimised, reference 1.1 per objective)."""
    feasible = feasible or [True] * len(points)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line for the shadow
    try:
        shadow = optuna.create_study(directions=["minimize"] * len(points[0]))
    finally:
        optuna.logging.set_verbosity(verbosity)
    shadow.add_trials([create_trial(state=TrialState.COMPLETE, values=p,
                                    system_attrs={"constraints": [0.0 if ok else 1.0]})
                       for p, ok in zip(points, feasible)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figure = optuna.visualization.plot_hypervolume_history(shadow, [REFERENCE] * len(points[0]))
    return [int(i) for i in figure.data[0].x], [float(v) for v in figure.data[0].y]
