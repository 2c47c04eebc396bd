"""--backend ray on a local 2-CPU Ray: the same number of trials and the same stored fields as Optuna."""

import optuna
import pytest
from optuna.trial import TrialState

from search.run import main

pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_backend_matches_optuna_backend(task_file, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    common = ["--space", "mola", "--task", str(task_file), "--model", str(tiny_model_dir), "--budget", "5",
              "--fidelity", "2", "--batch-size", "4", "--eval-examples", "8", "--no-report",
              "--out-root", str(tmp_path)]
    assert main(common + ["--study", "opt"]) == 0
    assert main(common + ["--study", "ray", "--backend", "ray", "--workers", "2"]) == 0
    studies = {n: optuna.load_study(study_name=n, storage=f"sqlite:///{tmp_path}/{n}/study.db") for n in ("opt", "ray")}
    trials = {n: s.get_trials() for n, s in studies.items()}
    assert len(trials["ray"]) == len(trials["opt"]) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials["ray"])
    for a, b in zip(trials["opt"], trials["ray"]):
        assert set(a.user_attrs) == set(b.user_attrs)
        assert set(a.params) == set(b.params)
    seeds = lambda ts: sorted(t.user_attrs["seed_name"] for t in ts if "seed_name" in t.user_attrs)  # noqa: E731
    assert seeds(trials["ray"]) == seeds(trials["opt"])
    assert studies["ray"].metric_names == studies["opt"].metric_names
    assert studies["ray"].user_attrs.keys() == studies["opt"].user_attrs.keys()
