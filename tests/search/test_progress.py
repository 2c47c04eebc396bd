"""The search's progress bar counts every worker's finished trials, not only the ones its own process ran."""

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from search.progress import SearchProgress


def test_bar_counts_trials_other_processes_finished(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for i, state in enumerate([TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.RUNNING]):
        values = [0.5 + i / 10, float(i)] if state == TrialState.COMPLETE else None
        study.add_trial(create_trial(state=state, values=values, params={"n": i},
                                     distributions={"n": IntDistribution(0, 9)}))
    with SearchProgress(total=6, done=0, objectives=("accuracy", "trainable"),
                        console=Console(file=(tmp_path / "log").open("w"))) as progress:
        progress(study, study.get_trials()[2])  # this process's trial; 0 and 1 were another worker's
        assert progress.progress.tasks[0].completed == 3  # 2 complete + 1 failed; the running one not yet
