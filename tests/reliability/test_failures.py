"""Trial failures: out of memory, a NaN loss, an exception. Each ends its trial (FAIL, with the reason
in the trial's attributes) and the search goes on; a study where every trial fails exits with code 1."""

import optuna
import pytest
import torch
from optuna.trial import TrialState

import search.trials
from objectives import evaluate
from search.run import main

from search_cli import search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _load(out_root):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{out_root}/s/study.db")


def test_each_failure_ends_its_trial_and_the_search_goes_on(task_file, tiny_model_dir, nan_model_dir, tmp_path,
                                                            monkeypatch):
    """mola's seeds, in order: 2468 runs out of memory, 5555 raises, 8642 trains a NaN-loss model, 8228 and
    the sampled trials after them run normally."""
    def failing_evaluate(config, task, fidelity, *, model, **kwargs):
        if config.experts_per_layer == (2, 4, 6, 8):  # simulated OOM: the error torch raises when the
            raise torch.OutOfMemoryError(  # allocator fails, for an 8-expert last layer over a size limit
                "simulated: CUDA out of memory (8 experts in layer 3 exceed the test's size limit of 6)")
        if config.experts_per_layer == (5, 5, 5, 5):
            raise RuntimeError("an exception in the objective")
        if config.experts_per_layer == (8, 6, 4, 2):  # a real NaN loss, from the model's NaN weights
            return evaluate(config, task, fidelity, model=str(nan_model_dir), **kwargs)
        return evaluate(config, task, fidelity, model=model, **kwargs)

    monkeypatch.setattr(search.trials, "evaluate", failing_evaluate)
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "6")) == 0
    trials = _load(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3 + [TrialState.COMPLETE] * 3
    oom, error, nan = (t.user_attrs["failure"] for t in trials[:3])
    assert oom.startswith("out of memory (OutOfMemoryError): simulated:")
    assert error == "RuntimeError: an exception in the objective"
    assert nan.startswith("loss is nan at step 1")
    for t in trials[:3]:  # the config and its size are stored before training, failed or not
        assert "config" in t.user_attrs and t.user_attrs["trainable_params"] > 0 and "seconds" in t.user_attrs


@pytest.mark.slow
def test_every_trial_failing_exits_1_with_one_line(task_file, nan_model_dir, tmp_path, capsys):
    assert main(search_args(task_file, nan_model_dir, tmp_path, "--budget", "3")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("search.run: no trial of study 's' completed (3 fail)")
    assert "(3x): loss is nan at step 1" in err[0]
    trials = _load(tmp_path).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    assert not (tmp_path / "s" / "pareto.png").exists()
