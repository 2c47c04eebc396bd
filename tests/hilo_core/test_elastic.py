"""Elastic super-adapter: a sub-config == a standalone MoLoRALinear holding the weights sliced here by hand
(outputs, gradients, balance loss, activity; float64, every router kind); model-level set, checks, export, eject."""

import copy

import pytest
import torch
from torch import nn

from hilo_core import (
    ElasticMoLoRALinear, LayerSpec, MoLoRAConfig, MoLoRALinear, RouterSpec, config_trainable, count_active,
    count_trainable, eject, export_subconfig, inject, inject_elastic, injected_config, load_adapters,
    module_shapes, molora_modules, set_subconfig, track_activity,
)
from hilo_core.elastic import elastic_maxima, maxima_config, save_subconfig
from tiny_models import tiny_llama

N_MAX, R_MAX, D_IN, D_OUT = 4, 6, 13, 11
ROUTERS = [RouterSpec(kind="dense"), RouterSpec(kind="topk", top_k=2), RouterSpec(kind="threshold"),
           RouterSpec(kind="topp", top_p=0.6)]
# a full layer and a prefix (sliced views), three gathered sets, one expert of a gated layer
SUB_RANKS = [(6, 6, 6, 6), (6, 2), (3, 6, 1), (1, 4, 6, 2), (2, 5), (4,)]


