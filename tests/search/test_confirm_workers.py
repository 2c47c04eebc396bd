"""The confirmation stage on several processes: ``search.run --workers 2 --confirm K`` splits the fresh-seed runs
between the main process and a ``search.confirm --join`` helper, each run once, with the threads asked for; a
confirmation killed in the middle of a run resumes through ``search.run --resume``."""

import signal
import sqlite3
import time
from collections import Counter

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search.confirm import main as confirm_main
from search.run import main as run_main
from search_cli import cli, search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONFIRM = ["--confirm", "1", "--confirm-seeds", "3", "--confirm-rules", "1"]


def _runs(url):
    return optuna.load_study(study_name="s.confirm", storage=url).get_trials()


def _check_each_run_once(runs, picks=2, seeds=3):
    assert len(runs) == picks * seeds, [(t.number, t.state) for t in runs]
    assert all(t.state == TrialState.COMPLETE for t in runs), [(t.number, t.state, t.user_attrs.get("failure"))
                                                               for t in runs]
    assert len({(t.user_attrs["config"], t.user_attrs["train_seed"]) for t in runs}) == len(runs)


@pytest.mark.slow
def test_two_workers_share_the_confirmation_runs(task_file, tiny_model_dir, tmp_path):
    threads_before = torch.get_num_threads()
    out = tmp_path / "out"
    argv = search_args(task_file, tiny_model_dir, out, "--budget", "6", "--workers", "2", "--threads", "3",
                       *CONFIRM, fidelity=40)
    assert run_main(argv) == 0
    runs = _runs(f"sqlite:///{out}/s/study.db")
    _check_each_run_once(runs)
    per_worker = Counter(t.user_attrs["worker"] for t in runs)
    print(f"confirmation runs per worker: {sorted(per_worker.values())}")
    assert len(per_worker) == 2, per_worker  # the --join helper ran some
    assert {t.user_attrs["threads"] for t in runs} == {3}
    assert torch.get_num_threads() == threads_before


def test_join_without_a_queued_confirmation_is_one_line(task_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_main(search_args(task_file, tiny_model_dir, out, "--budget", "1")) == 0
    capsys.readouterr()
    assert confirm_main(["--study", "s", "--out-root", str(out), "--join"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--join: no confirmation is queued for study 's'" in err[0]
    assert confirm_main(["--study", "s", "--out-root", str(out), "--workers", "0"]) == 2
    assert "--workers and --threads must be positive integers" in capsys.readouterr().err


def _running_confirmation_run(db):
    """A confirmation run that a worker has started (RUNNING with its worker stored), read with sqlite3."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT t.number FROM trials t JOIN studies s ON s.study_id = t.study_id"
                                " JOIN trial_user_attributes a ON a.trial_id = t.trial_id WHERE"
                                " s.study_name = 's.confirm' AND t.state = 'RUNNING' AND a.key = 'worker'").fetchall()
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
def test_a_killed_confirmation_resumes_through_search_run(task_file, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    argv = search_args(task_file, tiny_model_dir, out, "--budget", "6", *CONFIRM, "--resume", fidelity=40)
    proc = cli("search.run", *argv)
    db = out / "s" / "study.db"
    try:
        deadline = time.monotonic() + 300
        while not _running_confirmation_run(db):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no confirmation run seen in time"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    time.sleep(16)  # the killed run's heartbeat goes stale (GRACE_SECONDS = 15)
    assert run_main(argv) == 0
    runs = [t for t in _runs(f"sqlite:///{db}") if t.state != TrialState.FAIL]
    _check_each_run_once(runs)
    failed = [t for t in _runs(f"sqlite:///{db}") if t.state == TrialState.FAIL]
    assert len(failed) == 1 and "heartbeat" in failed[0].user_attrs["failure"], [t.user_attrs for t in failed]
