"""Injection across architectures, clear errors, exact accounting, and bit-identical save/load."""

import copy

import pytest
import torch
from torch import nn

from tiny_models import tiny_bert, tiny_gpt2, tiny_llama
from hilo_core import (LayerSpec, MoLoRAConfig, RouterSpec, config_active, config_trainable, count_active,
                       count_trainable, eject, inject, load_adapters, module_shapes, molora_modules,
                       parameter_table, save_adapters)


def _randomise_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _, m in molora_modules(model):
        m.lora_B.data.copy_(torch.randn(m.lora_B.shape, generator=g) * 0.1)


def _hetero(n_layers, targets):
    kinds = [RouterSpec(kind="dense"), RouterSpec(kind="topk", top_k=2), RouterSpec(kind="threshold"),
             RouterSpec(kind="topp", top_p=0.7)]
    ranks = [(2, 8, 4), (1, 16), (4, 4, 2, 2), (3,)]
    return MoLoRAConfig(layers=tuple(LayerSpec(ranks=ranks[i % 4], router=kinds[i % 4]) for i in range(n_layers)),
                        target_modules=targets, lora_dropout=0.0)


@pytest.mark.parametrize("build, targets, inputs", [
    (tiny_llama, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), "ids"),
    (tiny_gpt2, ("c_attn", "c_proj", "c_fc"), "ids"),
    (tiny_bert, ("query", "key", "value", "dense"), "ids"),
], ids=["llama", "gpt2", "bert"])
def test_inject_forward_backward_eject(build, targets, inputs):
    model = build()
    ids = torch.randint(0, 128, (2, 10))
    out = lambda: model(ids)[0]  # noqa: E731 - logits or last hidden state
    before = out()
    n_layers = len(__import__("hilo_core").find_decoder_layers(model)[1])
    inject(model, _hetero(n_layers, targets))
    torch.testing.assert_close(out(), before)  # B = 0: the adapter starts as the identity
    _randomise_adapters(model)
    adapted = out()
    assert not torch.allclose(adapted, before, atol=1e-5)
    adapted.square().mean().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or ".router." in n for n in trainable)
    assert all(p.grad is not None for n, p in model.named_parameters() if ".lora_B" in n)
    assert count_trainable(model) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    eject(model)
    assert not list(molora_modules(model))
    torch.testing.assert_close(out(), before)
    assert all(p.requires_grad for p in model.parameters())  # flags restored as they were


def test_errors_name_the_problem(llama):
    with pytest.raises(ValueError, match="3 layer specs but model.layers has 4 layers"):
        inject(llama, MoLoRAConfig.uniform(3, 2, 4))
    with pytest.raises(ValueError, match=r"target_modules \['qproj'\] match no module.*q_proj"):
        inject(llama, MoLoRAConfig.uniform(4, 2, 4, target_modules=("qproj", "v_proj")))
    with pytest.raises(ValueError, match="self_attn.*not a linear"):
        inject(llama, MoLoRAConfig.uniform(4, 2, 4, target_modules=("self_attn",)))
    assert not list(molora_modules(llama))  # nothing half-injected after an error
    inject(llama, MoLoRAConfig.uniform(4, 2, 4))
    with pytest.raises(ValueError, match="already has MoLoRA adapters"):
        inject(llama, MoLoRAConfig.uniform(4, 2, 4))


