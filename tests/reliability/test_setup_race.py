"""Several workers starting a new study at the same instant: exactly one queues the seeds and the budget.

Each thread is a separate worker with its own connection to the SQLite (or PostgreSQL) storage, released
together by a barrier into ``search.seeding.prepare_study``, the set-up every ``search.run`` performs.
"""

import threading
from collections import Counter

import optuna
import pytest
from rich.console import Console

from search.sampling import make_sampler
from search.seeding import prepare_study
from search.study import locate
from spaces import get_space

BUDGET, WORKERS = 7, 4
OBJECTIVES = ("accuracy", "trainable")


def _prepare(location, space, sampler_seed=0):
    """The set-up every search.run performs, for a study of the tiny 4-layer space."""
    return prepare_study(location, objectives=OBJECTIVES, sampler=make_sampler("nsga2", sampler_seed), resume=True,
                         attrs={"fidelity": {"steps": 1}, "command": "test"}, space=space, budget=BUDGET,
                         console=Console(quiet=True))


def _start_together(storage_url, out_root, name):
    space = get_space("mola", n_layers=4)
    location = locate(name, storage_url, out_root)
    barrier, errors = threading.Barrier(WORKERS), []

    def worker(i):
        try:
            barrier.wait()
            _prepare(location, space, sampler_seed=i)
        except Exception as err:  # noqa: BLE001 - reported below with the worker's number
            errors.append((i, repr(err)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return optuna.load_study(study_name=name, storage=location.storage), space


def _check_queued_once(study, space):
    """Each seed queued once and first, exactly the budget queued below it, the metric names stored."""
    below = [t for t in study.get_trials(deepcopy=False) if t.number < BUDGET]
    seeds = Counter(t.user_attrs.get("seed_name") for t in below if "seed_name" in t.user_attrs)
    assert seeds == Counter({s.name: 1 for s in space.seeds()}), seeds
    assert len(below) == BUDGET
    assert [t.user_attrs.get("seed_name") for t in below[:len(seeds)]] == [s.name for s in space.seeds()]
    assert study.metric_names == list(OBJECTIVES)


@pytest.mark.parametrize("round_", range(10))
def test_simultaneous_start_on_sqlite_queues_seeds_once(round_, tmp_path):
    _check_queued_once(*_start_together(None, tmp_path, f"race{round_}"))


@pytest.mark.parametrize("round_", range(5))
def test_simultaneous_start_on_postgresql_queues_seeds_once(round_, tmp_path, postgres_url):
    _check_queued_once(*_start_together(postgres_url, tmp_path, f"race-pg{round_}"))


def test_creator_stopped_mid_set_up_is_taken_over(tmp_path, monkeypatch):
    """A study left 'pending' (its creator was killed while queueing) is set up by the next worker."""
    import search.study as study_module

    monkeypatch.setattr(study_module, "SETUP_WAIT_SECONDS", 0.5)
    space, location = get_space("mola", n_layers=4), locate("stopped", None, tmp_path)
    storage = study_module.open_storage(location.storage)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE] * 2, "stopped")
    storage.set_study_user_attr(study_id, study_module.SETUP_ATTR, "pending")  # then the creator died
    study = _prepare(location, space)
    seeds = [t.user_attrs.get("seed_name") for t in study.get_trials(deepcopy=False)]
    assert seeds[:4] == [s.name for s in space.seeds()] and len(seeds) == BUDGET
    assert study.metric_names == list(OBJECTIVES) and study.user_attrs[study_module.SETUP_ATTR] == "done"


def test_study_older_than_the_marker_resumes_without_waiting(tmp_path, monkeypatch):
    """A study with metric names and seeds but no set-up marker (written before it existed) is set up."""
    import time

    import search.study as study_module

    monkeypatch.setattr(study_module, "SETUP_WAIT_SECONDS", 30.0)
    space, location = get_space("mola", n_layers=4), locate("old", None, tmp_path)
    old = optuna.create_study(study_name="old", storage=study_module.open_storage(location.storage),
                              directions=["maximize", "minimize"])
    old.set_metric_names(list(OBJECTIVES))
    for seed in space.seeds():
        old.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})
    start = time.monotonic()
    study = _prepare(location, space)
    assert time.monotonic() - start < 10  # well under the 30 s a pending study would be waited for
    seeds = Counter(t.user_attrs.get("seed_name") for t in study.get_trials(deepcopy=False))
    assert seeds == Counter({s.name: 1 for s in space.seeds()} | {None: BUDGET - 4})
