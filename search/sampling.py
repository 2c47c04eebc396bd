"""The Optuna sampler for ``--sampler``; budget constraints reach it through ``trial.set_constraint``."""

from __future__ import annotations

import threading

import optuna

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


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE, GP or random search, seeded so a run repeats."""
    if name == "nsga2":
        return NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
