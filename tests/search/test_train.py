"""search.train end to end on a tiny model: the chosen trial is retrained, saved, and reloads to the same logits.

Training is deterministic on the CPU for a config, task, fine-tune settings and seed, so retraining a trial with
the study's own settings must give back the validation accuracy the search recorded for it.
"""

import json

import pytest

from hilo_core import load_adapters
from hilo_core.models import load_model
from search.run import main as search
from search.train import eval_interval, main
from search_cli import search_args


@pytest.fixture(scope="module")
def study(task_file, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert search(search_args(task_file, tiny_model_dir, out, "--budget", "2", study="t", fidelity=4)) == 0
    return out


def test_train_reproduces_the_trial_saves_and_reloads(study, tiny_model_dir, capsys):
    out = study / "trained"
    assert main(["--study", "t", "--out-root", str(study), "--trial", "best", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert ": best: " in printed and "step 4/4: validation accuracy" in printed
    report = json.loads((out / "train.json").read_text())
    assert report["metrics"]["accuracy"] == report["trial_metrics"]["accuracy"]  # the search's own result, again
    assert report["reload"]["same_test_accuracy"] and report["reload"]["max_logit_difference"] <= 1e-5
    assert report["fidelity"]["steps"] == 4 and report["metrics"]["test_accuracy"] is not None
    # the saved folder is plain save_adapters output: load_adapters on a fresh base model, same config
    fresh = load_adapters(load_model(str(tiny_model_dir))[0], out / "adapters")
    assert json.loads((out / "adapters" / "molora_config.json").read_text()) == \
        json.loads(fresh.hilo_config.to_json())


def test_steps_override_and_trial_number(study, capsys):
    out = study / "longer"
    assert main(["--study", "t", "--out-root", str(study), "--trial", "1", "--steps", "6", "--out", str(out),
                 "--no-verify"]) == 0
    report = json.loads((out / "train.json").read_text())
    assert report["trial"] == 1 and report["fidelity"]["steps"] == 6 and "reload" not in report
    assert "step 6/6" in capsys.readouterr().out


def test_front_keeps_every_front_member(study):
    from reports.load import load

    data = load("t", out_root=study)
    front = {r.number: r for r in data.noise_front or data.front}
    out = study / "front"
    assert main(["--study", "t", "--out-root", str(study), "--trial", "front", "--out", str(out)]) == 0
    for number, row in front.items():
        report = json.loads((out / f"trial{number}" / "train.json").read_text())
        assert (out / f"trial{number}" / "adapters" / "adapters.safetensors").is_file()
        assert report["metrics"]["accuracy"] == row.value("accuracy") and report["reload"]["same_test_accuracy"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"trial{n}" for n in front)


def test_bad_input_is_one_line(study, capsys):
    assert main(["--study", "t", "--out-root", str(study), "--trial", "9"]) == 2
    assert main(["--study", "t", "--out-root", str(study), "--steps", "0"]) == 2
    assert main(["--study", "nope", "--out-root", str(study)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("search.train: ") for line in lines)
    assert "has no trial 9" in lines[0] and "--steps must be a positive integer, got 0" in lines[1]


def test_progress_interval_divides_the_steps():
    assert [eval_interval(s) for s in (4, 12, 13, 40, 1)] == [1, 3, 13, 10, 1]
    assert all(s % eval_interval(s) == 0 for s in range(1, 200))
