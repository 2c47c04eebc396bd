"""Pruning inside a multi-objective study really stops a trial early (shadow study + Optuna pruner)."""

import optuna
import pytest
from optuna.trial import TrialState

from hilo_core import module_shapes
from objectives import DIRECTIONS, Fidelity, base_model, get_task
from search.pruning import AccuracyPruning, make_pruner
from search.trials import TrialContext, run_trial
from spaces import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study():
    study = optuna.create_study(directions=list(DIRECTIONS.values()), storage="sqlite:///:memory:")
    study.set_metric_names(list(DIRECTIONS))
    return study


def test_trial_below_the_median_stops_at_its_first_evaluation(task_file, tiny_model_dir):
    model, _ = base_model(str(tiny_model_dir))
    fidelity = Fidelity(steps=8, batch_size=4, eval_every=2, max_eval_examples=16, max_test_examples=0)
    study = _study()
    pruning = AccuracyPruning(study, make_pruner("median", max_steps=8, eval_every=2))
    for _ in range(3):  # earlier trials that reached perfect accuracy at every rung
        twin = pruning.shadow.ask()
        for step in (2, 4, 6, 8):
            twin.report(1.0, step)
        pruning.shadow.tell(twin, 1.0)
    space = get_space("mola", n_layers=4)
    ctx = TrialContext(space=space, task=get_task(str(task_file)), fidelity=fidelity, model=str(tiny_model_dir),
                       shapes=module_shapes(model, space.target_modules), objectives=tuple(DIRECTIONS),
                       pruning=pruning)
    study.optimize(lambda t: run_trial(t, ctx), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.user_attrs["intermediate"]) == ["2"]  # stopped after the first of four evaluations
    assert "pruned at step 2" in trial.user_attrs["failure"]
    assert pruning.shadow.trials[-1].state == TrialState.PRUNED


def test_unknown_pruner_is_refused():
    with pytest.raises(ValueError, match="--pruner must be one of"):
        make_pruner("asha", max_steps=8, eval_every=2)
