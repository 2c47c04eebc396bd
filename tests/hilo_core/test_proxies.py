"""Proxies: Hill/KS power-law fits, ESDs, per-layer alphas, AlphaLoRA allocation, small values, cache, CLI."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from hilo_core import MoLoRAConfig, inject, molora_modules
from hilo_core.proxies import (
    alphalora_allocation, esd, esd_many, hill_alpha, layer_alphas, power_law_fit, small_value_proportion,
)


def tiny_llama(seed: int = 0, layers: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=100)
    return LlamaForCausalLM(config).eval()


def pareto(alpha: float, n: int, seed: int, scale: float = 0.37) -> np.ndarray:
    """Samples with density ~ x^-alpha on [scale, inf) (numpy's Lomax shifted: tail index alpha - 1)."""
    return (np.random.default_rng(seed).pareto(alpha - 1.0, n) + 1.0) * scale


def heavy_tailed_matrix(seed: int = 0, d_out: int = 96, d_in: int = 160) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    left = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    spectrum = torch.arange(1, d_in + 1, dtype=torch.float64) ** -0.6
    return left @ torch.diag(spectrum) @ torch.randn(d_in, d_in, generator=g, dtype=torch.float64)


def loop_fit(x: np.ndarray) -> tuple[float, float]:
    """weightwatcher's per-candidate loop (WW_powerlaw.fit_power_law_standard): the reference for "all"."""
    x = np.sort(x)
    logs, best = np.log(x), (math.inf, 0.0, 0.0)
    for i in range(len(x) - 1):
        n = len(x) - i
        alpha = 1 + n / (logs[i:].sum() - n * logs[i])
        d = np.max(np.abs(1 - (x[i:] / x[i]) ** (1 - alpha) - np.arange(n) / n))
        best = min(best, (d, alpha, x[i]))
    return best[1], best[2]


# --- hill_alpha -------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.0, 6.0])
def test_hill_recovers_power_law_exponent(alpha):
    samples = pareto(alpha, 4000, seed=int(alpha))
    assert hill_alpha(samples) == pytest.approx(alpha, rel=0.05)


@pytest.mark.parametrize("alpha", [2.0, 4.0])
def test_hill_all_candidates_recovers_exponent_and_matches_loop(alpha):
    samples = pareto(alpha, 2000, seed=10 + int(alpha))
    fit = power_law_fit(samples, xmin_search="all")
    assert fit.alpha == pytest.approx(alpha, rel=0.05)
    ref_alpha, ref_xmin = loop_fit(samples)
    assert fit.alpha == pytest.approx(ref_alpha, rel=1e-9)
    assert fit.xmin == pytest.approx(ref_xmin, rel=1e-12)


def test_hill_is_invariant_to_scaling_the_matrix():
    """The stated peak window is scale-free (the released fix_finger's log lower bound is not)."""
    w = heavy_tailed_matrix()
    ref = power_law_fit(esd(w, dtype=torch.float64), xmin_search="peak")
    assert 3 <= ref.n_tail < w.shape[0]  # a real tail, not the whole spectrum or two points
    for scale in (1e-3, 7.0, 1e3):
        fit = power_law_fit(esd(scale * w, dtype=torch.float64), xmin_search="peak")
        assert fit.alpha == pytest.approx(ref.alpha, rel=1e-6), scale
        assert fit.n_tail == ref.n_tail
        assert fit.xmin == pytest.approx(ref.xmin * scale**2, rel=1e-6)


def test_hill_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="xmin_search must be one of"):
        hill_alpha([1.0, 2.0, 3.0], xmin_search="middle")
    with pytest.raises(ValueError, match="finite and non-negative"):
        hill_alpha([1.0, float("nan"), 3.0])
    with pytest.raises(ValueError, match="1-D"):
        hill_alpha(np.ones((3, 3)))
    with pytest.raises(ValueError, match="at least 3 positive eigenvalues"):
        hill_alpha([0.0, 0.0, 1.0])


# --- esd --------------------------------------------------------------------------------------------

