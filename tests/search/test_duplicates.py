"""A config the study already trained is not trained again, and the reused values are what training gives."""

import optuna
from optuna.trial import TrialState

import search.trials
from objectives import Fidelity, evaluate, get_task
from hilo_core import MoLoRAConfig
from search.run import main

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_repeated_config_reuses_the_earlier_trial(task_file, tiny_model_dir, tmp_path, monkeypatch):
    space = tmp_path / "one.yaml"  # a space of exactly one config: every sampled trial repeats it
    space.write_text("groups: 1\nn_experts: [3]\nrank: [2]\nrouters:\n  topk: {top_k: [2]}\n")
    calls = []

    def counted(config, *args, **kwargs):
        calls.append(config.to_json())
        return evaluate(config, *args, **kwargs)

    monkeypatch.setattr(search.trials, "evaluate", counted)
    out = tmp_path / "out"
    argv = ["--space", str(space), "--task", str(task_file), "--model", str(tiny_model_dir), "--study", "d",
            "--out-root", str(out), "--fidelity", "3", "--batch-size", "4", "--eval-examples", "16",
            "--no-report", "--budget", "3", "--seed", "1"]
    assert main(argv) == 0
    trials = optuna.load_study(study_name="d", storage=f"sqlite:///{out}/d/study.db").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len(calls) == 1  # trained once
    first = trials[0]
    assert "duplicate_of" not in first.user_attrs
    for t in trials[1:]:
        assert t.user_attrs["duplicate_of"] == 0 and t.values == first.values
        assert t.user_attrs["config"] == first.user_attrs["config"]
    # The reuse is sound only if evaluation is deterministic: train the config again, independently.
    monkeypatch.undo()
    config = MoLoRAConfig.from_json(first.user_attrs["config"])
    again = evaluate(config, get_task(str(task_file), seed=1), Fidelity(steps=3, batch_size=4, max_eval_examples=16), seed=1,
                     model=str(tiny_model_dir))
    assert list(again.values()) == first.values
