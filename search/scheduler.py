"""Multi-objective successive halving: the rungs, and which configs of a rung are promoted to the next.

A config trains to rung 0 (few steps, few validation questions); at each rung the configs are ranked by
*noise-aware* non-dominated sorting (parameter counts exact, the accuracy-side signal compared with the paired
test on the rung's questions, configs not separable on it ordered by size), then by NSGA-II crowding distance
inside each front (MOASHA / SMAC3 style), and the top 1/eta go on to more steps *and* more questions.
``sh`` promotes a rung once it is complete; ``asha`` promotes as soon as a config is in the top 1/eta of the
configs the rung holds so far (Li et al. 2020), so many workers never wait for a slow rung.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

from objectives import Fidelity
from objectives.front import Candidate, crowding_distance, noise_aware_sort
from objectives.paired import UNKNOWN_SEED_VARIANCE, SeedVariance

SCHEDULERS = ("none", "sh", "asha")
MIN_QUESTIONS = 50  # a low rung scores at least this many validation questions (or all of them): a paired
# test on fewer cannot separate anything
DEFAULT_RUNGS = 3


@dataclass(frozen=True)
class Rung:
    """One fidelity level: train to ``steps`` optimiser steps in all, score the first ``questions`` questions."""

    steps: int
    questions: int


@dataclass(frozen=True)
class Schedule:
    """The scheduler's kind, reduction factor and rungs (increasing steps, non-decreasing questions)."""

    kind: str
    eta: int
    rungs: tuple[Rung, ...]

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS[1:]:
            raise ValueError(f"--scheduler must be one of {list(SCHEDULERS)}, got {self.kind!r}")
        if not (isinstance(self.eta, int) and self.eta >= 2):
            raise ValueError(f"--eta must be an integer >= 2, got {self.eta!r}")
        if len(self.rungs) < 2:
            raise ValueError(f"--rungs needs at least two rungs, got {len(self.rungs)}")
        for a, b in zip(self.rungs, self.rungs[1:]):
            if not (b.steps > a.steps and b.questions >= a.questions):
                raise ValueError(f"--rungs: steps must increase and questions must not decrease from rung to rung,"
                                 f" got {a.steps}:{a.questions} then {b.steps}:{b.questions}")
        if any(r.steps <= 0 or r.questions <= 0 for r in self.rungs):
            raise ValueError(f"--rungs: steps and questions must be positive, got {self.text()}")

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def fidelity(self, base: Fidelity, rung: int) -> Fidelity:
        """``base`` at rung ``rung``: its steps (cumulative) and its number of validation questions."""
        r = self.rungs[rung]
        return replace(base, steps=r.steps, max_eval_examples=r.questions, eval_every=0)

    def text(self) -> str:
        return ",".join(f"{r.steps}:{r.questions}" for r in self.rungs)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "eta": self.eta, "rungs": [[r.steps, r.questions] for r in self.rungs]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Schedule":
        return cls(kind=data["kind"], eta=int(data["eta"]), rungs=tuple(Rung(int(s), int(q)) for s, q in data["rungs"]))


def parse_rungs(text: str) -> tuple[Rung, ...]:
    """``"4:50,12:100,36:200"`` -> rungs (steps:questions, comma-separated)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    rungs = []
    for p in parts:
        m = re.fullmatch(r"(\d+):(\d+)", p)
        if not m:
            raise ValueError(f"--rungs must be comma-separated steps:questions pairs (e.g. 4:50,12:100,36:200), "
                             f"got {text!r}")
        rungs.append(Rung(int(m.group(1)), int(m.group(2))))
    return tuple(rungs)


def default_rungs(steps: int, questions: int, eta: int, n_rungs: int = DEFAULT_RUNGS) -> tuple[Rung, ...]:
    """Geometric rungs ending at (``steps``, ``questions``): each lower rung has 1/eta the steps and questions
    (at least 1 step and ``min(questions, MIN_QUESTIONS)`` questions); rungs that would repeat a step count go."""
    rungs: list[Rung] = []
    floor = min(questions, MIN_QUESTIONS)
    for k in range(n_rungs):
        scale = eta ** (n_rungs - 1 - k)
        rung = Rung(max(1, round(steps / scale)), max(floor, math.ceil(questions / scale)))
        if rungs and rung.steps <= rungs[-1].steps:
            continue
        rungs.append(rung)
    return tuple(rungs)


def promotion_order(candidates: Sequence[Candidate], *, alpha: float = 0.05,
                    seed_variance: SeedVariance = UNKNOWN_SEED_VARIANCE) -> list[int]:
    """Indices of ``candidates`` best first: noise-aware front by front, and inside a front by crowding distance
    over (mean signal, parameter counts), larger first; ties go to the smaller config, then the earlier one."""
    order: list[int] = []
    for front in noise_aware_sort(candidates, alpha=alpha, seed_variance=seed_variance):
        points = [(-candidates[i].mean, *candidates[i].params) for i in front]
        crowd = dict(zip(front, crowding_distance(points)))
        order += sorted(front, key=lambda i: (-crowd[i], tuple(candidates[i].params), candidates[i].order))
    return order


def promoted_count(configs: int, eta: int) -> int:
    """How many of a rung's ``configs`` go on: the top 1/eta, rounded down (ASHA's rule)."""
    return configs // eta
