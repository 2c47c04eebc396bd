"""The confirmation stage: exactly (picked configs) x N fresh-seed runs, test scored only there, the search's
own trials untouched, a second call resumes without running anything twice, and export-ready verdicts."""

import optuna
import pytest
from optuna.trial import TrialState

from objectives.records import stored_records
from reports.confirmed import read_confirmation
from search.confirm import SEED_OFFSET, choose
from search.confirm import main as confirm_main
from search.run import main as run_main
from search_cli import search_args

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _snapshot(study):
    return [(t.number, t.state, t.values, dict(t.user_attrs)) for t in study.get_trials()]


@pytest.mark.slow
def test_confirmation_adds_exactly_k_by_n_runs_and_leaves_the_search_alone(task_file, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    argv = search_args(task_file, tiny_model_dir, out, "--budget", "7", "--sampler", "random")
    assert run_main(argv) == 0
    url = f"sqlite:///{out}/s/study.db"
    study = optuna.load_study(study_name="s", storage=url)
    before = _snapshot(study)
    assert all(t.user_attrs["metrics"]["test_accuracy"] is None for t in study.get_trials())  # no test in search
    picks = choose(study, top=2, rules=1)
    n_candidates = sum(p.role == "candidate" for p in picks)
    assert sum(p.role == "rule" for p in picks) == 1 and 1 <= n_candidates <= 2
    assert confirm_main(["--study", "s", "--out-root", str(out), "--top", "2", "--seeds", "2", "--rules", "1"]) == 0
    confirm = optuna.load_study(study_name="s.confirm", storage=url)
    runs = confirm.get_trials()
    assert len(runs) == len(picks) * 2 and all(t.state == TrialState.COMPLETE for t in runs)
    assert sorted({t.user_attrs["train_seed"] for t in runs}) == [SEED_OFFSET, SEED_OFFSET + 1]
    assert all(stored_records(t.user_attrs, "test_records") is not None for t in runs)
    study = optuna.load_study(study_name="s", storage=url)
    after = _snapshot(study)
    assert [b[:3] for b in before] == [a[:3] for a in after]
    assert [b[3] for b in before] == [{k: v for k, v in a[3].items()} for a in after]
    # resumed: nothing more to run
    assert confirm_main(["--study", "s", "--out-root", str(out), "--top", "2", "--seeds", "2", "--rules", "1"]) == 0
    assert len(optuna.load_study(study_name="s.confirm", storage=url).get_trials()) == len(picks) * 2
    conf = read_confirmation("s", url)
    assert len(conf.configs) == len(picks) and len(conf.verdicts()) == 1
    assert conf.best_candidate().role == "candidate"
    row = conf.table()[0]
    assert row["low"] <= row["test"] <= row["high"] and row["seeds"] == 2


def test_confirm_rejects_bad_input_with_one_line(tmp_path, capsys):
    assert confirm_main(["--study", "nope", "--out-root", str(tmp_path), "--top", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--top must be a positive integer, got 0" in err[0]
    assert confirm_main(["--study", "nope", "--out-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no storage file" in err[0] and not (tmp_path / "nope" / "study.db").exists()
