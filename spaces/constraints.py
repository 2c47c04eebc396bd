"""The trainable-parameter budget as an Optuna constraint: over-budget trials stay in the study, infeasible.

Two ways to hand it to Optuna, pick one per study: ``record(trial, trainable)`` before training, which calls
``trial.set_constraint`` (Optuna 5, the version hilo requires; samplers read ``FrozenTrial.constraints``), or the
sampler argument ``constraints_func=trainable_constraint(max)`` (deprecated in 5.0, removed in 7.0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

TRAINABLE_ATTR = "trainable_params"


@dataclass(frozen=True)
class TrainableConstraint:
    """``[trainable - max_trainable]``, feasible when <= 0, from ``trial.user_attrs["trainable_params"]``.

    The search sets that attr from ``hilo_core.config_trainable`` before training. A picklable object,
    so Ray workers can carry it.
    """

    max_trainable: float = field(metadata={"help": "largest feasible number of trainable adapter parameters"})

    def __post_init__(self) -> None:
        value = self.max_trainable
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"max_trainable must be a positive finite number, got {value!r}")

    def __call__(self, trial: Any) -> list[float]:
        """The ``constraints_func`` protocol: called by the sampler after the trial finishes."""
        if TRAINABLE_ATTR not in trial.user_attrs:
            raise ValueError(
                f"trial {trial.number}: user_attrs[{TRAINABLE_ATTR!r}] is not set; the search sets it from"
                " hilo_core.config_trainable before training"
            )
        return [float(trial.user_attrs[TRAINABLE_ATTR] - self.max_trainable)]

    def record(self, trial: Any, trainable: int) -> None:
        """Store ``trainable`` on the trial and the constraint itself (``constraints:trainable_params``)."""
        trial.set_user_attr(TRAINABLE_ATTR, trainable)
        trial.set_constraint(TRAINABLE_ATTR, float(trainable - self.max_trainable))


def trainable_constraint(max_trainable: float) -> TrainableConstraint:
    """Optuna constraint making configs over ``max_trainable`` trainable params infeasible."""
    return TrainableConstraint(max_trainable=max_trainable)
