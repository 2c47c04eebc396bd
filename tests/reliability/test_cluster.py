"""`search.run --backend ray --ray-address` on a real two-node Ray cluster (tests/ray_nodes.py):
trials spread over both nodes with the model loaded once per worker process, two drivers share one
PostgreSQL study, and a hung trial (its worker process stopped) is ended by --trial-timeout."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ray_nodes import RayCluster
from search.timeout import timeout_reason
from search_cli import cli, search_args

pytest.importorskip("ray")
optuna.logging.set_verbosity(optuna.logging.WARNING)
HEAD, NODE = "127.0.0.3", "127.0.0.2"
DRIVER_TIMEOUT = 420


@pytest.fixture(scope="module")
def cluster():
    """A head and one more node, 1 CPU each, for the whole module; every process stopped by pid after it."""
    nodes = RayCluster()
    try:
        nodes.start_head(HEAD, cpus=1)
        nodes.add_node(NODE, cpus=1)
        yield nodes
    finally:
        nodes.stop()


def run_driver(*args, timeout=DRIVER_TIMEOUT):
    """One search.run process to its end; killed by pid (and the test failed) past ``timeout`` seconds."""
    proc = cli("search.run", *args)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"search.run did not finish within {timeout} s")
    return proc.returncode, out, err


def ray_node(trial) -> str:
    """The Ray node a trial ran on, from its worker attribute ``host:pid (Ray node <ip>)``."""
    return re.search(r"\(Ray node (\S+)\)", trial.user_attrs["worker"]).group(1)


def tune_reports(ray_dir: Path) -> list[list[dict]]:
    """Every Tune trial's reports under a driver's Ray results folder, one list per trial."""
    return [[json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            for path in sorted(ray_dir.rglob("result.json"))]


def check_exact_budget(study, budget):
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(budget))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs.get("failure"))
                                                                   for t in trials]
    assert len({t.user_attrs["seed_name"] for t in trials[:4]}) == 4  # the 4 seeds first, once each
    return trials


@pytest.mark.slow
def test_trials_run_on_both_nodes_with_one_model_load_per_worker(cluster, task_file, tiny_model_dir, tmp_path):
    budget = 6
    rc, _, err = run_driver(*search_args(task_file, tiny_model_dir, tmp_path, "--budget", budget, "--backend", "ray",
                                         "--ray-address", cluster.address, fidelity=60))
    assert rc == 0, err[-3000:]
    trials = check_exact_budget(optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s/study.db"), budget)
    per_node = Counter(ray_node(t) for t in trials)
    print(f"trials per node: {dict(per_node)}")  # quoted in docs/reliability.md
    assert set(per_node) == {HEAD, NODE}
    reports = tune_reports(tmp_path / "s" / "ray")
    assert sum(any("metrics_json" in r for r in rs) for rs in reports) == budget  # one Tune trial per study trial
    models = {}
    for rs in reports:  # a worker process that runs several trials keeps the model object it loaded first
        first = rs[0]
        models.setdefault((first["node_ip"], first["pid"]), set()).add(first["model_object"])
    assert all(len(ids) == 1 for ids in models.values()), models
    assert len(models) < budget, models  # Tune reused worker processes: some ran more than one trial
    print(f"trials per worker process: {sorted(Counter((r[0]['node_ip'], r[0]['pid']) for r in reports).values())}")


@pytest.mark.slow
def test_two_drivers_share_one_postgresql_study(cluster, task_file, tiny_model_dir, tmp_path, postgres_url):
    """Two search.run --backend ray processes at once on one study: half a CPU per trial, so the two
    1-CPU nodes hold four trials; each driver claims queued trials, none beyond the budget, none twice."""
    budget = 8
    drivers = [cli("search.run", *search_args(task_file, tiny_model_dir, tmp_path / name, "--budget", budget,
                                              "--resume", "--storage", postgres_url, "--backend", "ray",
                                              "--ray-address", cluster.address, "--cpus-per-trial", "0.5",
                                              study="two", fidelity=3))
               for name in ("a", "b")]
    try:
        for proc in drivers:
            _, err = proc.communicate(timeout=DRIVER_TIMEOUT)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in drivers:
            if proc.poll() is None:
                proc.kill()
    check_exact_budget(optuna.load_study(study_name="two", storage=postgres_url), budget)
    ran = {name: sum(any("metrics_json" in r for r in rs) for rs in tune_reports(tmp_path / name / "two" / "ray"))
           for name in ("a", "b")}
    print(f"trials per driver: {ran}")  # quoted in docs/reliability.md
    assert sum(ran.values()) == budget and all(ran.values()), ran  # each ran some, together exactly the budget


def _is_ray_worker(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
    except OSError:
        return False


def _running_worker(db: Path) -> tuple[int, str] | None:
    """(number, worker) of a RUNNING trial that has started on a Ray worker; read-only sqlite3."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT t.number, a.value_json FROM trials t JOIN trial_user_attributes a ON"
                                " a.trial_id = t.trial_id WHERE a.key = 'worker' AND t.state = 'RUNNING'").fetchall()
    except sqlite3.OperationalError:
        return None
    return (rows[0][0], json.loads(rows[0][1])) if rows else None


@pytest.mark.slow
def test_hung_ray_trial_is_ended_by_the_trial_timeout(cluster, task_file, tiny_model_dir, tmp_path):
    """SIGSTOP the worker process of the first trial: alive, holding its CPU, making no progress (the driver
    still beats its heartbeat, so nothing else would end it); --trial-timeout ends it FAIL with the reason."""
    limit, budget = 20, 3
    db = tmp_path / "s" / "study.db"
    driver = cli("search.run", *search_args(task_file, tiny_model_dir, tmp_path, "--budget", budget, "--backend",
                                            "ray", "--ray-address", cluster.address, "--trial-timeout", limit,
                                            fidelity=30))
    stopped = None
    try:
        deadline = time.monotonic() + DRIVER_TIMEOUT
        while stopped is None:
            found = _running_worker(db)
            if found:
                number, worker = found
                stopped = number, int(re.search(r":(\d+) \(Ray node", worker).group(1))
                os.kill(stopped[1], signal.SIGSTOP)
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no trial started"
            time.sleep(0.05)
        _, err = driver.communicate(timeout=DRIVER_TIMEOUT)
        assert driver.returncode == 0, err[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
        if stopped is not None and _is_ray_worker(stopped[1]):
            os.kill(stopped[1], signal.SIGKILL)  # the driver should have; a failed test must not leave it
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{db}").get_trials()
    assert [t.number for t in trials] == list(range(budget))
    hung = trials[stopped[0]]
    assert hung.state == TrialState.FAIL and hung.user_attrs["failure"] == timeout_reason(limit)
    assert all(t.state == TrialState.COMPLETE for t in trials if t.number != stopped[0])


@pytest.mark.slow
def test_a_trial_no_node_can_hold_is_refused_before_the_study(cluster, task_file, tiny_model_dir, tmp_path):
    """GPUs per trial come from the cluster's nodes (these have none), not from the driver's machine."""
    rc, _, err = run_driver(*search_args(task_file, tiny_model_dir, tmp_path, "--budget", 2, "--backend", "ray",
                                         "--ray-address", cluster.address, "--gpus-per-trial", "0.5"))
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("search.run: --cpus-per-trial 1 / --gpus-per-trial 0.5: no node of the Ray cluster"
                               " can hold one trial (alive nodes: 1 CPU/0 GPU, 1 CPU/0 GPU)"), lines
    assert not (tmp_path / "s" / "study.db").exists()