def test_esd_equals_eigenvalues_of_gram_matrix_and_batches():
    w = heavy_tailed_matrix(seed=1, d_out=40, d_in=70)
    ref = torch.linalg.eigvalsh(w @ w.T)  # the min(d_out, d_in) nonzero eigenvalues of W^T W
    torch.testing.assert_close(esd(w, dtype=torch.float64), ref, rtol=1e-9, atol=1e-9 * ref.max().item())
    torch.testing.assert_close(esd(w.T.contiguous(), dtype=torch.float64), ref, rtol=1e-9,
                               atol=1e-9 * ref.max().item())
    weights = [heavy_tailed_matrix(seed=s, d_out=40, d_in=70).float() for s in range(3)] + [w.T.float()]
    for got, weight in zip(esd_many(weights), weights):
        torch.testing.assert_close(got, esd(weight), rtol=1e-4, atol=1e-4 * got.max().item())
    assert esd(w).dtype == torch.float32


def test_esd_rejects_nan_and_bad_shapes():
    w = torch.randn(8, 8)
    w[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        esd(w)
    with pytest.raises(ValueError, match="layer.weight: weight contains NaN"):
        esd_many([w], names=["layer.weight"])
    with pytest.raises(ValueError, match="2-D"):
        esd(torch.randn(8))
    with pytest.raises(ValueError, match="dtype must be one of"):
        esd(torch.randn(8, 8), dtype=torch.float16)


# --- layer_alphas -----------------------------------------------------------------------------------

def test_layer_alphas_on_tiny_llama_are_module_means_and_survive_injection():
    model = tiny_llama()
    result = layer_alphas(model, cache=False)
    assert len(result) == 4 and list(result) == list(result.layers)
    for i, modules in enumerate(result.modules):
        assert len(modules) == 7 and all(f"model.layers.{i}." in name for name in modules)
        assert result[i] == pytest.approx(sum(modules.values()) / 7)
    q = model.model.layers[2].self_attn.q_proj.weight
    assert result.modules[2]["model.layers.2.self_attn.q_proj"] == pytest.approx(hill_alpha(esd(q)), rel=1e-12)
    inject(model, MoLoRAConfig.uniform(4, 2, 4))
    assert layer_alphas(model, cache=False) == result


def test_layer_alphas_subset_of_targets():
    result = layer_alphas(tiny_llama(), ("q_proj", "down_proj"), cache=False)
    assert [sorted(n.rsplit(".", 1)[1] for n in m) for m in result.modules] == [["down_proj", "q_proj"]] * 4


def test_layer_alphas_bad_model_errors_name_the_field():
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"target_modules \['c_attn'\] match no linear.*q_proj"):
        layer_alphas(model, ("c_attn",), cache=False)
    with pytest.raises(ValueError, match="non-empty sequence"):
        layer_alphas(model, (), cache=False)
    with pytest.raises(ValueError, match="not a linear layer"):
        layer_alphas(model, ("self_attn",), cache=False)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.up_proj: weight contains NaN"):
        layer_alphas(model, cache=False)


