"""Node failures of a real two-node Ray cluster under `search.run --backend ray --ray-address`:

1. every process of the worker node gets SIGKILL while a trial trains there: that trial ends FAIL with a
   reason naming the node, and the search goes on on the head node;
2. then every process of the head node gets SIGKILL while a trial trains: the driver exits with one line;
3. a new cluster is started and `--resume` on it completes the budget.
"""

import json
import sqlite3
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

from ray_nodes import RayCluster
from search.ray_cluster import CLUSTER_LOST_EXIT
from search.study import STALE_REASON, UNSTARTED_REASON
from search_cli import cli, search_args

pytest.importorskip("ray")
HEAD, NODE, NEW_HEAD = "127.0.0.5", "127.0.0.4", "127.0.0.6"
BUDGET = 6
WAIT = 300


def _trials(db):
    """number -> (state, Ray node or None) from the driver's SQLite file, read-only."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            states = dict(conn.execute("SELECT number, state FROM trials"))
            workers = dict(conn.execute("SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a"
                                        " ON a.trial_id = t.trial_id WHERE a.key = 'worker'"))
    except sqlite3.OperationalError:
        return {}
    node = {n: json.loads(w).rsplit("Ray node ", 1)[-1].rstrip(")") for n, w in workers.items()}
    return {n: (s, node.get(n)) for n, s in states.items()}


def _wait_for(driver, db, what, condition):
    deadline = time.monotonic() + WAIT
    while True:
        trials = _trials(db)
        found = condition(trials)
        if found is not None:
            return found
        assert driver.poll() is None, f"driver ended before {what}: {driver.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {WAIT} s: {trials}"
        time.sleep(0.05)


def _running_on(ip, exclude=()):
    return lambda trials: next((n for n, (s, node) in trials.items()
                                if s == "RUNNING" and node == ip and n not in exclude), None)


@pytest.mark.slow
def test_lost_worker_node_then_lost_head_then_resume_on_a_new_cluster(task_file, tiny_model_dir, tmp_path):
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", BUDGET, "--resume", "--backend", "ray",
                       fidelity=60)
    db = tmp_path / "s" / "study.db"
    first, second, driver = RayCluster(), RayCluster(), None
    try:
        address = first.start_head(HEAD, cpus=1)
        first.add_node(NODE, cpus=1)
        driver = cli("search.run", *args, "--ray-address", address)

        on_node = _wait_for(driver, db, f"trial training on {NODE}", _running_on(NODE))
        first.kill(NODE)
        _wait_for(driver, db, "the lost node's trial failed",
                  lambda trials: True if trials[on_node][0] == "FAIL" else None)
        done = sum(s == "COMPLETE" for s, _ in _trials(db).values())
        _wait_for(driver, db, "a trial completed after the node was lost",  # the search goes on on the head
                  lambda trials: True if sum(s == "COMPLETE" for s, _ in trials.values()) > done else None)
        on_head = _wait_for(driver, db, f"trial training on {HEAD}", _running_on(HEAD, exclude=(on_node,)))
        first.kill(HEAD)
        _, err = driver.communicate(timeout=120)  # the driver notices within HEAD_LOST_AFTER seconds
        lines = [line for line in err.splitlines() if line.strip()]
        print(f"driver after the head was lost: exit {driver.returncode}, stderr {lines}")
        assert driver.returncode == CLUSTER_LOST_EXIT
        assert len(lines) == 1 and lines[0].startswith("search.run: lost the Ray cluster"), err[-3000:]

        resume = cli("search.run", *args, "--ray-address", second.start_head(NEW_HEAD, cpus=1),
                     stdout=subprocess.DEVNULL)
        try:
            _, err = resume.communicate(timeout=WAIT)
        finally:
            if resume.poll() is None:
                resume.kill()
        assert resume.returncode == 0, err[-3000:]
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        first.stop()
        second.stop()

    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
    assert [t.number for t in trials] == list(range(BUDGET))
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    lost = trials[on_node].user_attrs["failure"]
    print(f"lost node's trial: {lost}")
    assert trials[on_node].state == TrialState.FAIL and f"on node {NODE}" in lost
    # The driver went with the head: its trial went stale (or, had Tune seen the worker die first, was failed
    # with the head named, like the worker node's).
    head_reason = trials[on_head].user_attrs["failure"]
    assert trials[on_head].state == TrialState.FAIL and (head_reason == STALE_REASON or f"on node {HEAD}" in head_reason)
    # Trials the driver had claimed and staged for Tune, not yet on a worker, say so.
    staged = [t for t in trials if t.state == TrialState.FAIL and t.number not in (on_node, on_head)]
    print(f"{len(staged)} staged trial(s) failed with the driver")
    assert all(t.user_attrs["failure"] == UNSTARTED_REASON and "worker" not in t.user_attrs for t in staged)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 2
