"""--backend ray on a local 2-CPU Ray: the same number of trials and the same stored fields as Optuna."""

import optuna
import pytest
from optuna.trial import TrialState

from search.run import main

pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_backend_matches_optuna_backend(task_file, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # Ray then sets it to each trial's CPUs
    common = ["--space", "mola", "--task", str(task_file), "--model", str(tiny_model_dir), "--budget", "5",
              "--fidelity", "2", "--batch-size", "4", "--eval-examples", "8", "--no-report",
              "--out-root", str(tmp_path)]
    assert main(common + ["--study", "opt"]) == 0
    assert main(common + ["--study", "ray", "--backend", "ray", "--workers", "2"]) == 0
    studies = {n: optuna.load_study(study_name=n, storage=f"sqlite:///{tmp_path}/{n}/study.db") for n in ("opt", "ray")}
    trials = {n: s.get_trials() for n, s in studies.items()}
    assert len(trials["ray"]) == len(trials["opt"]) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials["ray"])
    assert {t.user_attrs["threads"] for t in trials["ray"]} == {1}  # Ray's OMP_NUM_THREADS for 1 CPU per trial
    for a, b in zip(trials["opt"], trials["ray"]):
        assert set(a.user_attrs) == set(b.user_attrs)
        assert set(a.params) == set(b.params)
    seeds = lambda ts: sorted(t.user_attrs["seed_name"] for t in ts if "seed_name" in t.user_attrs)  # noqa: E731
    assert seeds(trials["ray"]) == seeds(trials["opt"])
    assert studies["ray"].metric_names == studies["opt"].metric_names
    assert studies["ray"].user_attrs.keys() == studies["opt"].user_attrs.keys()


def _packed(node, cpus, gpus):
    """Reference: trials placed on one node one at a time until the next does not fit (float64 loop)."""
    free_cpu, free_gpu, n = float(node.get("CPU", 0.0)), float(node.get("GPU", 0.0)), 0
    while free_cpu + 1e-9 >= cpus and free_gpu + 1e-9 >= gpus:
        free_cpu, free_gpu, n = free_cpu - cpus, free_gpu - gpus, n + 1
    return n


def test_trial_resources_come_from_the_cluster_nodes():
    """Slots, the GPU default and the refusal, against packing each node by hand, on random clusters."""
    import argparse
    import random

    from search.ray_cluster import trial_resources
    from search.study import SearchInputError

    rng = random.Random(0)
    for _ in range(300):
        nodes = [{"CPU": float(rng.choice([1, 2, 4, 8, 16])), **({"GPU": float(rng.choice([1, 2, 4, 8]))}
                                                                 if rng.random() < 0.5 else {})}
                 for _ in range(rng.randint(1, 4))]
        cpus = rng.choice([None, 0.25, 0.5, 1.0, 1.5, 3.0, 32.0])
        gpus = rng.choice([None, 0.0, 0.25, 0.5, 1.0, 3.0])
        args = argparse.Namespace(cpus_per_trial=cpus, gpus_per_trial=gpus, workers=2, ray_address="h:1", argv=[])
        want_cpus = 1.0 if cpus is None else cpus
        want_gpus = gpus if gpus is not None else (1.0 if any(n.get("GPU", 0) >= 1 for n in nodes) else 0.0)
        slots = sum(_packed(n, want_cpus, want_gpus) for n in nodes)
        if slots == 0:
            with pytest.raises(SearchInputError, match="no node of the Ray cluster can hold one trial"):
                trial_resources(args, nodes)
            continue
        got = trial_resources(args, nodes)
        assert (got.cpus, got.gpus, got.slots, got.max_concurrent) == (want_cpus, want_gpus, slots, None)
    given = argparse.Namespace(cpus_per_trial=None, gpus_per_trial=None, workers=3, ray_address="h:1",
                               argv=["--workers", "3"])
    assert trial_resources(given, [{"CPU": 8.0}]).max_concurrent == 3  # --workers caps a cluster when given
    local = argparse.Namespace(cpus_per_trial=None, gpus_per_trial=None, workers=2, ray_address=None, argv=[])
    assert trial_resources(local, [{"CPU": 2.0}]).max_concurrent == 2  # a local Ray runs --workers trials
