"""Super-adapter training resumes bit for bit in a fresh process; sub-configs score as the standalone model
holding their exported weights does (records, fingerprint, parameter counts). Tiny Llama of tiny_models.py."""

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hilo_core import (
    LLAMA_TARGETS, MoLoRAConfig, RouterSpec, count_active, count_trainable, eject, export_subconfig, inject,
    molora_modules,
)
from hilo_core.elastic import maxima_config
from objectives import Fidelity, base_model, evaluate, get_task
from objectives.checkpoint import read_checkpoint
from objectives.evaluation import _activity_batch, validation_fingerprint
from objectives.records import QuestionRecords
from objectives.scoring import choice_scores
from objectives.sequences import encode
from objectives.supernet import loaded_supernet, sandwich, score_subconfig, train_supernet, uniform
from tiny_models import COLOUR_WORDS, save_tiny_causal_lm, write_colours_task

ROOT = Path(__file__).resolve().parents[2]
FIDELITY = Fidelity(steps=6, batch_size=4, max_eval_examples=12, max_test_examples=0, max_length=32, lr=3e-3)


def maxima():
    return maxima_config(4, n_max=3, r_max=4, lora_dropout=0.2)  # dropout: the RNG state matters on resume


def pool():
    threshold, topp, dense = (RouterSpec(kind="threshold"), RouterSpec(kind="topp", top_p=0.6),
                              RouterSpec(kind="dense"))
    return [MoLoRAConfig.from_experts((2, 3, 1, 3), (4, 2, 1, 3), router=threshold, lora_dropout=0.2),
            MoLoRAConfig.from_experts((3, 3, 2, 2), 2, router=topp, lora_dropout=0.2),
            MoLoRAConfig.uniform(4, 2, 3, router=dense, lora_dropout=0.2)]


