"""Reading studies: the front is optuna's best_trials and matches a brute-force non-domination check."""

from __future__ import annotations

import random

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from reports.load import StudyError, load, open_study, read_study

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
DIRECTIONS = {"accuracy": "maximize", "trainable": "minimize", "active": "minimize"}


def brute_force_front(points: dict[int, tuple[float, ...]], directions: tuple[str, ...]) -> set[int]:
    """Trials no other trial dominates, by comparing every pair (signs turn every objective into max)."""
    signs = [1.0 if d == "maximize" else -1.0 for d in directions]

    def dominates(a, b):
        a, b = [s * x for s, x in zip(signs, a)], [s * x for s, x in zip(signs, b)]
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    return {n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)}


def test_tiny_study_rows_and_front(tiny_study, out_root, trial_specs):
    data = load("tiny", out_root=out_root)
    assert data.objectives == ("accuracy", "trainable", "active")
    assert data.directions == ("maximize", "minimize", "minimize")
    assert data.counts() == {"COMPLETE": 7, "FAIL": 1, "PRUNED": 1}
    points = {r.number: tuple(r.value(n) for n in data.objectives) for r in data.completed}
    assert {r.number for r in data.front} == brute_force_front(points, data.directions) == {2, 3, 8}
    failed = next(r for r in data.rows if r.state == "FAIL")
    assert failed.failure == "loss became NaN at step 12" and not failed.on_front
    assert [r.seed_name for r in data.completed if r.is_seed] == ["mola-2468", "hilo-rule", "uniform"]
    assert data.attrs["command"].startswith("python -m search.run")
    for row, spec in zip(data.rows, trial_specs):
        assert row.config == spec["config"]


@pytest.mark.parametrize("objectives", [("accuracy", "trainable", "active"), ("accuracy", "trainable")])
def test_front_matches_brute_force_with_ties(objectives):
    rng = random.Random(7)
    study = optuna.create_study(directions=[DIRECTIONS[o] for o in objectives])
    study.set_metric_names(list(objectives))
    # coarse grids force ties and duplicates, the cases a careless dominance check gets wrong; accuracy
    # costs parameters, so the front has several members
    trials = []
    for _ in range(40):
        accuracy = rng.choice([0.5, 0.6, 0.7])
        values = [accuracy, accuracy * 1e5 + rng.choice([0, 1e4, 2e4]), rng.choice([1e4, 2e4, 3e4])]
        trials.append(create_trial(state=TrialState.COMPLETE, values=values[:len(objectives)]))
    study.add_trials(trials)
    data = read_study(study)
    points = {r.number: tuple(r.value(n) for n in objectives) for r in data.completed}
    front = {r.number for r in data.front}
    assert front == brute_force_front(points, data.directions)
    assert 1 < len(front) < 40


def test_study_without_metric_names_uses_the_contract_order():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 100.0],
                                 user_attrs={"metrics": {"active_params": 60.0}}))
    row = read_study(study).completed[0]
    assert (row.value("accuracy"), row.value("trainable"), row.value("active")) == (0.5, 100.0, 60.0)


def test_missing_empty_and_failed_studies_say_why(out_root, make_study, trial_specs):
    with pytest.raises(StudyError, match="no storage file"):
        open_study("nope", out_root=out_root)
    assert not (out_root / "nope" / "study.db").exists()  # looking never creates a study
    make_study(out_root, "empty", [])
    with pytest.raises(StudyError, match="no completed trials \\(no trials at all\\)"):
        load("empty", out_root=out_root)
    failed = [dict(spec, state=TrialState.FAIL, failure="OOM") for spec in trial_specs[:3]]
    make_study(out_root, "failed", failed)
    with pytest.raises(StudyError, match="no completed trials \\(3 fail\\)"):
        load("failed", out_root=out_root)
    with pytest.raises(StudyError, match="not found in .* it holds: failed"):
        open_study("other", storage=f"sqlite:///{out_root / 'failed' / 'study.db'}")