def _elastic(seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(D_IN, D_OUT, dtype=torch.float64)
    layer = ElasticMoLoRALinear(base, max_spec=LayerSpec(ranks=(R_MAX,) * N_MAX), lora_alpha=16.0)
    with torch.no_grad():  # B = 0 and a zero threshold bias at init would hide slicing bugs
        for p in layer.adapter_params().values():
            p.normal_()
    return layer


def _standalone_from_slices(layer, spec, dropout):
    """The reference: a plain MoLoRALinear whose weights are the super-adapter's blocks, cut here by hand."""
    ref = MoLoRALinear(layer.base_layer, spec=spec, lora_alpha=16.0, lora_dropout=dropout)
    blocks = [slice(i * R_MAX, i * R_MAX + r) for i, r in enumerate(spec.ranks)]
    with torch.no_grad():
        ref.lora_A.copy_(torch.cat([layer.lora_A[b] for b in blocks]))
        ref.lora_B.copy_(torch.cat([layer.lora_B[:, b] for b in blocks], dim=1))
        if spec.n_experts > 1:
            ref.router.gate.weight.copy_(layer.router.gate.weight[:spec.n_experts])
        if spec.n_experts > 1 and spec.router.kind == "threshold":
            ref.router.threshold.weight.copy_(layer.router.threshold.weight)
            ref.router.threshold.bias.copy_(layer.router.threshold.bias)
    return ref, blocks


def _grads(module, x, wrt, seed):
    torch.manual_seed(seed)  # the same dropout mask in both layers
    y = module(x)
    loss = y.square().sum() + 3.0 * module.aux_loss
    return y, module.aux_loss.detach(), torch.autograd.grad(loss, wrt, allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train-dropout"])
@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.kind)
@pytest.mark.parametrize("ranks", SUB_RANKS, ids=str)
def test_subconfig_equals_standalone_with_sliced_weights(ranks, router, training):
    layer = _elastic()
    spec = LayerSpec(ranks=ranks, router=router if len(ranks) > 1 else RouterSpec(kind="dense"))
    dropout = 0.3 if training else 0.0
    layer.set_subconfig(spec, lora_dropout=dropout)
    ref, blocks = _standalone_from_slices(layer, spec, dropout)
    layer.train(training)
    ref.train(training)
    x = torch.randn(3, 7, D_IN, dtype=torch.float64, requires_grad=True)
    super_params = [layer.lora_A, layer.lora_B, layer.router.gate.weight, layer.router.threshold.weight,
                    layer.router.threshold.bias]
    y, aux, (gx, gA, gB, gG, gTw, gTb) = _grads(layer, x, [x, *super_params], seed=7)
    ref_params = [ref.lora_A, ref.lora_B, *ref.router.parameters()]
    y_ref, aux_ref, (gx_ref, gA_ref, gB_ref, *g_router_ref) = _grads(ref, x, [x, *ref_params], seed=7)

    close = {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(y, y_ref, **close)
    torch.testing.assert_close(aux, aux_ref, **close)
    torch.testing.assert_close(gx, gx_ref, **close)
    torch.testing.assert_close(torch.cat([gA[b] for b in blocks]), gA_ref, **close)
    torch.testing.assert_close(torch.cat([gB[:, b] for b in blocks], dim=1), gB_ref, **close)
    used = torch.zeros(N_MAX * R_MAX, dtype=torch.bool)
    for b in blocks:
        used[b] = True
    assert not gA[~used].any() and not gB[:, ~used].any()  # rows outside the sub-config get no gradient
    n = spec.n_experts
    if n > 1:
        torch.testing.assert_close(gG[:n], g_router_ref[0], **close)
    assert not gG[n:].any()
    if n > 1 and spec.router.kind == "threshold":
        torch.testing.assert_close(gTw, g_router_ref[1], **close)
        torch.testing.assert_close(gTb, g_router_ref[2], **close)
    else:
        assert not gTw.any() and not gTb.any()


@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.kind)
def test_subconfig_activity_and_router_count_are_the_standalone_ones(router):
    layer = _elastic()
    spec = LayerSpec(ranks=(3, 6, 1), router=router)
    layer.set_subconfig(spec, lora_dropout=0.0)
    ref, _ = _standalone_from_slices(layer, spec, 0.0)
    x = torch.randn(40, D_IN, dtype=torch.float64)
    for m in (layer, ref):
        m.reset_activity()
        m.track_activity = True
        m(x)
    assert (layer.tokens_seen, layer.active_rank_sum, layer.active_expert_sum) == \
        (ref.tokens_seen, ref.active_rank_sum, ref.active_expert_sum)
    assert layer.router_param_count() == ref.router_param_count()


def test_setting_a_subconfig_copies_no_weight():
    layer = _elastic()
    before = {k: (p, p.data_ptr()) for k, p in layer.adapter_params().items()}
    layer.set_subconfig(LayerSpec(ranks=(6, 6, 2)), lora_dropout=0.0)
    after = layer.adapter_params()
    assert all(after[k] is p and p.data_ptr() == ptr for k, (p, ptr) in before.items())
    A, B = layer.factors()  # a prefix of the blocks is a view of the super-adapter's storage
    assert A.data_ptr() == layer.lora_A.data_ptr() and B.data_ptr() == layer.lora_B.data_ptr()
    assert A.shape == (14, D_IN) and B.shape == (D_OUT, 14)


def test_a_subconfig_outside_the_layer_is_refused():
    layer = _elastic()
    with pytest.raises(ValueError, match=r"^n_experts: got 5, the super-adapter allows 1\.\.4$"):
        layer.set_subconfig(LayerSpec(ranks=(1,) * 5), lora_dropout=0.0)
    with pytest.raises(ValueError, match=r"^ranks\[1\]: got 7, the super-adapter allows 1\.\.6$"):
        layer.set_subconfig(LayerSpec(ranks=(2, 7)), lora_dropout=0.0)


TARGETS = ("q_proj", "v_proj", "down_proj")
ONE = RouterSpec(kind="dense")  # a single expert has no gate: any kind whose top_k fits


def _maxima():
    return maxima_config(4, n_max=(2, 4, 3, 1), r_max=(4, 8, 2, 6), target_modules=TARGETS, lora_dropout=0.1)


def _sub():
    layers = (LayerSpec(ranks=(4,), router=ONE), LayerSpec(ranks=(8, 3, 5), router=RouterSpec(kind="threshold")),
              LayerSpec(ranks=(2, 1), router=RouterSpec(kind="topp", top_p=0.5)), LayerSpec(ranks=(6,), router=ONE))
    return MoLoRAConfig(layers=layers, target_modules=TARGETS, lora_dropout=0.1)


def _trained_elastic():
    model = tiny_llama(dtype=torch.float64)
    torch.manual_seed(3)
    inject_elastic(model, _maxima()).eval()  # new wrappers start in training mode: no dropout here
    with torch.no_grad():
        for _, m in molora_modules(model):
            for p in m.adapter_params().values():
                p.normal_(std=0.05)
    return model


def test_exported_subconfig_loads_into_a_standalone_model_with_the_same_logits(tmp_path):
    model = _trained_elastic()
    ids = torch.randint(0, 128, (2, 9))
    set_subconfig(model, _sub())
    assert injected_config(model) == _sub()
    logits = model(ids).logits
    set_subconfig(model, elastic_maxima(model))
    assert not torch.allclose(model(ids).logits, logits)  # the sub-config is not the whole super-adapter

    config, state = export_subconfig(model, _sub())
    assert config == _sub()
    standalone = inject(tiny_llama(dtype=torch.float64), config).eval()
    result = standalone.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    assert set(state) == {f"{n}.{k}" for n, m in molora_modules(standalone) for k in m.adapter_params()}
    torch.testing.assert_close(standalone(ids).logits, logits, rtol=1e-12, atol=1e-12)

    set_subconfig(model, _sub())
    folder = save_subconfig(model, tmp_path / "sub")  # the active sub-config, in save_adapters' format
    reloaded = load_adapters(tiny_llama(dtype=torch.float64), folder).eval()
    assert injected_config(reloaded) == _sub()
    torch.testing.assert_close(reloaded(ids).logits, logits, rtol=1e-12, atol=1e-12)


def test_counts_of_the_super_adapter_and_of_the_active_subconfig():
    model = _trained_elastic()
    hull = MoLoRAConfig(layers=tuple(LayerSpec(ranks=(r,) * n, router=RouterSpec(kind="threshold"))
                                     for n, r in zip((2, 4, 3, 1), (4, 8, 2, 6))), target_modules=TARGETS)
    shapes = module_shapes(model, TARGETS)
    assert count_trainable(model) == config_trainable(hull, shapes)  # every slot and the threshold heads
    set_subconfig(model, _sub())
    _, state = export_subconfig(model)
    standalone = inject(tiny_llama(dtype=torch.float64), _sub()).eval()
    standalone.load_state_dict(state, strict=False)
    ids = torch.randint(0, 128, (1, 12))
    assert count_active(model, ids) == count_active(standalone, ids)
    assert count_trainable(standalone) == config_trainable(_sub(), shapes)


@pytest.mark.parametrize("change, message", [
    (lambda c: MoLoRAConfig(layers=c.layers[:3], target_modules=TARGETS),
     "n_layers: got 3 layer specs, the super-adapter has 4"),
    (lambda c: MoLoRAConfig(layers=c.layers, target_modules=("q_proj",)), "target_modules: got ['q_proj']"),
    (lambda c: MoLoRAConfig(layers=c.layers, target_modules=TARGETS, lora_alpha=32.0),
     "lora_alpha: got 32.0, the super-adapter was built with 16.0"),
    (lambda c: MoLoRAConfig(layers=(c.layers[0], LayerSpec(ranks=(1,) * 5)) + c.layers[2:], target_modules=TARGETS),
     "layer 1: n_experts: got 5, the super-adapter allows 1..4"),
    (lambda c: MoLoRAConfig(layers=c.layers[:2] + (LayerSpec(ranks=(2, 3)),) + c.layers[3:], target_modules=TARGETS),
     "layer 2: ranks[1]: got 3, the super-adapter allows 1..2"),
])
def test_model_level_misfits_are_one_line_and_change_nothing(change, message):
    model = _trained_elastic()
    set_subconfig(model, _sub())
    with pytest.raises(ValueError) as err:
        set_subconfig(model, change(_sub()))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert injected_config(model) == _sub()
    assert all(m.spec == _sub().layers[int(n.split(".")[2])] for n, m in molora_modules(model))


def test_eject_restores_the_base_model_and_a_standalone_inject_follows():
    model = tiny_llama(dtype=torch.float64)
    snapshot = copy.deepcopy(model.state_dict())
    inject_elastic(model, _maxima())
    with track_activity(model):
        model(torch.randint(0, 128, (1, 5)))
    eject(model)
    assert not list(molora_modules(model)) and not hasattr(model, "hilo_elastic")
    assert model.state_dict().keys() == snapshot.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshot.items())
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="no elastic super-adapter"):
        elastic_maxima(inject(model, _sub()))
