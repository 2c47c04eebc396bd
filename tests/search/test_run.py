"""search.run end to end on a tiny model: seeds first, every trial stored, resume, front, bad input."""

import sqlite3

import optuna
import pytest
from optuna.trial import TrialState

from hilo_core import MoLoRAConfig
from search.run import main
from spaces import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _seeds(study):
    """The mola space's seed rules on the tiny model (alphalora's from the study's own alphas)."""
    return [s.name for s in get_space("mola", n_layers=4, layer_alphas=study.user_attrs["layer_alphas"]).seeds()]


def _args(task_file, model_dir, out_root, *extra):
    return ["--space", "mola", "--task", str(task_file), "--model", str(model_dir), "--study", "s",
            "--out-root", str(out_root), "--fidelity", "3", "--batch-size", "4", "--eval-examples", "16",
            "--no-report", "--seed-repeats", "1", *extra]


def _load(out_root, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out_root}/{name}/study.db")


@pytest.fixture(scope="module")
def searched(task_file, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(_args(task_file, tiny_model_dir, out, "--budget", "6")) == 0
    return out


def test_seeds_first_and_every_trial_stored(searched):
    study = _load(searched)
    trials = study.get_trials()
    seeds = _seeds(study)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.user_attrs.get("seed_name") for t in trials[:len(seeds)]] == seeds
    assert all("seed_name" not in t.user_attrs for t in trials[len(seeds):])
    assert study.metric_names == ["accuracy", "trainable", "active"]
    assert study.user_attrs["n_layers"] == 4 and len(study.user_attrs["layer_alphas"]) == 4
    for t in trials:
        config = MoLoRAConfig.from_json(t.user_attrs["config"])
        assert config.n_layers == 4
        metrics = t.user_attrs["metrics"]
        assert t.values == [metrics["accuracy"], metrics["trainable_params"], metrics["active_params"]]
        assert t.user_attrs["trainable_params"] == metrics["trainable_params"]
    assert MoLoRAConfig.from_json(trials[0].user_attrs["config"]).experts_per_layer == (2, 4, 6, 8)


def test_resume_adds_exactly_the_difference(searched, task_file, tiny_model_dir, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(searched, out)
    assert main(_args(task_file, tiny_model_dir, out, "--budget", "8", "--resume")) == 0
    trials = _load(out).get_trials()
    assert len(trials) == 8
    assert sorted(t.user_attrs["seed_name"] for t in trials if "seed_name" in t.user_attrs) == sorted(_seeds(_load(out)))
    assert main(_args(task_file, tiny_model_dir, out, "--budget", "8", "--resume")) == 0
    assert len(_load(out).get_trials()) == 8


def test_front_equals_brute_force_non_domination(searched):
    study = _load(searched)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    signs = [1 if d == optuna.study.StudyDirection.MAXIMIZE else -1 for d in study.directions]

    def dominates(a, b):
        a, b = [s * v for s, v in zip(signs, a.values)], [s * v for s, v in zip(signs, b.values)]
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    brute = {t.number for t in done if not any(dominates(o, t) for o in done)}
    assert {t.number for t in study.best_trials} == brute


def test_existing_study_is_not_overwritten(searched, task_file, tiny_model_dir, capsys):
    before = len(_load(searched).get_trials())
    assert main(_args(task_file, tiny_model_dir, searched, "--budget", "7")) == 2
    assert "already exists" in capsys.readouterr().err
    assert len(_load(searched).get_trials()) == before


@pytest.mark.parametrize("extra, message", [
    (["--budget", "0"], "--budget must be a positive"),
    (["--budget", "3", "--objectives", "accuracy,speed"], "--objectives must be"),
    (["--budget", "3", "--storage", "redis://localhost/0"], "--storage must be an RDB URL"),
    (["--budget", "3", "--space", "nonsense"], "--space nonsense"),
    (["--budget", "3", "--targets", "q_proj,wrong_proj"], "wrong_proj"),
])
def test_bad_input_exits_2_with_one_line(extra, message, task_file, tiny_model_dir, tmp_path, capsys):
    assert main(_args(task_file, tiny_model_dir, tmp_path, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("search.run: ") and message in err and len(err.strip().splitlines()) == 1


def test_corrupt_storage_file_is_refused(task_file, tiny_model_dir, tmp_path, capsys):
    db = tmp_path / "s" / "study.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not a database" * 100)
    assert main(_args(task_file, tiny_model_dir, tmp_path, "--budget", "2", "--resume")) == 2
    assert "not a readable SQLite database" in capsys.readouterr().err
    assert db.read_bytes() == b"this is not a database" * 100
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")
    assert main(_args(task_file, tiny_model_dir, tmp_path, "--budget", "2", "--storage", f"sqlite:///{other}")) == 2
    assert "not an Optuna study database" in capsys.readouterr().err