def sampler():
    """Sandwich: the largest, the smallest and one random pick from ``pool`` per step."""
    return sandwich(maxima(), MoLoRAConfig.uniform(4, 1, 1, lora_dropout=0.2), pool(), n_random=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("supernet")
    model = str(save_tiny_causal_lm(folder / "tiny", COLOUR_WORDS, n_layers=4))
    return model, str(write_colours_task(folder / "colours.jsonl"))


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
    model, task = setup
    path = tmp_path_factory.mktemp("whole") / "whole.pt"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every test here (conftest's one_thread runs after module fixtures)
    try:
        result = train_supernet(maxima(), task, FIDELITY, sampler=sampler(), save_to=path, seed=5, model=model)
    finally:
        torch.set_num_threads(threads)
    return path, result


def _same_run(a, b):
    _, _, wa, sa = read_checkpoint(a)
    _, _, wb, sb = read_checkpoint(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.equal(sa.rng, sb.rng) and (sa.step, sa.tokens, sa.recent) == (sb.step, sb.tokens, sb.recent)
    moments = [(a_["exp_avg"], b_["exp_avg"]) for a_, b_ in zip(sa.optimizer["state"].values(),
                                                                 sb.optimizer["state"].values())]
    assert moments and all(torch.equal(x, y) for x, y in moments)


def test_resumed_in_a_fresh_process_equals_uninterrupted(setup, trained, tmp_path):
    model, task = setup
    whole, result = trained
    train_supernet(maxima(), task, replace(FIDELITY, steps=2), sampler=sampler(), save_to=tmp_path / "a.pt",
                   seed=5, model=model)
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path[:0] = [{str(ROOT / 'tests' / 'objectives')!r}, {str(ROOT / 'tests')!r}]
        torch.set_num_threads(1)
        torch.manual_seed(1234)  # a fresh process with its own generator state
        from objectives import Fidelity
        from objectives.supernet import train_supernet
        from test_supernet import FIDELITY, maxima, sampler
        train_supernet(maxima(), {task!r}, FIDELITY, sampler=sampler(), save_to={str(tmp_path / 'c.pt')!r},
                       seed=5, model={model!r}, resume_from={str(tmp_path / 'a.pt')!r}, checkpoint_every=3,
                       progress=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "super-adapter" in done.stderr  # the progress bar
    _same_run(whole, tmp_path / "c.pt")
    assert result.steps == 6 and result.checkpoint == whole


def test_the_sampler_and_seed_change_the_run(setup, trained, tmp_path):
    """The equality above is not vacuous: the step's sub-configs and the seed both move the weights."""
    model, task = setup
    whole, _ = trained
    train_supernet(maxima(), task, FIDELITY, sampler=uniform(pool()), save_to=tmp_path / "u.pt", seed=5, model=model)
    train_supernet(maxima(), task, FIDELITY, sampler=sampler(), save_to=tmp_path / "s.pt", seed=6, model=model)
    _, _, w, _ = read_checkpoint(whole)
    for other in ("u.pt", "s.pt"):
        _, _, o, _ = read_checkpoint(tmp_path / other)
        assert not all(torch.equal(w[k], o[k]) for k in w)
    with pytest.raises(ValueError, match="another run"):
        train_supernet(maxima(), task, FIDELITY, sampler=sampler(), save_to=tmp_path / "x.pt", seed=7, model=model,
                       resume_from=whole)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_subconfig_scores_as_the_standalone_model_of_its_exported_weights(setup, trained, index):
    model, task = setup
    whole, _ = trained
    config = pool()[index]
    with loaded_supernet(whole, model=model) as layout:
        assert layout == maxima()
        scored = score_subconfig(config, task, FIDELITY, checkpoint=whole, model=model)
        _, state = export_subconfig(base_model(model)[0], config)
    base, tokenizer = base_model(model)
    assert not list(molora_modules(base))  # the super-adapter is ejected on exit
    val = encode(tokenizer, get_task(task).validation[:FIDELITY.max_eval_examples], max_length=FIDELITY.max_length)
    inject(base, config)
    try:
        base.load_state_dict(state, strict=False)
        scores = choice_scores(base, val, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"))
        reference = QuestionRecords.from_scores(scores, [e.answer for e in val], "")
        trainable = count_trainable(base)
        active = count_active(base, _activity_batch(val, FIDELITY.max_length, torch.device("cpu")))
    finally:
        eject(base)
    assert scored.records.correct.tolist() == reference.correct.tolist()
    torch.testing.assert_close(torch.from_numpy(scored.records.gold_prob), torch.from_numpy(reference.gold_prob),
                               rtol=1e-5, atol=1e-6)
    assert scored.records.fingerprint == validation_fingerprint(task, FIDELITY, model)  # pairs with evaluate's
    assert (scored.trainable_params, scored.active_params) == (trainable, pytest.approx(active, rel=1e-12))
    assert scored.steps == FIDELITY.steps and scored.train_seconds == 0.0
    again = score_subconfig(config, task, FIDELITY, checkpoint=whole, model=model)  # loads and ejects by itself
    assert again.records.gold_prob.tolist() == scored.records.gold_prob.tolist()
    assert not list(molora_modules(base))


def test_misfits_and_standalone_checkpoints_are_refused(setup, trained, tmp_path):
    model, task = setup
    whole, _ = trained
    too_big = MoLoRAConfig.uniform(4, 4, 2, lora_dropout=0.2)
    with pytest.raises(ValueError, match=r"^layer 0: n_experts: got 4, the super-adapter allows 1\.\.3$"):
        score_subconfig(too_big, task, FIDELITY, checkpoint=whole, model=model)
    with pytest.raises(ValueError, match="layer 0: ranks"):
        train_supernet(maxima(), task, replace(FIDELITY, steps=1), sampler=uniform([MoLoRAConfig.uniform(4, 1, 8)]),
                       save_to=tmp_path / "y.pt", model=model)
    config = MoLoRAConfig.uniform(4, 2, 2, target_modules=LLAMA_TARGETS)
    evaluate(config, task, replace(FIDELITY, steps=1), model=model, save_to=tmp_path / "standalone.pt")
    with pytest.raises(ValueError, match="standalone run"):
        score_subconfig(config, task, FIDELITY, checkpoint=tmp_path / "standalone.pt", model=model)
    assert not list(molora_modules(base_model(model)[0]))


def test_an_exported_subconfig_warm_starts_standalone_training(setup, trained):
    model, task = setup
    whole, _ = trained
    config = pool()[1]
    with loaded_supernet(whole, model=model):
        inside = score_subconfig(config, task, FIDELITY, checkpoint=whole, model=model)
        _, state = export_subconfig(base_model(model)[0], config)
    still = replace(FIDELITY, steps=1, lr=1e-12, router_lr=1e-12)  # one step that moves no float32 weight
    warm = evaluate(config, task, still, seed=3, model=model, warm_start=state)
    cold = evaluate(config, task, still, seed=3, model=model)
    torch.testing.assert_close(torch.from_numpy(warm.records.gold_prob), torch.from_numpy(inside.records.gold_prob),
                               rtol=1e-5, atol=1e-6)
    assert not torch.allclose(torch.from_numpy(cold.records.gold_prob), torch.from_numpy(inside.records.gold_prob),
                              rtol=1e-3, atol=1e-4)  # the seed's init (B = 0) is elsewhere
    with pytest.raises(ValueError, match="warm_start and resume_from"):
        evaluate(config, task, still, model=model, warm_start=state, resume_from=whole)
