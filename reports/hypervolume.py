"""Hypervolume of the front after each completed trial, in a normalised objective box.

Objectives differ by six orders of magnitude (accuracy ~1, parameters ~1e6), so each is scaled to its
observed range over the completed trials and turned into minimisation: 0 = the best value seen, 1 = the
worst. The reference point is 1.1 in every objective (10% past the worst trial, so every completed trial
adds volume). The largest possible value is therefore 1.1^d; values compare trials within one study, not
across studies. The arithmetic is ``objectives.front`` (moocore), shared with search and benchmarks.
"""

from __future__ import annotations

from typing import Sequence

from objectives import front

from .load import StudyData

REFERENCE = front.REFERENCE


def normalised(data: StudyData) -> list[list[float]]:
    """Each completed trial's objectives scaled to [0, 1], 0 best, in ``data.completed`` order."""
    return normalise([[r.value(n) for n in data.objectives] for r in data.completed], data.directions)


def normalise(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[list[float]]:
    """Objective vectors scaled per objective to [0, 1] over ``points``: 0 the best value seen, 1 the worst."""
    return front.normalise(points, directions).tolist()


def hypervolume_history(data: StudyData) -> tuple[list[int], list[float]]:
    """``(trial numbers, hypervolume after each)`` over the completed trials; infeasible ones add nothing."""
    done = data.completed
    xs, ys = hypervolume_of(normalised(data), [r.feasible for r in done])
    return [done[i].number for i in xs], ys


def hypervolume_of(points: list[list[float]], feasible: list[bool] | None = None) -> tuple[list[int], list[float]]:
    """Hypervolume after each of ``points`` (already normalised, minimised, reference 1.1 per objective)."""
    return list(range(len(points))), front.hypervolume_history(points, feasible)
