import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from hilo_core import (
    MoLoRAConfig, RouterSpec, config_active, config_trainable, eject, inject, module_shapes, molora_modules,
)
from objectives import Fidelity, Metrics, TrialFailed, evaluate, get_task
from objectives.train import optimizer_groups

N_LAYERS = 2  # the tiny model of conftest.py
FAST = Fidelity(steps=4, batch_size=4, max_eval_examples=12, max_test_examples=12, max_length=64)
TIMING = ("train_seconds", "tokens_per_second", "eval_seconds", "peak_memory")


def _task():
    return get_task("analogy", n_train=24, n_validation=12, n_test=12)


def _repeatable(m: Metrics) -> dict:
    return {k: v for k, v in m.to_dict().items() if k not in TIMING}


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def _assert_restored(model, snapshot):
    assert not list(molora_modules(model))
    state = model.state_dict()
    assert state.keys() == snapshot.keys()
    assert all(torch.equal(state[n], snapshot[n]) for n in snapshot)
    assert all(p.requires_grad for p in model.parameters())


def test_same_config_and_seed_give_identical_metrics(tiny_model_dir):
    config = MoLoRAConfig.uniform(N_LAYERS, 4, 4)
    first = evaluate(config, _task(), FAST, seed=3, model=tiny_model_dir)
    again = evaluate(config, _task(), FAST, seed=3, model=tiny_model_dir)
    assert _repeatable(first) == _repeatable(again)
    other_seed = evaluate(config, _task(), FAST, seed=4, model=tiny_model_dir)
    assert other_seed.final_loss != first.final_loss


def test_no_weights_leak_from_one_trial_into_the_next(tiny_model_dir, tiny):
    model, _ = tiny
    before = _snapshot(model)
    a = MoLoRAConfig.uniform(N_LAYERS, 2, 4)
    b = MoLoRAConfig.uniform(N_LAYERS, 3, 8, router=RouterSpec(kind="threshold"))
    first = evaluate(a, _task(), FAST, model=tiny_model_dir)
    _assert_restored(model, before)
    evaluate(b, _task(), replace(FAST, lr=1e-2), seed=7, model=tiny_model_dir)
    _assert_restored(model, before)
    assert _repeatable(evaluate(a, _task(), FAST, model=tiny_model_dir)) == _repeatable(first)


def test_parameter_counts_match_the_config(tiny_model_dir, tiny):
    model, _ = tiny
    config = MoLoRAConfig.uniform(N_LAYERS, 4, 2)  # top-2 of equal ranks: active is known exactly
    metrics = evaluate(config, _task(), FAST, model=tiny_model_dir)
    shapes = module_shapes(model, config.target_modules)
    assert metrics.trainable_params == config_trainable(config, shapes)
    assert metrics.active_params == pytest.approx(config_active(config, shapes))
    assert metrics.active_params < metrics.trainable_params
    assert metrics.steps == FAST.steps and 0.0 <= metrics.accuracy <= 1.0 and 0.0 <= metrics.test_accuracy <= 1.0


def test_routers_get_their_own_learning_rate(tiny):
    model, _ = tiny
    inject(model, MoLoRAConfig.uniform(N_LAYERS, 3, 2))
    try:
        experts, routers = optimizer_groups(model, Fidelity(lr=1e-3, router_lr=5e-2))
        named = dict(model.named_parameters())
        router_ids = {id(p) for n, p in named.items() if ".router." in n}
        assert {id(p) for p in routers["params"]} == router_ids and routers["lr"] == 5e-2
        assert {id(p) for p in experts["params"]} == {id(p) for n, p in named.items() if ".lora_" in n}
        assert experts["lr"] == 1e-3
    finally:
        eject(model)


def test_non_finite_loss_fails_the_trial_and_restores_the_model(tiny_model_dir, tiny):
    model, _ = tiny
    before = _snapshot(model)
    with pytest.raises(TrialFailed, match="non-finite|is nan|is inf") as info:
        evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), _task(), replace(FAST, lr=1e30, max_grad_norm=0.0),
                 model=tiny_model_dir)
    assert info.value.reason == str(info.value)
    _assert_restored(model, before)


class Stop(Exception):
    pass


def test_on_eval_can_stop_training_early_and_the_model_is_restored(tiny_model_dir, tiny):
    model, _ = tiny
    before = _snapshot(model)
    calls = []

    def on_eval(step, accuracy):
        calls.append((step, accuracy))
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), _task(), replace(FAST, steps=10_000, eval_every=2),
                 model=tiny_model_dir, on_eval=on_eval)
    assert [s for s, _ in calls] == [2, 4]
    assert all(0.0 <= a <= 1.0 for _, a in calls)
    _assert_restored(model, before)


