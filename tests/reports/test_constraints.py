"""Budget constraints in reports: a real constrained study's over-budget trials are infeasible everywhere.

Optuna 5 stores ``trial.set_constraint`` values as ``constraints:<name>`` attributes; a sampler's
``constraints_func`` stores one ``constraints`` list. Reports must read both.
"""

from __future__ import annotations

import csv

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from hilo_core import LLAMA_TARGETS, config_active, config_trainable, module_shapes
from reports.hypervolume import hypervolume_history, hypervolume_of, normalised
from reports.load import constraint_values, read_study
from reports.summary import trials_csv
from spaces import get_space, trainable_constraint
from tiny_models import tiny_llama

N_LAYERS = 4


def constrained_study(tmp_path, budget: float) -> optuna.Study:
    """NSGA-II over the uniform space with the budget recorded as search.trials records it."""
    shapes = module_shapes(tiny_llama(N_LAYERS), LLAMA_TARGETS)
    space = get_space("uniform", n_layers=N_LAYERS, routers={"topk": {"top_k": (1, 2)}})
    constraint = trainable_constraint(budget)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], storage=f"sqlite:///{tmp_path}/s.db",
                                sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=6))
    study.set_metric_names(["accuracy", "trainable", "active"])

    def objective(trial):
        config = space.sample(trial)
        trainable = config_trainable(config, shapes)
        constraint.record(trial, trainable)
        active = config_active(config, shapes)
        accuracy = 0.5 + 0.4 * trainable / (trainable + 20_000)  # bigger is better: the front needs the budget
        trial.set_user_attr("config", config.to_json())
        trial.set_user_attr("metrics", {"accuracy": accuracy, "trainable_params": trainable, "active_params": active})
        return accuracy, trainable, active

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=24)
    return study


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_over_budget_trials_are_infeasible_in_rows_csv_front_and_hypervolume(tmp_path):
    budget = 30_000
    study = constrained_study(tmp_path, budget)
    trainable = {t.number: t.user_attrs["trainable_params"] for t in study.trials}
    over = {n for n, p in trainable.items() if p > budget}
    assert over and len(over) < len(trainable), "the budget must cut through the sampled configs"
    assert all(k.startswith("constraints:") for t in study.trials for k in t.system_attrs if "constraint" in k)

    data = read_study(study)
    assert {r.number for r in data.rows if not r.feasible} == over
    assert not {r.number for r in data.front} & over
    with trials_csv(data, tmp_path / "trials.csv").open() as f:
        assert {int(r["number"]) for r in csv.DictReader(f) if r["feasible"] == "0"} == over

    # the hypervolume counts only feasible trials: the same as the volume of the feasible points alone
    points = normalised(data)
    _, history = hypervolume_history(data)
    feasible_only = [p for p, r in zip(points, data.completed) if r.feasible]
    assert history[-1] == pytest.approx(hypervolume_of(feasible_only)[1][-1], rel=1e-9)
    assert history[-1] < hypervolume_of(points)[1][-1]  # the over-budget trials would have added volume


@pytest.mark.parametrize("system_attrs, values", [
    ({"constraints": [1.5, -2.0]}, [1.5, -2.0]),  # constraints_func (sampler argument)
    ({"constraints:trainable_params": 3.0}, [3.0]),  # trial.set_constraint (Optuna 5)
    ({"constraints:a": -1.0, "constraints:b": 0.0}, [-1.0, 0.0]),
    ({}, []),
])
def test_constraint_values_reads_both_layouts(system_attrs, values):
    trial = create_trial(state=TrialState.COMPLETE, values=[0.5], system_attrs=system_attrs)
    assert constraint_values(trial) == values