def test_layer_alphas_cache_hits_and_misses(tmp_path, monkeypatch):
    monkeypatch.setenv("HILO_CACHE", str(tmp_path))
    model = tiny_llama()
    first = layer_alphas(model)
    assert len(list((tmp_path / "proxies").glob("*.json"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite a cached result")

    monkeypatch.setattr("hilo_core.proxies.alphas.esd_many", fail)
    assert layer_alphas(model) == first  # served from disk
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    with pytest.raises(AssertionError, match="recomputed"):
        layer_alphas(model)  # new weights: a new key
    with pytest.raises(AssertionError, match="recomputed"):
        layer_alphas(tiny_llama(), xmin_search="all")  # new arguments: a new key


def test_layer_alphas_cache_entry_from_other_code_is_recomputed(tmp_path, monkeypatch):
    """A stored result in another layout (older code sharing the cache folder) is replaced, not a crash."""
    import json
    monkeypatch.setenv("HILO_CACHE", str(tmp_path))
    model = tiny_llama()
    first = layer_alphas(model)
    (path,) = (tmp_path / "proxies").glob("*.json")
    stored = json.loads(path.read_text())
    stored["result"]["modules"] = {"x": 1.0}  # a flat mapping where a list of per-layer mappings belongs
    path.write_text(json.dumps(stored))
    assert layer_alphas(model) == first
    assert json.loads(path.read_text())["result"] == first.to_json()


# --- alphalora_allocation ---------------------------------------------------------------------------

@pytest.mark.parametrize("alphas, total, beta, expected", [
    ((1.0, 1.0, 1.0, 1.0), 8, 2.5, (2, 2, 2, 2)),
    ((2.0, 4.0), 6, 1.0, (2, 4)),  # targets 2, 4 exactly
    ((1.0, 2.0), 10, 2.5, (2, 8)),  # weights 1, 5.657: targets 1.50, 8.50 round to 2, 8
    ((1.0, 1.0, 2.0), 5, 1.0, (1, 1, 3)),  # targets 1.25, 1.25, 2.5 -> 1, 1, 2; +1 to the largest shortfall
    ((1.0, 10.0), 3, 2.5, (1, 2)),  # targets 0.01, 2.99 -> floor of 1 expert, then -1 from the surplus
])
def test_nearest_allocation_hand_worked_examples(alphas, total, beta, expected):
    assert alphalora_allocation(alphas, total, beta=beta, rounding="nearest") == expected


@settings(max_examples=100, deadline=None)
@given(alphas=st.lists(st.floats(1.2, 12.0), min_size=1, max_size=40),
       extra=st.integers(0, 300), beta=st.floats(0.5, 4.0))
def test_nearest_allocation_sums_to_total_and_is_monotone_in_alpha(alphas, extra, beta):
    total = len(alphas) + extra
    experts = alphalora_allocation(alphas, total, beta=beta, rounding="nearest")
    assert sum(experts) == total and min(experts) >= 1
    for a_i, n_i in zip(alphas, experts):
        for a_j, n_j in zip(alphas, experts):
            if a_i < a_j:
                assert n_i <= n_j


def test_allocation_bad_input_names_the_field():
    with pytest.raises(ValueError, match=r"total_experts must be an integer >= number of layers 4, got 3"):
        alphalora_allocation([2.0, 3.0, 4.0, 5.0], 3)
    with pytest.raises(ValueError, match="alphas must be positive finite"):
        alphalora_allocation([2.0, float("nan")], 8)
    with pytest.raises(ValueError, match="non-empty"):
        alphalora_allocation([], 8)
    with pytest.raises(ValueError, match="beta must be a finite number"):
        alphalora_allocation([2.0, 3.0], 8, beta=float("inf"))
    with pytest.raises(ValueError, match=r"rounding must be one of \('released', 'nearest'\)"):
        alphalora_allocation([2.0, 3.0], 8, rounding="floor")


# --- small_value_proportion -------------------------------------------------------------------------

def injected_tiny(seed: int = 0) -> LlamaForCausalLM:
    model = inject(tiny_llama(seed), MoLoRAConfig.uniform(4, 2, 4))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in molora_modules(model):
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=g) * 3e-3)
    return model.eval()  # the wrappers inject adds start in training mode: adapter dropout on


def reference_proportions(model, input_ids, threshold) -> list[float]:
    """Deltas recomputed from each MoLoRA layer's captured input: ``module(x) - module.base_layer(x)``."""
    captured = []
    handles = [m.register_forward_hook(lambda mod, args, out, name=name: captured.append((name, mod, args[0])))
               for name, m in molora_modules(model)]
    with torch.no_grad():
        model(input_ids=input_ids)
        for h in handles:
            h.remove()
        small, total = [0] * 4, [0] * 4
        for name, module, x in captured:
            layer = int(name.split(".")[2])
            delta = module(x).double() - module.base_layer(x).double()
            small[layer] += int((delta.abs() < threshold).sum())
            total[layer] += delta.numel()
    return [s / t for s, t in zip(small, total)]


def test_small_value_proportion_matches_recomputed_deltas():
    model = injected_tiny()
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(1))
    got = small_value_proportion(model, ids, threshold=1e-3)
    ref = reference_proportions(model, ids, 1e-3)
    assert got == pytest.approx(ref, abs=1e-3)
    assert 0.05 < min(got) and max(got) < 0.95  # the threshold cuts through the values: a real test


