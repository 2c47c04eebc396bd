"""The Optuna sampler for ``--sampler``; budget constraints reach it through ``trial.set_constraint``."""

from __future__ import annotations

import optuna


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """NSGA-II, TPE, GP or random search, seeded so a run repeats."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)
