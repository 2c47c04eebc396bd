"""Many workers on one study: ``--workers 2`` on SQLite, and two separate search.run processes on one
PostgreSQL server. No trial is lost or run twice, and the study holds exactly the budget."""

import subprocess
import time
from collections import Counter

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.run import main

from search_cli import cli, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = 8


def _check_exact_budget(study):
    """Every trial finished once, numbered 0..budget-1, seeds once each; returns trials per worker."""
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(BUDGET))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs) for t in trials]
    seeds = [t.user_attrs["seed_name"] for t in trials if "seed_name" in t.user_attrs]
    assert len(seeds) == len(set(seeds)) >= 4  # the space's seeds (mola's four, alphalora when it fits), once each
    assert [t.user_attrs.get("seed_name") for t in trials[:len(seeds)]] == seeds  # seeds still run first
    per_worker = Counter(t.user_attrs["worker"] for t in trials)
    print(f"trials per worker: {sorted(per_worker.values())}")  # quoted in docs/reliability.md
    return per_worker


@pytest.mark.slow
def test_local_workers_share_one_sqlite_study(task_file, tiny_model_dir, tmp_path):
    threads_before = torch.get_num_threads()
    # 3 threads: neither this process's count nor a fresh process's default on the machines we run on
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", str(BUDGET), "--workers", "2",
                            "--threads", "3", fidelity=30)) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s/study.db")
    per_worker = _check_exact_budget(study)
    assert len(per_worker) == 2, per_worker  # the helper process ran trials too
    assert {t.user_attrs["threads"] for t in study.get_trials()} == {3}  # the helper was given them too
    assert torch.get_num_threads() == threads_before  # an in-process search leaves the caller's count


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(task_file, tiny_model_dir, tmp_path, postgres_url):
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", BUDGET, "--resume",
                       "--storage", postgres_url, study="pg", fidelity=30)
    first = cli("search.run", *args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:  # the second worker joins once the first has made the study and queued the budget
        try:
            if len(optuna.load_study(study_name="pg", storage=postgres_url).get_trials()) >= BUDGET:
                break
        except KeyError:
            pass
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the first worker never queued the budget"
        time.sleep(0.2)
    second = cli("search.run", *args, stdout=subprocess.DEVNULL)
    for proc in (first, second):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    per_worker = _check_exact_budget(optuna.load_study(study_name="pg", storage=postgres_url))
    assert len(per_worker) == 2, per_worker
