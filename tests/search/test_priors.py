"""--prior: the queued trials are drawn near the prior configs with the decaying probability, the sampler fills
the rest, and a search run with it keeps every fixed parameter of its prior."""

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from scipy import stats

from search.priors import PRIOR_ATTR, Prior, prior_configs, queue_with_prior
from search.run import main
from spaces import get_space

from search_cli import search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space():
    return get_space("mola", n_layers=8, layer_alphas=[2.0 + 0.1 * i for i in range(8)])


def test_queue_follows_the_decaying_probability_and_keeps_prior_values():
    study = optuna.create_study(directions=["maximize", "minimize"])
    prior = Prior(kind="rules", decay=300, keep=0.6)
    queue_with_prior(study, 600, _space(), prior, seed=3)
    trials = study.get_trials()
    assert len(trials) == 600
    drawn = np.array([PRIOR_ATTR in t.user_attrs for t in trials])
    assert not drawn[300:].any()  # probability 0 from the decay on
    expected = sum(prior.probability(i) for i in range(300))
    p = stats.binomtest(int(drawn[:300].sum()), 300, expected / 300).pvalue
    assert p > 1e-3, (drawn[:300].sum(), expected)
    seeds = dict(prior_configs(_space(), "rules"))
    kept, total = 0, 0
    for t in trials:
        if PRIOR_ATTR in t.user_attrs:
            fixed = t.system_attrs["fixed_params"]
            full = seeds[t.user_attrs[PRIOR_ATTR]]
            assert all(full[k] == v for k, v in fixed.items())  # a kept parameter is the prior's own value
            kept, total = kept + len(fixed), total + len(full)
    assert stats.binomtest(kept, total, 0.6).pvalue > 1e-3
    again = optuna.create_study(directions=["maximize", "minimize"])
    queue_with_prior(again, 600, _space(), prior, seed=3)
    assert [t.system_attrs.get("fixed_params") for t in again.get_trials()] == \
        [t.system_attrs.get("fixed_params") for t in trials]  # seeded: a resumed run queues the same


def test_a_search_with_a_prior_keeps_its_fixed_params(task_file, tiny_model_dir, tmp_path):
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", "8", "--prior", "alphalora",
                       "--prior-decay", "3", "--prior-keep", "0.5", fidelity=1)
    assert main(args) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s/study.db")
    drawn = [t for t in study.get_trials() if PRIOR_ATTR in t.user_attrs]
    assert drawn and all(t.state == TrialState.COMPLETE for t in drawn)
    assert all(t.number >= 4 for t in drawn)  # after the 4 seed rules
    for t in drawn:
        assert all(t.params[k] == v for k, v in t.system_attrs["fixed_params"].items())
    assert study.user_attrs["prior"] == {"kind": "alphalora", "decay": 3, "keep": 0.5}


@pytest.mark.parametrize("extra,message", [
    (["--prior", "rules", "--prior-keep", "0"], "--prior-keep must be in (0, 1]"),
    (["--prior", "rules", "--prior-decay", "0"], "--prior-decay must be"),
])
def test_bad_prior_options_exit_2(task_file, tiny_model_dir, tmp_path, capsys, extra, message):
    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "4", *extra)) == 2
    assert message in capsys.readouterr().err
