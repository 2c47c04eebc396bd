"""MoLoRALinear: stacked path == per-expert loop (float64), gradients (router's too), dropout folding,
cached scales, PEFT equivalence, routers."""

import copy

import pytest
import torch
from torch import nn

from hilo_core import LayerSpec, MoLoRAConfig, MoLoRALinear, RouterSpec, inject, molora_modules
from hilo_core.kernels.reference import loop_delta, scale_matrix, stacked_delta
from hilo_core.layers import dropout_mask
from hilo_core.routers import ThresholdRouter, TopKRouter, TopPRouter

ROUTERS = [RouterSpec(kind="dense"), RouterSpec(kind="topk", top_k=2), RouterSpec(kind="threshold"),
           RouterSpec(kind="topp", top_p=0.6)]


def _layer(ranks, router, *, d_in=37, d_out=23, seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(d_in, d_out, dtype=torch.float64)
    layer = MoLoRALinear(base, spec=LayerSpec(ranks=ranks, router=router), lora_alpha=16.0)
    nn.init.normal_(layer.lora_B)  # B = 0 at init would hide every adapter bug
    return layer


@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.kind)
@pytest.mark.parametrize("ranks", [(2, 8, 4, 16, 1), (3, 1), (5, 5, 1)])
def test_stacked_equals_loop_float64(router, ranks):
    layer = _layer(ranks, router)
    x = torch.randn(3, 11, 37, dtype=torch.float64, requires_grad=True)
    wrt = [x, layer.lora_A, layer.lora_B, *layer.router.parameters()]  # the router's gradient flows through w
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum() + layer.aux_loss, wrt)
    layer.use_loop = True
    y_ref = layer(x)
    grads_ref = torch.autograd.grad(y_ref.square().sum() + layer.aux_loss, wrt)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.kind)
def test_training_dropout_is_the_loop_on_masked_inputs_with_alpha_over_keep(router):
    """Dropout folded: the layer in training == the loop on ``x * kept`` with ``alpha / keep``, gradients too."""
    layer = _layer((2, 8, 4), router)
    layer.lora_dropout = 0.3
    layer.train()
    x = torch.randn(4, 9, 37, dtype=torch.float64, requires_grad=True)
    wrt = [x, layer.lora_A, layer.lora_B, *layer.router.parameters()]
    torch.manual_seed(11)
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum(), wrt)
    torch.manual_seed(11)
    kept, keep = dropout_mask(torch.Size((36, 37)), 0.3, x.device)
    tokens = x.reshape(-1, 37)
    delta = loop_delta(tokens * kept, layer.lora_A, layer.lora_B, layer.router(tokens).weights, layer.ranks,
                       16.0 / keep)
    y_ref = layer.base_layer(x) + delta.reshape(4, 9, 23)
    grads_ref = torch.autograd.grad(y_ref.square().sum(), wrt)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)
    assert not bool(kept.all()) and bool(kept.any())


def test_dropout_mask_rate_and_unbiased_scale():
    torch.manual_seed(0)
    for p in (0.05, 0.3):
        kept, keep = dropout_mask(torch.Size((300, 701)), p, torch.device("cpu"))
        assert keep == pytest.approx(1 - p, abs=1 / 65536)
        n = kept.numel()
        sd = (n * p * (1 - p)) ** 0.5
        assert abs(int((~kept).sum()) - n * p) < 5 * sd  # binomial count within 5 sd
        assert abs(float((kept / keep).mean()) - 1.0) < 5 * sd / n / keep  # E[kept / keep] = 1


def test_no_dropout_draws_when_p_is_zero_or_in_eval():
    """Dropout is skipped, not applied with p = 0: the global generator is not touched."""
    for p, training in ((0.0, True), (0.2, False)):
        layer = _layer((4, 4), RouterSpec(kind="topk", top_k=1))
        layer.lora_dropout = p
        layer.train(training)
        x = torch.randn(5, 37, dtype=torch.float64)
        state = torch.get_rng_state()
        layer(x)
        assert torch.equal(torch.get_rng_state(), state)


def test_scale_matrix_is_the_per_column_scale_and_cached():
    ranks = (2, 3, 1)
    w = torch.rand(7, 3, dtype=torch.float64)
    want = torch.stack([w[:, i] * 8.0 / r for i, r in enumerate(ranks) for _ in range(r)], dim=1)
    torch.testing.assert_close(w @ scale_matrix(ranks, 8.0, w.device, w.dtype), want, rtol=1e-15, atol=0)
    layer = _layer((5, 3), RouterSpec(kind="dense"))
    x = torch.randn(6, 37, dtype=torch.float64)
    layer(x)
    misses = scale_matrix.cache_info().misses
    layer(x)
    layer(x)
    assert scale_matrix.cache_info().misses == misses  # nothing rebuilt per call


