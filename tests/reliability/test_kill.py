"""Kill safety: SIGKILL a search in the middle of a trial, twice, then resume to the budget.

Finished trials must survive unchanged, each killed trial must end FAIL with the reason (its heartbeat
stopped) instead of staying RUNNING, and the resumed study must hold exactly the budget, all finished.
"""

import signal
import subprocess
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from objectives.records import stored_records

from search.run import main
from search.study import STALE_REASON

from search_cli import cli, search_args

BUDGET = 6


def _states(db):
    """Trial number -> state, RUNNING only once training started (a worker took it and its config is
    stored; a Ray driver stores the config when it stages a trial); read with sqlite3 so the polling shares
    nothing with the search."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            states = dict(conn.execute("SELECT number, state FROM trials"))
            training = {n for (n,) in conn.execute("SELECT t.number FROM trials t JOIN trial_user_attributes a"
                                                    " ON a.trial_id = t.trial_id WHERE a.key IN ('config', 'worker')"
                                                    " GROUP BY t.number HAVING COUNT(*) = 2")}
    except sqlite3.OperationalError:  # tables not made yet, or locked for a moment
        return {}
    return {n: s for n, s in states.items() if s != "RUNNING" or n in training}


def _kill_during_trial(proc, db, after_complete, killed=(), timeout=240):
    """SIGKILL ``proc`` once ``after_complete`` trials are COMPLETE and one of its own is RUNNING (training);
    returns that one. Trials of earlier kills may still be RUNNING until their heartbeat is stale."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _states(db)
        running = [n for n, s in states.items() if s == "RUNNING" and n not in killed]
        if sum(s == "COMPLETE" for s in states.values()) >= after_complete and running:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return running[0]
        assert proc.poll() is None, f"search ended before the kill: {proc.communicate()[1][-3000:]}"
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no RUNNING trial seen in time")


@pytest.mark.slow
def test_two_kills_mid_trial_then_resume_reaches_budget(task_file, tiny_model_dir, tmp_path):
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", str(BUDGET), "--resume", fidelity=12)
    db = tmp_path / "s" / "study.db"
    killed = [_kill_during_trial(cli("search.run", *args, stdout=subprocess.DEVNULL), db, after_complete=1)]
    second = cli("search.run", *args, stdout=subprocess.DEVNULL)
    killed.append(_kill_during_trial(second, db, after_complete=3, killed=killed))
    before = {t.number: t for t in optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
              if t.state == TrialState.COMPLETE}
    assert killed[0] not in before and len(before) >= 3

    assert main(args) == 0  # waits until the last killed trial's heartbeat is stale

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
    assert [t.number for t in trials] == list(range(BUDGET))
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    for n, old in before.items():  # finished before a kill: still there, unchanged
        assert trials[n].state == TrialState.COMPLETE and trials[n].values == old.values
        assert trials[n].user_attrs["config"] == old.user_attrs["config"]
        assert trials[n].user_attrs["val_records"] == old.user_attrs["val_records"]  # per-question records too
    assert all(stored_records(t.user_attrs) is not None for t in trials if t.state == TrialState.COMPLETE)
    for n in killed:
        assert trials[n].state == TrialState.FAIL and trials[n].user_attrs["failure"] == STALE_REASON
        assert "config" in trials[n].user_attrs  # killed while training: what it trained is known
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    assert sorted(failed) == sorted(killed)
    seeds = [t.user_attrs["seed_name"] for t in trials if "seed_name" in t.user_attrs]
    assert len(seeds) == len(set(seeds)) >= 4  # no seed queued or run twice across three runs


@pytest.mark.slow
def test_killed_ray_driver_trial_is_failed_on_resume(task_file, tiny_model_dir, tmp_path, monkeypatch):
    """--backend ray: the driver asks and tells the trials, so SIGKILL it mid-trial (with its whole process
    group: its Ray node and trial workers); the trial goes stale and fails, and a resume reaches the budget."""
    import os

    pytest.importorskip("ray")
    budget = 3
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", str(budget), "--resume", fidelity=30)
    db = tmp_path / "s" / "study.db"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    driver = cli("search.run", *args, "--backend", "ray", stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        killed = _kill_during_trial(driver, db, after_complete=1, timeout=400)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)  # Ray's node processes share the driver's session
        except ProcessLookupError:
            pass
    before = {t.number: t for t in optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
              if t.state == TrialState.COMPLETE}
    # Resume in a process with a deadline: a trial without a heartbeat would stay RUNNING, and be waited for, forever.
    resume = cli("search.run", *args, stdout=subprocess.DEVNULL)
    try:
        _, err = resume.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        resume.kill()
        pytest.fail("the resumed search still waits for the killed driver's trial after 240 s")
    assert resume.returncode == 0, err[-3000:]

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    assert len(finished) == budget and not any(t.state == TrialState.RUNNING for t in trials)
    assert trials[killed].state == TrialState.FAIL and trials[killed].user_attrs["failure"] == STALE_REASON
    for n, old in before.items():
        assert trials[n].state == TrialState.COMPLETE and trials[n].values == old.values
