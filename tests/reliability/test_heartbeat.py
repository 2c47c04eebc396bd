"""The Ray driver's heartbeat: trials its searcher holds stay fresh, told ones go stale.

A real SQLite storage with a 2 s grace period; the searcher is a stand-in holding what ``live_trial_ids``
reads of Ray's ``OptunaSearch`` (Tune trial id -> Optuna trial, and the ids already told).
"""

import time
import types

import optuna
from optuna.trial import TrialState

import search.ray_backend as ray_backend
from search.study import fail_interrupted
from search import worker
from search.worker import claim


def test_driver_heartbeat_keeps_live_trials_and_lets_told_ones_go_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "HEARTBEAT_SECONDS", 0.3)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/s.db", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s")
    for _ in range(2):
        study.enqueue_trial({})
    live, told = claim(study, 2), claim(study, 2)  # both RUNNING with a first heartbeat
    searcher = types.SimpleNamespace(_ot_trials={"tune-a": live, "tune-b": told}, _completed_trials={"tune-b"})
    with worker.heartbeat(storage, lambda: ray_backend.live_trial_ids(searcher)):
        time.sleep(3.5)  # past the grace period: only the beaten trial is fresh
        failed = fail_interrupted(study)
    assert failed == [told.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states == {live.number: TrialState.RUNNING, told.number: TrialState.FAIL}
    # The driver stopped beating (as when it is killed): now the live one goes stale too. SQLite's clock, which
    # Optuna's stale check reads, has whole seconds: wait the grace period plus more than one second.
    time.sleep(3.5)
    assert fail_interrupted(study) == [live.number]
