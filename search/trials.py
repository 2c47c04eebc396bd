"""One search trial: sample a config, record it, evaluate it, record the outcome on the trial.

The config JSON and its trainable count are stored before training starts, so even a trial that fails
or is killed leaves in the study what it was about to train. A config the study already trained (same
seed) is not trained again: the trial takes the earlier metrics and says so in ``duplicate_of``.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Mapping

import optuna
import torch
from optuna.trial import TrialState

from hilo_core import MoLoRAConfig, config_trainable
from objectives import Fidelity, Metrics, TrialFailed, evaluate
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
    trial.set_user_attr("train_seed", ctx.seed)
    trainable = config_trainable(config, ctx.shapes)
    if ctx.constraint is not None:
        ctx.constraint.record(trial, trainable)
    else:
        trial.set_user_attr(TRAINABLE_ATTR, trainable)


def earlier_result(trial: optuna.Trial, config_json: str, seed: int) -> tuple[int, dict] | None:
    """A COMPLETE trial of this study that trained the same config with the same seed: its number and metrics.

    Evaluation is deterministic for a config, task, fidelity and seed (a study keeps its task and
    fidelity), so a sampler proposing a config again (NSGA-II does, on small grids) costs no training.
    """
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = t.user_attrs
        if attrs.get("config") == config_json and attrs.get("train_seed") == seed and "metrics" in attrs:
            return t.number, attrs["metrics"]
    return None


def worker_name() -> str:
    """``host:pid`` of the process running a trial, stored on the trial (which worker ran what)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def failure_reason(err: BaseException) -> str:
    """What a failed or pruned trial's ``failure`` attribute says; out-of-memory is named as such."""
    if isinstance(err, (TrialFailed, optuna.TrialPruned)):
        return str(err)
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return f"out of memory ({type(err).__name__}): {err}"
    if isinstance(err, KeyboardInterrupt):
        return "interrupted: the run was stopped (Ctrl-C) during the trial"
    return f"{type(err).__name__}: {err}"


def run_trial(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, ...]:
    """Optuna objective: the values of ``ctx.objectives`` for the config ``ctx.space`` samples.

    Whatever ends the trial early (sampling, an out-of-memory error, a non-finite loss, pruning, any
    exception) is stored as its ``failure`` attribute before it is raised to the worker.
    """
    start = time.perf_counter()
    on_eval = None
    trial.set_user_attr("worker", worker_name())
    try:
        config = ctx.space.sample(trial)
        record_config(trial, config, ctx)
        earlier = earlier_result(trial, config.to_json(), ctx.seed)
        if earlier is not None:
            number, metrics = earlier
            trial.set_user_attr("duplicate_of", number)
            trial.set_user_attr("metrics", metrics)
            trial.set_user_attr("seconds", time.perf_counter() - start)
            return Metrics.from_dict(metrics).values(ctx.objectives)
        on_eval = ctx.pruning.start(trial) if ctx.pruning else None
        metrics = evaluate(config, ctx.task, ctx.fidelity, seed=ctx.seed, model=ctx.model, on_eval=on_eval)
    except BaseException as err:
        pruned = isinstance(err, optuna.TrialPruned)
        trial.set_user_attr("failure", failure_reason(err))
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next trial starts with the memory this one could not use
        if on_eval is not None:
            ctx.pruning.finish(trial, TrialState.PRUNED if pruned else TrialState.FAIL)
        raise
    trial.set_user_attr("metrics", metrics.to_dict())
    trial.set_user_attr("seconds", time.perf_counter() - start)
    if ctx.pruning:
        ctx.pruning.finish(trial, TrialState.COMPLETE, metrics.accuracy)
    return metrics.values(ctx.objectives)
