"""--trial-timeout on the Optuna backend: a trial that hangs (alive, its heartbeat beating, making no
progress) ends FAIL with the reason and the search goes on; the flags' bad values are one-line errors.

The Ray backend's hung trial (a stopped worker process on a real cluster) is in test_cluster.py.
"""

import threading

import optuna
import pytest
from optuna.trial import TrialState

import search.trials
from objectives import evaluate
from search.run import main
from search.timeout import timeout_reason

from search_cli import search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_hung_trial_fails_with_the_reason_and_the_search_goes_on(task_file, tiny_model_dir, tmp_path, monkeypatch):
    """mola's second seed (5 experts in every layer) waits forever on an event nobody sets."""
    def hanging_evaluate(config, task, fidelity, **kwargs):
        if config.experts_per_layer == (5, 5, 5, 5):
            threading.Event().wait()
        return evaluate(config, task, fidelity, **kwargs)

    monkeypatch.setattr(search.trials, "evaluate", hanging_evaluate)
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "4", "--trial-timeout", "3")) == 0
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s/study.db").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    assert trials[1].user_attrs["failure"] == timeout_reason(3)
    assert 3 <= trials[1].user_attrs["seconds"] < 60


@pytest.mark.parametrize("flags, message", [
    (["--trial-timeout", "0"], "--trial-timeout must be a positive number of seconds, got 0.0"),
    (["--backend", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial must be positive (fractions allowed), got 0.0"),
    (["--backend", "ray", "--gpus-per-trial", "-0.5"], "--gpus-per-trial must be 0 or positive"),
    (["--backend", "ray", "--gpus-per-trial", "nan"], "--gpus-per-trial must be 0 or positive"),
    (["--cpus-per-trial", "0.5"], "--cpus-per-trial applies to --backend ray only, got --backend optuna"),
])
def test_bad_trial_flags_are_one_line_errors(flags, message, task_file, tiny_model_dir, tmp_path, capsys):
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "2", *flags)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"search.run: {message}"), err
    assert not (tmp_path / "s").exists()  # nothing was created