def test_on_eval_sees_the_validation_accuracy_that_ends_in_metrics(tiny_model_dir):
    calls = []
    metrics = evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), _task(), replace(FAST, steps=6, eval_every=3),
                       model=tiny_model_dir, on_eval=lambda step, acc: calls.append((step, acc)))
    assert [s for s, _ in calls] == [3, 6]
    assert calls[-1][1] == metrics.accuracy


def test_a_short_fine_tune_learns_an_easy_task(tiny_model_dir, tmp_path):
    """'say dog' -> ' dog', 'say cat' -> ' cat': the prompt decides, so an untrained model sits near
    chance (it prefers one word whatever is asked) and trained adapters must read the prompt."""
    rows = [{"question": f"Question {i}: say {word}", "choices": ["cat", "dog"], "answer": word}
            for i in range(48) for word in ["dog", "cat"][i % 2:i % 2 + 1]]
    path = tmp_path / "say.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task(str(path))
    fidelity = Fidelity(steps=40, batch_size=8, lr=1e-2, max_length=64)
    config = MoLoRAConfig.uniform(N_LAYERS, 1, 4)
    untrained = evaluate(config, task, replace(fidelity, steps=1, lr=1e-12), model=tiny_model_dir)
    learned = evaluate(config, task, fidelity, model=tiny_model_dir)
    assert untrained.accuracy <= 0.75
    assert learned.accuracy == 1.0 and learned.test_accuracy == 1.0
    assert learned.final_loss < untrained.final_loss - 1.0


@pytest.mark.slow
def test_a_fresh_process_gives_the_same_metrics(tiny_model_dir):
    """In-process trials after other trials equal a first trial in a new process: nothing carries over."""
    evaluate(MoLoRAConfig.uniform(N_LAYERS, 3, 2), _task(), FAST, seed=1, model=tiny_model_dir)
    here = evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), _task(), FAST, model=tiny_model_dir)
    script = (
        "import json, torch; torch.set_num_threads(1)\n"
        "from hilo_core import MoLoRAConfig\nfrom objectives import Fidelity, evaluate, get_task\n"
        "task = get_task('analogy', n_train=24, n_validation=12, n_test=12)\n"
        f"fidelity = Fidelity(**{FAST.to_dict()!r})\n"
        f"m = evaluate(MoLoRAConfig.uniform({N_LAYERS}, 2, 4), task, fidelity, model={tiny_model_dir!r})\n"
        "print(json.dumps(m.to_dict()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
    fresh = Metrics.from_dict(json.loads(out.stdout.strip().splitlines()[-1]))
    assert _repeatable(fresh) == _repeatable(here)


def test_per_question_records_agree_with_a_float64_rescoring(tiny_model_dir):
    """records: one entry per validation question; hits, gold probabilities, score and loss recomputed from
    the same adapters' choice scores by a float64 softmax loop (adapters kept by scoring inside on_eval)."""
    import math

    from objectives.evaluation import base_model
    from objectives.scoring import choice_scores
    from objectives.sequences import encode

    task = _task()
    seen = {}

    def rescore(step, acc):
        model, tok = base_model(tiny_model_dir)
        enc = encode(tok, task.validation[:FAST.max_eval_examples], max_length=FAST.max_length)
        seen["scores"] = choice_scores(model, enc, pad_id=tok.pad_token_id, device=torch.device("cpu"))
        seen["answers"] = [e.answer for e in enc]

    m = evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), task, replace(FAST, eval_every=FAST.steps),
                 model=tiny_model_dir, on_eval=rescore)
    rec = m.records
    assert len(rec) == 12 and m.test_records is not None and len(m.test_records) == 12
    probs = []
    for s, a in zip(seen["scores"], seen["answers"]):
        z = [math.exp(v - max(s)) for v in s]
        probs.append(z[a] / sum(z))
    assert rec.gold_prob.tolist() == pytest.approx(probs, rel=1e-5)
    assert rec.correct.tolist() == [max(range(len(s)), key=s.__getitem__) == a
                                    for s, a in zip(seen["scores"], seen["answers"])]
    assert m.accuracy == rec.accuracy and m.score == pytest.approx(sum(probs) / 12, rel=1e-5)
    assert m.loss == pytest.approx(-sum(math.log(p) for p in probs) / 12, rel=1e-5)


def test_no_test_question_is_scored_when_the_fidelity_says_zero(tiny_model_dir):
    m = evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 4), _task(), replace(FAST, max_test_examples=0),
                 model=tiny_model_dir)
    assert m.test_accuracy is None and m.test_records is None and m.records is not None
