"""One search trial: sample a config, record it, evaluate it, record the outcome on the trial.

The config JSON and its trainable count are stored before training starts, so even a trial that fails
or is killed leaves in the study what it was about to train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import optuna
from optuna.trial import TrialState

from hilo_core import MoLoRAConfig, config_trainable
from objectives import Fidelity, TrialFailed, evaluate
from spaces import TRAINABLE_ATTR, Space, TrainableConstraint

from .pruning import AccuracyPruning


@dataclass
class TrialContext:
    """Everything a trial needs besides the trial itself; built once per search process."""

    space: Space
    task: Any
    fidelity: Fidelity
    model: str
    shapes: Mapping[str, tuple[int, int]]
    objectives: tuple[str, ...]
    seed: int = 0
    pruning: AccuracyPruning | None = None
    constraint: TrainableConstraint | None = None


def record_config(trial: optuna.Trial, config: MoLoRAConfig, ctx: TrialContext) -> None:
    """Store the config and its trainable count (and the budget constraint) before any training."""
    trial.set_user_attr("config", config.to_json())
    trainable = config_trainable(config, ctx.shapes)
    if ctx.constraint is not None:
        ctx.constraint.record(trial, trainable)
    else:
        trial.set_user_attr(TRAINABLE_ATTR, trainable)


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, ...]:
    """Optuna objective: the values of ``ctx.objectives`` for the config ``ctx.space`` samples."""
    config = ctx.space.sample(trial)
    record_config(trial, config, ctx)
    on_eval = ctx.pruning.start(trial) if ctx.pruning else None
    start = time.perf_counter()
    try:
        metrics = evaluate(config, ctx.task, ctx.fidelity, seed=ctx.seed, model=ctx.model, on_eval=on_eval)
    except BaseException as err:
        pruned = isinstance(err, optuna.TrialPruned)
        trial.set_user_attr("failure", str(err) if isinstance(err, (TrialFailed, optuna.TrialPruned))
                            else f"{type(err).__name__}: {err}")
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if ctx.pruning:
            ctx.pruning.finish(trial, TrialState.PRUNED if pruned else TrialState.FAIL)
        raise
    trial.set_user_attr("metrics", metrics.to_dict())
    trial.set_user_attr("seconds", time.perf_counter() - start)
    if ctx.pruning:
        ctx.pruning.finish(trial, TrialState.COMPLETE, metrics.accuracy)
    return metrics.values(ctx.objectives)
