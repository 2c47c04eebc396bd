"""`--evaluator one-shot` end to end on the tiny model: trials store exactly what ``score_subconfig`` of their
config gives inside the trained super-adapter, the confirmation retrains standalone (== ``evaluate`` of that
config and fresh seed), ``--resume`` reuses a finished super-adapter and continues a killed training bit for
bit, and flags it cannot run with end in one line with exit code 2."""

import time
from dataclasses import replace

import optuna
import pytest
import torch
from optuna.trial import TrialState

from hilo_core import MoLoRAConfig
from objectives import Fidelity, evaluate, get_task
from objectives.checkpoint import read_checkpoint
from objectives.records import RECORDS_ATTR, TEST_RECORDS_ATTR
from objectives.supernet import loaded_supernet, score_subconfig, train_supernet
from search.one_shot import plan_supernet
from search.run import main as run_main
from search_cli import cli, search_args
from spaces import get_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
ONE_SHOT = ("--sampler", "random", "--evaluator", "one-shot")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread, as the subprocesses of search_cli: bit-for-bit comparisons across processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(out, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/s/study.db")


@pytest.fixture(scope="module")
def searched(task_file, tiny_model_dir, tmp_path_factory):
    """A one-shot search of 9 trials (5 seed rules, 4 sampled) and its confirmation, run once for the module."""
    out = tmp_path_factory.mktemp("one_shot") / "out"
    argv = search_args(task_file, tiny_model_dir, out, "--budget", "9", *ONE_SHOT, "--supernet-steps", "6",
                       "--confirm", "2", "--confirm-seeds", "1", "--confirm-rules", "1")
    assert run_main(argv) == 0
    return out, argv


@pytest.mark.slow
def test_trials_store_the_sub_config_scores_and_confirmation_trains_standalone(searched, task_file, tiny_model_dir):
    out, _ = searched
    study = _load(out)
    info = study.user_attrs["supernet"]
    checkpoint = out / "s" / "supernet" / "supernet.pt"
    assert info["checkpoint"] == str(checkpoint) and info["steps"] == 6 and read_checkpoint(checkpoint)[3].step == 6
    assert (info["n_max"], info["r_max"]) == ([8] * 4, [8] * 4) and info["sampler"].startswith("sandwich")
    assert study.user_attrs["evaluator"] == "one-shot"
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 9 and all(t.user_attrs["evaluator"] == "one-shot" for t in done)
    task = get_task(str(task_file), seed=0)
    fidelity = Fidelity(**study.user_attrs["fidelity"])
    with loaded_supernet(checkpoint, model=str(tiny_model_dir)):  # recomputed here, independently of the search
        for t in done:
            again = score_subconfig(MoLoRAConfig.from_json(t.user_attrs["config"]), task, fidelity,
                                    checkpoint=checkpoint, model=str(tiny_model_dir))
            stored = t.user_attrs["metrics"]
            assert t.user_attrs[RECORDS_ATTR] == again.records.encode()
            assert (stored["accuracy"], stored["trainable_params"], stored["active_params"], stored["train_seconds"]) \
                == (again.accuracy, again.trainable_params, again.active_params, 0.0)
            assert t.values[0] == again.accuracy  # replicates of a rule score alike: the mean is the score
    runs = _load(out, "s.confirm").get_trials()
    assert runs and all(t.state == TrialState.COMPLETE for t in runs)
    confirm_fidelity = replace(fidelity, eval_every=0, max_test_examples=len(task.test))
    for t in runs:  # a standalone training with the fresh seed, not a score inside the super-adapter
        alone = evaluate(MoLoRAConfig.from_json(t.user_attrs["config"]), task, confirm_fidelity,
                         seed=t.user_attrs["train_seed"], model=str(tiny_model_dir))
        assert t.user_attrs["train_seed"] >= 1000 and alone.steps == fidelity.steps and alone.train_seconds > 0
        assert t.user_attrs[RECORDS_ATTR] == alone.records.encode()
        assert t.user_attrs[TEST_RECORDS_ATTR] == alone.test_records.encode()


@pytest.mark.slow
def test_resume_reuses_the_finished_super_adapter(searched, capsys):
    out, argv = searched
    checkpoint = out / "s" / "supernet" / "supernet.pt"
    before = (checkpoint.stat().st_mtime_ns, checkpoint.read_bytes())
    capsys.readouterr()
    assert run_main([*argv, "--budget", "11", "--confirm", "0", "--resume"]) == 0
    assert "super-adapter: reusing" in capsys.readouterr().out
    assert (checkpoint.stat().st_mtime_ns, checkpoint.read_bytes()) == before
    done = _load(out).get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 11 and all(t.user_attrs["evaluator"] == "one-shot" for t in done)
    i = argv.index("--supernet-steps")
    standard = argv[:i] + argv[i + 2:] + ["--evaluator", "standard"]
    for changed, option in (([*argv, "--supernet-steps", "7"], "--supernet-steps 7 (study: 6)"),
                            (standard, "--evaluator standard (study: one-shot)")):
        assert run_main([*changed, "--budget", "11", "--resume"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and option in err[0], err
    assert len(_load(out).get_trials()) == 11  # refused before anything was queued


@pytest.mark.slow
def test_killed_super_adapter_training_continues_bit_for_bit(task_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = search_args(task_file, tiny_model_dir, out, "--budget", "5", *ONE_SHOT, "--supernet-steps", "30")
    checkpoint = out / "s" / "supernet" / "supernet.pt"
    proc = cli("search.run", *argv)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    killed_at = read_checkpoint(checkpoint)[3].step
    assert 0 < killed_at < 30  # checkpoints every 3 steps: killed after the first
    capsys.readouterr()
    assert run_main([*argv, "--resume"]) == 0
    assert f"super-adapter: continuing from step {killed_at} to 30 steps" in capsys.readouterr().out  # not anew
    assert read_checkpoint(checkpoint)[3].step == 30
    study = _load(out)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5
    # the same plan and training uninterrupted, in this process
    plan = plan_supernet(get_space("mola", n_layers=4), 0)
    fidelity = replace(Fidelity(**study.user_attrs["fidelity"]), steps=30)
    whole = train_supernet(plan.maxima, get_task(str(task_file), seed=0), fidelity, sampler=plan.sampler(),
                           save_to=tmp_path / "whole.pt", seed=0, model=str(tiny_model_dir)).checkpoint
    (_, _, wa, sa), (_, _, wb, sb) = read_checkpoint(checkpoint), read_checkpoint(whole)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.equal(sa.rng, sb.rng) and (sa.tokens, sa.recent) == (sb.tokens, sb.recent)
    moments = [(a["exp_avg_sq"], b["exp_avg_sq"]) for a, b in zip(sa.optimizer["state"].values(),
                                                                   sb.optimizer["state"].values())]
    assert moments and all(torch.equal(x, y) for x, y in moments)


@pytest.mark.parametrize("extra, says", [
    (("--evaluator", "one-shot", "--backend", "ray"), "got --backend ray"),
    (("--evaluator", "one-shot", "--scheduler", "asha"), "got --scheduler asha"),
    (("--evaluator", "one-shot", "--pruner", "median"), "got --pruner median"),
    (("--evaluator", "one-shot", "--supernet-steps", "0"), "--supernet-steps must be a positive integer, got 0"),
    (("--supernet-steps", "5"), "--supernet-steps 5 needs --evaluator one-shot"),
])
def test_flags_one_shot_cannot_run_with_end_in_one_line(extra, says, task_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_main(search_args(task_file, tmp_path / "no-model", out, "--budget", "3", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not out.exists()  # nothing touched


def test_a_failed_super_adapter_training_ends_in_one_line(task_file, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The CLI's handling of TrialFailed from the super-adapter (the loss check itself is tested in train)."""
    import search.one_shot
    from objectives import TrialFailed

    def diverge(*args, **kwargs):
        raise TrialFailed("loss is nan at step 3 (lm nan); lower lr (0.001) or router_lr (0.001)")

    monkeypatch.setattr(search.one_shot, "train_supernet", diverge)
    args = search_args(task_file, tiny_model_dir, tmp_path, "--budget", "4", "--evaluator", "one-shot",
                       "--supernet-steps", "2", fidelity=1)
    assert run_main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "super-adapter training failed: loss is nan at step 3" in err
    assert len(err.splitlines()) == 1


def test_one_shot_replicates_are_not_taken_for_seed_variance():
    """Two one-shot trials of one config score identically; pooling them would claim a seed variance of 0."""
    import numpy as np
    from objectives.front import search_front
    from objectives.records import QuestionRecords

    rng = np.random.default_rng(0)

    class T:
        def __init__(self, number, key, correct):
            rec = QuestionRecords(correct=correct, gold_prob=correct.astype(np.float32) * 0.5 + 0.25,
                                  fingerprint="q")
            self.number, self.user_attrs = number, {"config": key, "evaluator": "one-shot", "val_records": rec.encode(),
                                                    "metrics": {"trainable_params": 10 * (number + 1), "active_params": 5}}

    a, b = rng.random(40) < 0.5, rng.random(40) < 0.6
    sf = search_front([T(0, "a", a), T(1, "b", b), T(2, "a", a)], ["accuracy", "trainable", "active"])
    assert not sf.seed_variance.known and all(c.values.shape[0] == 1 for c in sf.candidates)
    assert sf.trials["a"] == [0, 2]  # the re-proposal is still the config's trial