@pytest.mark.parametrize("base_dtype", [torch.float64, torch.float32])
def test_base_added_in_the_gemm_equals_base_plus_delta(base_dtype):
    torch.manual_seed(2)
    ranks = (3, 5)
    x, A = torch.randn(9, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    B, w = torch.randn(4, 8, dtype=torch.float64), torch.rand(9, 2, dtype=torch.float64)
    base = torch.randn(9, 4, dtype=base_dtype)
    for fn in (stacked_delta, loop_delta):
        got = fn(x, A, B, w, ranks, 8.0, base=base)
        assert got.dtype == base_dtype
        torch.testing.assert_close(got, base + fn(x, A, B, w, ranks, 8.0).to(base_dtype))


def test_single_expert_has_no_gate_and_full_weight():
    layer = _layer((6,), RouterSpec(kind="topk", top_k=1))
    assert layer.router_param_count() == 0
    x = torch.randn(5, 37, dtype=torch.float64)
    expected = layer.base_layer(x) + (16.0 / 6) * x @ layer.lora_A.t() @ layer.lora_B.t()
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_stacked_delta_gradcheck():
    torch.manual_seed(1)
    ranks = (2, 3, 1)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    A = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    B = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    w = torch.rand(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: stacked_delta(*t, ranks, 8.0), (x, A, B, w))
    assert torch.autograd.gradcheck(lambda *t: loop_delta(*t, ranks, 8.0), (x, A, B, w))


def test_layer_gradcheck_through_dense_router():
    layer = _layer((2, 3), RouterSpec(kind="dense"), d_in=5, d_out=4)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    params = [layer.lora_A, layer.lora_B, layer.router.gate.weight]

    def f(x, *ps):
        with torch.no_grad():
            for p, new in zip(params, ps):
                p.copy_(new)
        return torch.func.functional_call(layer, {"lora_A": ps[0], "lora_B": ps[1], "router.gate.weight": ps[2]}, (x,))

    inputs = (x,) + tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(f, inputs)


@torch.no_grad()
def _route_loop(router, x):
    """Independent per-token reading of the router rules in docs/architecture.md ("Routers")."""
    p = torch.softmax(router.gate(x), dim=-1)
    out = torch.zeros_like(p)
    for t in range(x.shape[0]):
        pt = p[t]
        if isinstance(router, TopKRouter):
            keep = sorted(range(len(pt)), key=lambda i: -float(pt[i]))[: router.top_k]
            for i in keep:
                out[t, i] = pt[i] / sum(pt[j] for j in keep)
        elif isinstance(router, ThresholdRouter):
            tau = router.tau_max * torch.sigmoid(router.threshold(x[t]))[0]
            gaps = [max(float(pt[i] - tau), 0.0) for i in range(len(pt))]
            for i, g in enumerate(gaps):
                out[t, i] = g / sum(gaps)
        elif isinstance(router, TopPRouter):
            mass, keep = 0.0, []
            for i in sorted(range(len(pt)), key=lambda i: -float(pt[i])):
                if mass >= router.top_p:
                    break
                keep.append(i)
                mass += float(pt[i])
            for i in keep:
                out[t, i] = pt[i] / sum(pt[j] for j in keep)
        else:
            out[t] = pt
    return out


@pytest.mark.parametrize("router", ROUTERS, ids=lambda r: r.kind)
def test_router_rules_match_per_token_loop(router):
    layer = _layer((4, 4, 4, 4, 4), router, d_in=16, d_out=8, seed=3)
    nn.init.normal_(layer.router.gate.weight, std=1.0)
    x = torch.randn(40, 16, dtype=torch.float64)
    with torch.no_grad():
        routed = layer.router(x)
    torch.testing.assert_close(routed.weights, _route_loop(layer.router, x), rtol=1e-12, atol=1e-12)
    assert torch.equal(routed.active, routed.weights > 0)
    torch.testing.assert_close(routed.weights.sum(-1), torch.ones(40, dtype=torch.float64))


def test_threshold_activity_between_one_and_n():
    layer = _layer((2,) * 6, RouterSpec(kind="threshold"), d_in=16, d_out=8, seed=4)
    nn.init.normal_(layer.router.gate.weight, std=0.5)
    active = layer.router(torch.randn(500, 16, dtype=torch.float64)).active.sum(-1)
    assert active.min() >= 1 and active.max() <= 6
    assert active.float().std() > 0  # the number of experts really varies per token


def test_balance_loss_formula():
    layer = _layer((2, 2, 2, 2), RouterSpec(kind="topk", top_k=1), d_in=8, d_out=4, seed=5)
    x = torch.randn(64, 8, dtype=torch.float64)
    routed = layer.router(x)
    p = torch.softmax(layer.router.gate(x), -1)
    f = torch.stack([(p.argmax(-1) == i).double().mean() for i in range(4)])
    torch.testing.assert_close(routed.aux_loss, 4 * (f * p.mean(0)).sum())


def test_disabled_layer_is_base_exactly():
    layer = _layer((4, 4), RouterSpec(kind="dense"))
    layer.disabled = True
    x = torch.randn(7, 37, dtype=torch.float64)
    assert torch.equal(layer(x), layer.base_layer(x))


def test_base_weight_never_modified():
    base = nn.Linear(8, 8)
    before = base.weight.detach().clone()
    layer = MoLoRALinear(base, spec=LayerSpec(ranks=(2, 4)), lora_alpha=8)
    nn.init.normal_(layer.lora_B)
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.base_layer is base and torch.equal(base.weight, before)


def test_single_expert_dense_equals_peft_lora(llama):
    from peft import LoraConfig, get_peft_model

    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    peft_model = get_peft_model(copy.deepcopy(llama), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                                 target_modules=list(targets)))
    ours = inject(copy.deepcopy(llama), MoLoRAConfig.uniform(4, 1, 4, router=RouterSpec(kind="dense"),
                                                            target_modules=targets, lora_alpha=8, lora_dropout=0.0))
    torch.manual_seed(7)
    peft_layers = {n: m for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A}
    matched = 0
    for name, m in molora_modules(ours):
        p = peft_layers["base_model.model." + name]
        nn.init.normal_(p.lora_B["default"].weight, std=0.1)
        m.lora_A.data.copy_(p.lora_A["default"].weight)
        m.lora_B.data.copy_(p.lora_B["default"].weight)
        matched += 1
    assert matched == 4 * len(targets)
    ids = torch.randint(0, 128, (2, 9))
    expected = peft_model(ids).logits
    assert not torch.allclose(expected, llama(ids).logits, atol=1e-4)  # the adapter really acts
    torch.testing.assert_close(ours(ids).logits, expected, rtol=1e-5, atol=1e-5)
