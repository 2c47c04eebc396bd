"""One search trial: sample a config, record it, evaluate it, record the outcome on the trial.

The config JSON and its trainable count are stored before training starts, so even a trial that fails
or is killed leaves in the study what it was about to train. A config the study already holds is
*replicated*: trained again with the next unused training seed (``replicate_of`` names the first trial of
that config), so a re-proposal buys a second draw of the training noise instead of a copy of the first.
Both backends follow this one rule (``record_config``) and store results the same way (``record_result``).
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
from objectives.records import RECORDS_ATTR, SIGNALS
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
    promotions: Any = None  # search.promotion.Promotions of a successive-halving search (trains rung 0)
    one_shot: Any = None  # search.one_shot.OneShot: trials are scored inside its super-adapter, not trained


def replicate_seed(study: optuna.Study, number: int, config_json: str, base_seed: int) -> tuple[int, int | None]:
    """``(training seed, replicate_of)``: the k-th trial of a config (by trial number) trains with seed
    ``base_seed + k``; ``replicate_of`` is the config's first trial (None for the first itself)."""
    earlier = sorted(t.number for t in study.get_trials(deepcopy=False)
                     if t.number < number and t.user_attrs.get("config") == config_json)
    return base_seed + len(earlier), (earlier[0] if earlier else None)


def record_config(trial: optuna.Trial, config: MoLoRAConfig, ctx: TrialContext) -> int:
    """Store the config, its training seed (the replicate rule) and its trainable count (and the budget
    constraint) before any training; returns the training seed."""
    config_json = config.to_json()
    seed, first = replicate_seed(trial.study, trial.number, config_json, ctx.seed)
    trial.set_user_attr("config", config_json)
    trial.set_user_attr("train_seed", seed)
    if first is not None:
        trial.set_user_attr("replicate_of", first)
    trainable = config_trainable(config, ctx.shapes)
    if ctx.constraint is not None:
        ctx.constraint.record(trial, trainable)
    else:
        trial.set_user_attr(TRAINABLE_ATTR, trainable)
    return seed


def record_result(trial: optuna.Trial, metrics: Metrics, objectives: tuple[str, ...]) -> tuple[float, ...]:
    """Store a finished trial's metrics and per-question records; returns its objective values.

    The accuracy-side value is the mean over every completed replicate of the config (this one included),
    so the sampler sees the better estimate; the trial's own draw stays in ``metrics``.
    """
    trial.set_user_attr("metrics", metrics.to_dict())
    if metrics.records is not None:
        trial.set_user_attr(RECORDS_ATTR, metrics.records.encode())
    values = dict(zip(objectives, metrics.values(objectives)))
    config_json = trial.user_attrs.get("config")
    rung = trial.user_attrs.get("rung")  # a scheduled search pools replicates of one rung only
    draws = [Metrics.from_dict(t.user_attrs["metrics"]) for t in trial.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("config") == config_json
        and "metrics" in t.user_attrs and t.user_attrs.get("rung") == rung]
    if draws:
        for name in (o for o in objectives if o in SIGNALS):
            own = values[name]
            values[name] = (own + sum(d.values((name,))[0] for d in draws)) / (len(draws) + 1)
            trial.set_user_attr("replicate_mean", {"signal": name, "value": values[name], "draws": len(draws) + 1})
    return tuple(values[o] for o in objectives)


def worker_name() -> str:
    """``host:pid`` of the process running a trial, stored on the trial (which worker ran what)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def record_worker(trial: optuna.Trial) -> None:
    """Which process ran the trial (``worker``) and with how many torch threads (``threads``: a config's score
    repeats exactly only at the same count)."""
    trial.set_user_attr("worker", worker_name())
    trial.set_user_attr("threads", torch.get_num_threads())


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
    record_worker(trial)
    try:
        config = ctx.space.sample(trial)
        seed = record_config(trial, config, ctx)
        on_eval = ctx.pruning.start(trial) if ctx.pruning else None
        if ctx.promotions is not None:
            metrics = ctx.promotions.train(trial, config, seed, 0, ctx)
        elif ctx.one_shot is not None:
            metrics = ctx.one_shot.score(trial, config)
        else:
            metrics = evaluate(config, ctx.task, ctx.fidelity, seed=seed, model=ctx.model, on_eval=on_eval)
    except BaseException as err:
        pruned = isinstance(err, optuna.TrialPruned)
        trial.set_user_attr("failure", failure_reason(err))
        trial.set_user_attr("seconds", time.perf_counter() - start)
        if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next trial starts with the memory this one could not use
        if on_eval is not None:
            ctx.pruning.finish(trial, TrialState.PRUNED if pruned else TrialState.FAIL)
        raise
    values = record_result(trial, metrics, ctx.objectives)
    trial.set_user_attr("seconds", time.perf_counter() - start)
    if ctx.pruning:
        ctx.pruning.finish(trial, TrialState.COMPLETE, metrics.accuracy)
    return values


def run_promoted(trial: optuna.Trial, ctx: TrialContext) -> tuple[float, ...]:
    """Objective of a claimed promotion ticket (``search.promotion``): continue its parent's training to the
    ticket's rung, record the result as every trial does."""
    start = time.perf_counter()
    record_worker(trial)
    a = trial.user_attrs
    try:
        metrics = ctx.promotions.train(trial, MoLoRAConfig.from_json(a["config"]), int(a["train_seed"]),
                                       int(a["rung"]), ctx)
    except BaseException as err:
        trial.set_user_attr("failure", failure_reason(err))
        trial.set_user_attr("seconds", time.perf_counter() - start)
        raise
    values = record_result(trial, metrics, ctx.objectives)
    trial.set_user_attr("seconds", time.perf_counter() - start)
    return values
