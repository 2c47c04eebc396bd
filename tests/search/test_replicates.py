"""A config proposed again is replicated with the next unused training seed, on the Optuna backend; its
objective value is the mean over its replicates and each replicate's metrics are what training gives."""

import optuna
import pytest
from optuna.trial import TrialState

import search.trials
from hilo_core import MoLoRAConfig
from objectives import Fidelity, evaluate, get_task
from search.run import main
from objectives.records import stored_records

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _one_config_search(task_file, tiny_model_dir, tmp_path, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    space = tmp_path / "one.yaml"  # a space of exactly one config: every sampled trial repeats it
    space.write_text("groups: 1\nn_experts: [3]\nrank: [2]\nrouters:\n  topk: {top_k: [2]}\n")
    out = tmp_path / "out"
    argv = ["--space", str(space), "--task", str(task_file), "--model", str(tiny_model_dir), "--study", "d",
            "--out-root", str(out), "--fidelity", "3", "--batch-size", "4", "--eval-examples", "16",
            "--no-report", "--budget", "3", "--seed", "1", "--objectives", "accuracy,trainable", *extra]
    assert main(argv) == 0
    return optuna.load_study(study_name="d", storage=f"sqlite:///{out}/d/study.db").get_trials()


def test_repeated_config_is_replicated_with_the_next_seed(task_file, tiny_model_dir, tmp_path, monkeypatch):
    seeds = []

    def counted(config, *args, **kwargs):
        seeds.append(kwargs["seed"])
        return evaluate(config, *args, **kwargs)

    monkeypatch.setattr(search.trials, "evaluate", counted)
    trials = _one_config_search(task_file, tiny_model_dir, tmp_path)
    monkeypatch.undo()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert seeds == [1, 2, 3] and [t.user_attrs["train_seed"] for t in trials] == [1, 2, 3]
    assert "replicate_of" not in trials[0].user_attrs
    assert [t.user_attrs["replicate_of"] for t in trials[1:]] == [0, 0]
    config = MoLoRAConfig.from_json(trials[0].user_attrs["config"])
    own = []
    for t in trials:  # each replicate's metrics are what an independent training with its seed gives
        again = evaluate(config, get_task(str(task_file), seed=1),
                         Fidelity(steps=3, batch_size=4, max_eval_examples=16, max_test_examples=0),
                         seed=t.user_attrs["train_seed"], model=str(tiny_model_dir))
        assert t.user_attrs["metrics"]["accuracy"] == again.accuracy
        assert stored_records(t.user_attrs).correct.tolist() == again.records.correct.tolist()
        own.append(again.accuracy)
    # the objective value is the running mean over the config's replicates
    assert [t.values[0] for t in trials] == pytest.approx([own[0], sum(own[:2]) / 2, sum(own) / 3])
    assert all(t.user_attrs["metrics"]["test_accuracy"] is None for t in trials)  # search never scores test


@pytest.mark.slow
def test_ray_backend_follows_the_same_replicate_rule(task_file, tiny_model_dir, tmp_path):
    """The same one-config search on both backends: same seeds, same replicate_of, same values."""
    pytest.importorskip("ray")
    optuna_trials = _one_config_search(task_file, tiny_model_dir, tmp_path / "optuna")
    ray_trials = _one_config_search(task_file, tiny_model_dir, tmp_path / "ray", "--backend", "ray", "--workers", "1")
    for key in ("train_seed", "replicate_of", "config"):
        assert [t.user_attrs.get(key) for t in ray_trials] == [t.user_attrs.get(key) for t in optuna_trials]
    assert [t.values for t in ray_trials] == [t.values for t in optuna_trials]
    for r, o in zip(ray_trials, optuna_trials):  # a Ray worker's thread count may change float sums' last bits
        rr, oo = stored_records(r.user_attrs), stored_records(o.user_attrs)
        assert rr.fingerprint == oo.fingerprint and rr.correct.tolist() == oo.correct.tolist()
        assert rr.gold_prob.tolist() == pytest.approx(oo.gold_prob.tolist(), rel=1e-5)


def test_seed_rules_are_trained_with_two_seeds_and_give_the_seed_variance(task_file, tiny_model_dir, tmp_path):
    """--seed-repeats 2: every seed rule twice (all once first), the second copy with the next seed; the study's
    pooled seed variance is then known, from exactly those pairs (a float64 loop recomputes it)."""
    import numpy as np

    from objectives.front import search_front
    from search_cli import search_args

    out = tmp_path / "out"
    assert main(search_args(task_file, tiny_model_dir, out, "--budget", "10", "--seed-repeats", "2")) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out}/s/study.db")
    trials = study.get_trials()
    names = [t.user_attrs["seed_name"] for t in trials]
    assert names[:5] == names[5:] and len(set(names)) == 5  # mola's four patterns and alphalora
    assert [t.user_attrs["train_seed"] for t in trials] == [0] * 5 + [1] * 5
    assert [t.user_attrs.get("replicate_of") for t in trials[5:]] == [0, 1, 2, 3, 4]
    sf = search_front(trials, study.metric_names)
    accs = [[stored_records(t.user_attrs).accuracy for t in (trials[i], trials[i + 5])] for i in range(5)]
    expected = sum((a - (a + b) / 2) ** 2 + (b - (a + b) / 2) ** 2 for a, b in accs) / 5
    assert sf.seed_variance.df == 5 and sf.seed_variance.variance == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert all(c.values.shape[0] == 2 for c in sf.candidates) and np.isfinite(sf.seed_variance.variance)