def test_trainable_matches_shapes_and_config(llama):
    config = _hetero(4, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
    shapes = module_shapes(llama, config.target_modules)
    inject(llama, config)
    by_hand = 0
    for spec in config.layers:
        for d_in, d_out in shapes.values():
            gate = 0 if spec.n_experts == 1 else spec.n_experts * d_in
            gate += d_in + 1 if spec.router.kind == "threshold" and spec.n_experts > 1 else 0
            by_hand += spec.total_rank * (d_in + d_out) + gate
    assert count_trainable(llama) == by_hand == config_trainable(config, shapes)
    assert sum(r.trainable for r in parameter_table(llama)) == by_hand


def test_active_topk_by_hand(llama):
    config = MoLoRAConfig.from_experts([2, 4, 6, 8], 8, router=RouterSpec(kind="topk", top_k=2), lora_dropout=0.0)
    shapes = module_shapes(llama, config.target_modules)
    inject(llama, config)
    expected = sum(2 * 8 * (d_in + d_out) + n * d_in for n in (2, 4, 6, 8) for d_in, d_out in shapes.values())
    assert count_active(llama, torch.randint(0, 128, (3, 12))) == pytest.approx(expected, rel=1e-12)
    assert config_active(config, shapes) == pytest.approx(expected, rel=1e-12)


def test_active_threshold_and_topp_between_min_and_all(llama):
    config = MoLoRAConfig(layers=(LayerSpec(ranks=(2, 4, 8, 16), router=RouterSpec(kind="threshold")),) * 2
                          + (LayerSpec(ranks=(2, 4, 8, 16), router=RouterSpec(kind="topp", top_p=0.5)),) * 2,
                          lora_dropout=0.0)
    shapes = module_shapes(llama, config.target_modules)
    inject(llama, config)
    for _, m in molora_modules(llama):
        nn.init.normal_(m.router.gate.weight, std=2.0)
    active = count_active(llama, torch.randint(0, 128, (4, 16)))
    io = sum(d_in + d_out for d_in, d_out in shapes.values())
    gates = sum(4 * d_in for d_in, _ in shapes.values())
    lower = 4 * (1 * 2 * io) + 4 * gates  # never less than the smallest expert in every module
    upper = 4 * (30 * io) + 4 * gates + 2 * sum(d_in + 1 for d_in, _ in shapes.values())
    assert lower < active < upper
    assert config_active(config, shapes) is None  # data-dependent: must be measured


def test_save_load_bit_identical(llama, tmp_path):
    config = _hetero(4, ("q_proj", "v_proj", "down_proj"))
    fresh = copy.deepcopy(llama)
    inject(llama, config)
    _randomise_adapters(llama, seed=3)
    for _, m in molora_modules(llama):
        for p in m.router.parameters():
            p.data.normal_()
    ids = torch.randint(0, 128, (2, 11))
    expected = llama(ids).logits
    save_adapters(llama, tmp_path / "ad")
    load_adapters(fresh, tmp_path / "ad")
    assert torch.equal(fresh(ids).logits, expected)
    with pytest.raises(FileNotFoundError, match="lacks"):
        load_adapters(copy.deepcopy(llama), tmp_path / "missing")


@pytest.mark.slow
def test_embedded_smollm2_heterogeneous_forward_backward():
    from hilo_core.models import load_model

    model, tokenizer = load_model("default")
    ranks = [(2,) * 2, (4,) * 4, (2, 4, 6, 8), (8,) * 8]
    kinds = ["topk", "topk", "threshold", "topp"]
    layers = tuple(LayerSpec(ranks=ranks[i * 4 // 30], router=RouterSpec(kind=kinds[i * 4 // 30])) for i in range(30))
    inject(model, MoLoRAConfig(layers=layers))
    assert len(list(molora_modules(model))) == 210
    _randomise_adapters(model)
    batch = tokenizer(["The capital of France is Paris."], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert all(m.lora_A.grad is not None and torch.isfinite(m.lora_A.grad).all() for _, m in molora_modules(model))
    assert count_trainable(model) == sum(p.numel() for p in model.parameters() if p.requires_grad)


ROUTERS = [RouterSpec(kind="dense"), RouterSpec(kind="topk", top_k=2), RouterSpec(kind="threshold"),
           RouterSpec(kind="topp", top_p=0.7)]


@pytest.mark.parametrize("router", ROUTERS, ids=[r.kind for r in ROUTERS])
@pytest.mark.parametrize("build, targets", [
    (tiny_llama, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    (tiny_gpt2, ("c_attn", "c_proj", "c_fc")),  # attn.c_proj (48 -> 48) and mlp.c_proj (192 -> 48)
    (tiny_bert, ("query", "key", "value", "dense")),  # three `dense` of three shapes per block
], ids=["llama", "gpt2", "bert"])
def test_config_trainable_equals_the_injected_count(build, targets, router):
    """Counting from shapes must give what inject builds, also where two modules of a block share a name."""
    model = build()
    n_layers = len(__import__("hilo_core").find_decoder_layers(model)[1])
    ranks = [(2, 8, 4), (1, 16), (4, 4, 2, 2), (3, 5)]
    config = MoLoRAConfig(layers=tuple(LayerSpec(ranks=ranks[i % 4], router=router) for i in range(n_layers)),
                          target_modules=targets)
    shapes = module_shapes(model, targets)
    inject(model, config)
    assert config_trainable(config, shapes) == count_trainable(model)
    assert module_shapes(model, targets) == shapes  # read through the wrappers alike
    if router.kind in ("dense", "topk"):
        ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(0))
        if router.kind == "dense" or all(len(set(s.ranks)) == 1 for s in config.layers):
            assert config_active(config, shapes) == pytest.approx(count_active(model, ids), rel=1e-9)


def test_module_shapes_name_the_missing_or_non_linear_target():
    with pytest.raises(ValueError, match=r"target_modules \['nope'\] match no linear"):
        module_shapes(tiny_gpt2(), ("c_attn", "nope"))
    with pytest.raises(ValueError, match="attn is a GPT2Attention, not a linear layer"):
        module_shapes(tiny_gpt2(), ("attn",))
    with pytest.raises(ValueError, match=r"shapes hold no module named \['c_fc'\]"):
        config_trainable(MoLoRAConfig.uniform(3, 2, 4, target_modules=("c_fc",)), {"attn.c_proj": (48, 48)})
