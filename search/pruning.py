"""Early stopping on accuracy alone, with Optuna's own pruners, inside a multi-objective search.

Optuna refuses ``trial.report``/``should_prune`` in multi-objective studies, so each search trial gets a
twin in a single-objective *shadow* study (same storage, ``<study>.accuracy``) that receives the
intermediate validation accuracies; the twin's pruner decides, the search trial ends PRUNED.
"""

from __future__ import annotations

from typing import Callable

import optuna
from optuna.trial import TrialState

PRUNERS = ("none", "median", "hyperband")


def make_pruner(name: str, *, max_steps: int, eval_every: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``--pruner``; resources are optimiser steps."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=max_steps, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be one of {PRUNERS}, got {name!r}")


class AccuracyPruning:
    """Owns the shadow study; ``start(trial)`` returns the ``on_eval`` callback for one search trial."""

    def __init__(self, study: optuna.Study, pruner: optuna.pruners.BasePruner) -> None:
        self.shadow = optuna.create_study(study_name=f"{study.study_name}.accuracy", storage=study._storage,
                                          direction="maximize", pruner=pruner, load_if_exists=True)
        self._twins: dict[int, optuna.Trial] = {}

    def start(self, trial: optuna.Trial) -> Callable[[int, float], None]:
        twin = self.shadow.ask()
        twin.set_user_attr("search_trial", trial.number)
        self._twins[trial.number] = twin
        curve: dict[str, float] = {}

        def on_eval(step: int, accuracy: float) -> None:
            curve[str(step)] = float(accuracy)
            trial.set_user_attr("intermediate", dict(curve))
            twin.report(float(accuracy), step)
            if twin.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}: validation accuracy {accuracy:.4f}")

        return on_eval

    def finish(self, trial: optuna.Trial, state: TrialState, accuracy: float | None = None) -> None:
        twin = self._twins.pop(trial.number, None)
        if twin is not None:
            self.shadow.tell(twin, accuracy if state == TrialState.COMPLETE else None, state=state)
