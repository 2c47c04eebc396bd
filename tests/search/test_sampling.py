"""The search's samplers survive the pickling Ray Tune does to its searcher (Optuna 5.1's GA samplers hold a
thread lock), and a pickled sampler proposes exactly what the original would have."""

from __future__ import annotations

import pickle

import optuna
import pytest

from search.sampling import make_sampler


def _objective(trial: optuna.Trial) -> tuple[float, float]:
    x, y = trial.suggest_float("x", 0, 1), trial.suggest_int("n", 1, 8)
    return x * y, (1 - x) + y / 8


def _proposals(sampler: optuna.samplers.BaseSampler) -> list[dict]:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=24)
    return [t.params for t in study.trials]


@pytest.mark.parametrize("name", ["nsga2", "tpe", "gp", "random"])
def test_a_pickled_sampler_proposes_what_the_original_does(name):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cloudpickle = pytest.importorskip("ray.cloudpickle")
    original = make_sampler(name, seed=7)
    _proposals(original)  # mid-search: its random state has moved on
    copy = pickle.loads(cloudpickle.dumps(original))
    assert _proposals(copy) == _proposals(original)
    # the copy is a whole sampler again: it pickles and runs from several threads (its locks are real ones)
    again = pickle.loads(pickle.dumps(copy))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=again)
    study.optimize(_objective, n_trials=8, n_jobs=2)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 8


def _alternating(names: list[int], name: str) -> list[dict]:
    """24 trials asked by the samplers of 'processes' ``names[i % len]`` (fresh samplers, one seed, one
    storage), each told the objective's values before the next is asked."""
    storage = optuna.storages.InMemoryStorage()
    studies = {}
    for worker in sorted(set(names)):
        studies[worker] = optuna.create_study(directions=["maximize", "minimize"], storage=storage,
                                              sampler=make_sampler(name, seed=7), study_name="s",
                                              load_if_exists=True)
    for i in range(24):
        study = studies[names[i % len(names)]]
        trial = study.ask()
        study.tell(trial, _objective(trial))
    return [t.params for t in studies[names[0]].trials]


@pytest.mark.parametrize("name", ["nsga2", "tpe", "gp", "random"])
def test_a_trial_proposal_depends_on_its_number_not_on_the_process(name):
    """Two worker processes of one study start with the same --seed; one random stream per process made the
    second one's first trial a copy of the first one's (the duplicate --workers 2 ran)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    one = _alternating([0], name)
    two = _alternating([0, 1], name)
    assert two == one
    first = [tuple(sorted(p.items())) for p in two[:8]]  # every sampler's random start (continuous x)
    assert len(set(first)) == 8, first
