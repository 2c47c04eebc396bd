"""The trainable budget marks over-budget trials infeasible in a real constrained NSGA-II study."""

import optuna
import pytest

from hilo_core import config_trainable
from spaces import TRAINABLE_ATTR, get_space, seed_config, trainable_constraint

BUDGET = 60e6  # between uniform 4 x r4 (~44.5 M on Llama-2-7B) and any 160-expert r8 seed (~105.6 M)


def run_nsga2(shapes, *, constraints_func=None, record=None):
    """A real constrained NSGA-II study on the hilo space with its seeds enqueued first."""
    space = get_space("hilo", n_layers=32)
    sampler = optuna.samplers.NSGAIISampler(seed=0, population_size=8, constraints_func=constraints_func)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for seed in space.seeds():
        study.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})

    def objective(trial):
        config = space.sample(trial)
        trainable = config_trainable(config, shapes)
        if record is None:
            trial.set_user_attr(TRAINABLE_ATTR, trainable)
        else:
            record(trial, trainable)
        return float(trainable), -float(config.total_experts)

    study.optimize(objective, n_trials=24)
    return study


@pytest.mark.filterwarnings("ignore:`constraints_func` has been deprecated:FutureWarning")
@pytest.mark.parametrize("way", ["constraints_func", "record"])
def test_over_budget_configs_are_infeasible_in_nsga2(llama7b_shapes, way):
    constraint = trainable_constraint(BUDGET)
    if way == "constraints_func":
        study = run_nsga2(llama7b_shapes, constraints_func=constraint)
    else:
        study = run_nsga2(llama7b_shapes, record=constraint.record)
    feasible = {t.number for t in study.trials if all(v <= 0 for v in t.constraints.values())}
    for t in study.trials:
        assert list(t.constraints.values()) == [t.user_attrs[TRAINABLE_ATTR] - BUDGET]
        assert (t.number in feasible) == (t.user_attrs[TRAINABLE_ATTR] <= BUDGET)
    by_seed = {t.user_attrs.get("seed_name"): t.number for t in study.trials}
    assert by_seed["uniform"] in feasible and by_seed["mola-2468"] not in feasible
    assert 0 < len(feasible) < len(study.trials)
    assert study.best_trials and all(t.number in feasible for t in study.best_trials)


def test_the_constraint_reads_the_trials_attr():
    constraint = trainable_constraint(1000)
    trial = optuna.trial.create_trial(values=[0.0], user_attrs={TRAINABLE_ATTR: 1500})
    assert constraint(trial) == [500.0]
    with pytest.raises(ValueError, match="trainable_params"):
        constraint(optuna.trial.create_trial(values=[0.0]))


@pytest.mark.parametrize("bad", [0, -5, float("inf"), True, "1e6"])
def test_the_budget_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_trainable"):
        trainable_constraint(bad)


def test_budget_sits_between_the_seeds(llama7b_shapes):
    assert config_trainable(seed_config("uniform", n_layers=32), llama7b_shapes) < BUDGET
    assert config_trainable(seed_config("mola-2468", n_layers=32), llama7b_shapes) > BUDGET