def test_small_value_proportion_fresh_adapters_disabled_layers_and_padding():
    model = inject(tiny_llama(), MoLoRAConfig.uniform(4, 2, 4))
    ids = torch.randint(0, 100, (2, 10), generator=torch.Generator().manual_seed(2))
    assert small_value_proportion(model, ids) == (1.0, 1.0, 1.0, 1.0)  # B = 0 at init: the adapter adds 0
    model = injected_tiny()
    for name, module in molora_modules(model):
        module.disabled = name.startswith("model.layers.3.")
    got = small_value_proportion(model, ids)
    assert got[3] == 1.0 and max(got[:3]) < 1.0
    # right padding masked out counts exactly the unpadded positions (the model is causal)
    padded = torch.cat([ids, torch.zeros(2, 5, dtype=ids.dtype)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros(2, 5, dtype=ids.dtype)], dim=1)
    assert small_value_proportion(model, {"input_ids": padded, "attention_mask": mask}) == pytest.approx(got)
    model.train()
    small_value_proportion(model, ids)
    assert model.training  # restored after the eval-mode pass


def test_small_value_proportion_bad_input():
    with pytest.raises(ValueError, match="no MoLoRA layers"):
        small_value_proportion(tiny_llama(), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="threshold must be a positive finite number, got -1"):
        small_value_proportion(injected_tiny(), torch.zeros(1, 4, dtype=torch.long), threshold=-1)


# --- CLI --------------------------------------------------------------------------------------------

def test_cli_prints_table_and_writes_json_and_png(tmp_path, monkeypatch, capsys):
    from hilo_core.proxies import __main__ as cli

    monkeypatch.setattr(cli, "load_model", lambda name, device="cpu": (tiny_llama(), None))
    assert cli.main(["--model", "tiny", "--total-experts", "10", "--out", str(tmp_path), "--no-cache"]) == 0
    result = json.loads((tmp_path / "alphas.json").read_text())
    assert sum(result["experts"]) == 10 and len(result["layers"]) == 4
    assert result["experts"] == list(alphalora_allocation(result["layers"], 10))
    assert (tmp_path / "alphas.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "AlphaLoRA experts" in capsys.readouterr().out


# --- the embedded model against weightwatcher -------------------------------------------------------

WW_LAYERS = (0, 14, 29)  # 21 of SmolLM2's 210 linears: weightwatcher's xmin_peak fit takes ~1 s each


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("weightwatcher") is None,
                    reason="weightwatcher not installed (dev extra: pip install weightwatcher==0.7.7 'powerlaw<2')")
def test_alphas_of_embedded_model_agree_with_weightwatcher():
    import weightwatcher

    from hilo_core.models import load_model

    model, _ = load_model("default")
    ours = layer_alphas(model, xmin_search="peak", cache=False)
    assert len(ours) == 30 and len(ours.module_alphas()) == 210
    watcher = weightwatcher.WeightWatcher(model=model)
    described = watcher.describe()
    wanted = {name for i in WW_LAYERS for name in ours.modules[i]}
    ids = [int(r.layer_id) for r in described.itertuples() if r.longname in wanted]
    # AlphaLoRA's convention (xmin near the log-ESD peak) is weightwatcher's fix_fingers="xmin_peak",
    # which it runs through the `powerlaw` package (1.x: 2.0 dropped an argument weightwatcher passes).
    ref = watcher.analyze(layers=ids, fix_fingers="xmin_peak", pl_package="powerlaw")
    assert (ref["alpha"] > 0).all(), f"weightwatcher fits failed (powerlaw>=2 installed?): {ref['status'].tolist()}"
    mine = ours.module_alphas()
    rel = np.array([abs(mine[r.longname] - r.alpha) / r.alpha for r in ref.itertuples()])
    print(f"median relative difference to weightwatcher xmin_peak over {len(rel)} linears: {np.median(rel):.2e}")
    assert len(rel) == 21 and np.median(rel) < 0.10
