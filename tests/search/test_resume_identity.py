"""--resume continues only the same experiment: another task, model, space, seed, objectives or targets is
refused with one line naming each difference, before the study is touched."""

from __future__ import annotations

import json

import optuna
import pytest

from search.study import SearchInputError, check_same_study, create_or_resume, locate
from search_cli import search_args
from tiny_models import COLOUR_WORDS, save_tiny_causal_lm

OBJECTIVES = ("accuracy", "trainable", "active")
ATTRS = {"space": "mola", "task": "colours.jsonl", "model": "tiny", "seed": 0, "command": "python -m search.run",
         "target_modules": ["q_proj", "v_proj"], "n_layers": 4}


pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def created(tmp_path, name: str = "s", attrs: dict = ATTRS) -> optuna.Study:
    location = locate(name, out_root=tmp_path)
    study = create_or_resume(location, objectives=OBJECTIVES, directions=["maximize", "minimize", "minimize"],
                             sampler=optuna.samplers.RandomSampler(), resume=False, attrs=attrs)
    study.set_user_attr("setup", "done")
    return study


@pytest.mark.parametrize("change, words", [
    ({"task": "other.jsonl"}, ["--task other.jsonl (study: colours.jsonl)"]),
    ({"model": "default"}, ["--model default (study: tiny)"]),
    ({"space": "hilo"}, ["--space hilo (study: mola)"]),
    ({"seed": 1}, ["--seed 1 (study: 0)"]),
    ({"target_modules": ["q_proj"]}, ["--targets q_proj (study: q_proj,v_proj)"]),
    ({"seed": 2, "space": "free", "model": "m"}, ["--model m (study: tiny)", "--space free (study: mola)",
                                                  "--seed 2 (study: 0)"]),
])
def test_a_different_experiment_is_refused_naming_each_difference(tmp_path, change, words):
    created(tmp_path)
    with pytest.raises(SearchInputError) as err:
        create_or_resume(locate("s", out_root=tmp_path), objectives=OBJECTIVES,
                         directions=["maximize", "minimize", "minimize"], sampler=optuna.samplers.RandomSampler(),
                         resume=True, attrs={**ATTRS, **change, "command": "another command line"})
    message = str(err.value)
    assert "\n" not in message and message.startswith("--resume: ")
    assert all(w in message for w in words), message
    assert message.count("(study: ") == len(words)  # nothing else named: the command line may differ


def test_same_options_resume_and_other_objectives_are_named(tmp_path):
    study = created(tmp_path)
    check_same_study(study, objectives=OBJECTIVES, attrs={**ATTRS, "command": "edited", "layer_alphas": [1.0]})
    with pytest.raises(SearchInputError, match=r"--objectives accuracy \(study: accuracy,trainable,active\)"):
        check_same_study(study, objectives=("accuracy",), attrs=ATTRS)
    older = created(tmp_path, "old", {k: v for k, v in ATTRS.items() if k != "seed"})  # stored no seed yet
    check_same_study(older, objectives=OBJECTIVES, attrs={**ATTRS, "seed": 5})


def test_cli_resume_with_other_seed_task_and_model_exits_2_untouched(task_file, tiny_model_dir, tmp_path, capsys):
    from search.run import main

    assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "1", fidelity=1)) == 0
    other_task = tmp_path / "other.jsonl"
    other_task.write_text(task_file.read_text())
    other_model = save_tiny_causal_lm(tmp_path / "other-model", COLOUR_WORDS, n_layers=4, seed=1)
    db = tmp_path / "s" / "study.db"
    before = db.read_bytes()
    capsys.readouterr()
    argv = search_args(other_task, other_model, tmp_path, "--budget", "2", "--seed", "3", "--resume", fidelity=1)
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("search.run: --resume: "), lines
    for option in ("--task", "--model", "--seed 3 (study: 0)"):
        assert option in lines[0], lines[0]
    assert db.read_bytes() == before
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert len(study.trials) == 1 and json.loads(json.dumps(study.user_attrs["seed"])) == 0
