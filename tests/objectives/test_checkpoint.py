"""A paused run continued from its checkpoint equals the same run uninterrupted, bit for bit (CPU, float32)."""

from dataclasses import replace

import pytest
import torch

from hilo_core import MoLoRAConfig, RouterSpec
from objectives import Fidelity, evaluate, get_task
from objectives.checkpoint import load_checkpoint

N_LAYERS = 2  # the tiny model of conftest.py
FIDELITY = Fidelity(steps=6, batch_size=4, max_eval_examples=12, max_test_examples=0, max_length=64)


def _task():
    return get_task("analogy", n_train=24, n_validation=12, n_test=4)


@pytest.mark.parametrize("router", [RouterSpec(kind="topk", top_k=2), RouterSpec(kind="threshold")])
def test_pause_and_continue_equals_uninterrupted(tiny_model_dir, tmp_path, router):
    config = MoLoRAConfig.uniform(N_LAYERS, 3, 4, router=router, lora_dropout=0.2)  # dropout: the RNG matters
    whole = evaluate(config, _task(), FIDELITY, seed=5, model=tiny_model_dir, save_to=tmp_path / "whole.pt")
    evaluate(config, _task(), replace(FIDELITY, steps=2), seed=5, model=tiny_model_dir, save_to=tmp_path / "a.pt")
    # another run in between moves the global RNG and the cached model's state, as another trial would
    evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 2), _task(), replace(FIDELITY, steps=1), seed=9, model=tiny_model_dir)
    evaluate(config, _task(), replace(FIDELITY, steps=4), seed=5, model=tiny_model_dir,
             resume_from=tmp_path / "a.pt", save_to=tmp_path / "b.pt")
    resumed = evaluate(config, _task(), FIDELITY, seed=5, model=tiny_model_dir, resume_from=tmp_path / "b.pt",
                       save_to=tmp_path / "c.pt")
    w_whole, s_whole = load_checkpoint(tmp_path / "whole.pt", config_json=config.to_json(), seed=5)
    w_res, s_res = load_checkpoint(tmp_path / "c.pt", config_json=config.to_json(), seed=5)
    assert w_whole.keys() == w_res.keys()
    assert all(torch.equal(w_whole[k], w_res[k]) for k in w_whole)
    assert torch.equal(s_whole.rng, s_res.rng) and s_whole.tokens == s_res.tokens
    assert s_whole.recent == s_res.recent and whole.final_loss == resumed.final_loss
    assert whole.records.correct.tolist() == resumed.records.correct.tolist()
    assert whole.records.gold_prob.tolist() == resumed.records.gold_prob.tolist()
    assert resumed.steps == 6 and resumed.train_seconds < whole.train_seconds * 3  # only its own segment


def test_a_restart_from_scratch_differs(tiny_model_dir, tmp_path):
    """The equality above is not vacuous: two fresh 2+4 segments (no resume) end elsewhere."""
    config = MoLoRAConfig.uniform(N_LAYERS, 3, 4, lora_dropout=0.2)
    evaluate(config, _task(), FIDELITY, seed=5, model=tiny_model_dir, save_to=tmp_path / "whole.pt")
    evaluate(config, _task(), replace(FIDELITY, steps=6), seed=6, model=tiny_model_dir, save_to=tmp_path / "x.pt")
    a, _ = load_checkpoint(tmp_path / "whole.pt", config_json=config.to_json(), seed=5)
    b, _ = load_checkpoint(tmp_path / "x.pt", config_json=config.to_json(), seed=6)
    assert not all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_refuses_another_config_or_seed(tiny_model_dir, tmp_path):
    config = MoLoRAConfig.uniform(N_LAYERS, 2, 4)
    evaluate(config, _task(), replace(FIDELITY, steps=1), seed=1, model=tiny_model_dir, save_to=tmp_path / "a.pt")
    with pytest.raises(ValueError, match="another run"):
        evaluate(config, _task(), FIDELITY, seed=2, model=tiny_model_dir, resume_from=tmp_path / "a.pt")
    with pytest.raises(ValueError, match="another run"):
        evaluate(MoLoRAConfig.uniform(N_LAYERS, 2, 8), _task(), FIDELITY, seed=1, model=tiny_model_dir,
                 resume_from=tmp_path / "a.pt")
    evaluate(config, _task(), replace(FIDELITY, steps=2), seed=1, model=tiny_model_dir, save_to=tmp_path / "b.pt")
    with pytest.raises(ValueError, match="fewer steps"):
        evaluate(config, _task(), replace(FIDELITY, steps=1), seed=1, model=tiny_model_dir,
                 resume_from=tmp_path / "b.pt")
