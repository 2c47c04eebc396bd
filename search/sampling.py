"""The Optuna sampler for ``--sampler``; budget constraints reach it through ``trial.set_constraint``.

Each trial is sampled by a sampler seeded from (``--seed``, trial number), not by one random stream per
process: every worker process of a study starts with the same ``--seed``, and one stream each made a
helper's first trial a copy of the main process's first (same parameters, a wasted trial). A trial's
proposal now depends only on its number and the finished trials in the storage, whichever process runs it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

_LOCKS = {type(threading.Lock()): threading.Lock, type(threading.RLock()): threading.RLock}


class _PicklableLocks:
    """Pickles without the sampler's thread locks and makes fresh ones on load: Ray Tune pickles its searcher
    (and the sampler in it), and Optuna 5.1's GA samplers hold a ``threading.Lock`` with no ``__getstate__``.
    Found by type, not by attribute name, so no private name of Optuna's is relied on."""

    def __getstate__(self) -> object:
        parent = getattr(super(), "__getstate__", None)  # object.__getstate__ exists from Python 3.11 on
        state = parent() if parent is not None else self.__dict__
        if not isinstance(state, dict):
            return state
        return {k: _FreshLock(_LOCKS[type(v)]) if type(v) in _LOCKS else v for k, v in state.items()}

    def __setstate__(self, state: object) -> None:
        if isinstance(state, dict):
            state = {k: v.factory() if isinstance(v, _FreshLock) else v for k, v in state.items()}
            self.__dict__.update(state)
        else:
            super().__setstate__(state)  # pragma: no cover - a sampler with its own non-dict state


class _FreshLock:
    """Stands in a pickled sampler's state for a lock, and says which kind to recreate."""

    def __init__(self, factory) -> None:
        self.factory = factory


class NSGAIISampler(_PicklableLocks, optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable under every Optuna >= 5.0."""


def _base_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "nsga2":
        return NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number``'s sampler: independent streams for distinct (seed, number) pairs."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """``make(trial_seed(seed, n))`` samples trial ``n`` (made at its ``before_trial``, dropped after it), so
    trials in flight at once, in threads or in a Ray driver, each have their own."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self.make, self.seed = make, seed
        self._live: dict[int, optuna.samplers.BaseSampler] = {}
        self._lock = threading.Lock()

    def _for(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        with self._lock:
            if trial.number not in self._live:
                self._live[trial.number] = self.make(trial_seed(self.seed, trial.number))
            return self._live[trial.number]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        try:
            self._for(trial).after_trial(study, trial, state, values)
        finally:
            with self._lock:
                self._live.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Optuna calls this in each thread of ``optimize(n_jobs>1)``; the per-trial seeds already differ."""

    def __getstate__(self) -> dict:
        """Pickled (Ray Tune pickles its searcher) without the lock; samplers of trials in flight go along."""
        return {"make": self.make, "seed": self.seed, "_live": dict(self._live)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE, GP or random search; each trial sampled with a seed from ``seed`` and its number, so a run
    repeats and no worker process replays another's random stream."""
    return TrialSeededSampler(functools.partial(_base_sampler, name), seed)  # a partial pickles; a lambda not
