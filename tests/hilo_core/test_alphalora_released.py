"""The ``alphalora`` seed reproduces AlphaLoRA's released ``expert_number.py`` (peijunallin/alphalora).

The reference below is re-implemented from that script's description, step by step and in its float32:
``fix_finger`` (ESD = squared singular values, 100-bin histogram of log10 eigenvalues, ``xmin2`` = the
fullest bin's left edge, candidates ``xmin`` with ``log10(0.95 xmin2) <= xmin <= 1.5 xmin2``, MLE alpha,
KS distance, the candidate of least distance; skipped candidates keep distance 1), the layer alpha as the
mean over its linears, then ``exponential_scaling`` (round the shares of ``alpha^beta``, then +1 at
``argmin(alpha^beta - n)`` / -1 at ``argmax(alpha^beta - n)`` until the sum is T).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hilo_core.proxies import alphalora_allocation, layer_alphas


def released_fix_finger(weight: torch.Tensor) -> float:
    eigs = np.sort((torch.linalg.svdvals(weight.float()) ** 2).numpy())  # float32 throughout, as released
    n_all = len(eigs)
    logs = np.log(eigs)
    log10 = np.log10(eigs)
    counts, edges = np.histogram(log10, bins=100, range=(log10.min(), log10.max()))
    xmin2 = np.float32(10.0) ** edges[np.argmax(counts)].astype(np.float32)
    low, high = np.log10(np.float32(0.95) * xmin2), np.float32(1.5) * xmin2
    alphas, distances = np.zeros(n_all - 1, np.float32), np.ones(n_all - 1, np.float32)
    for i, xmin in enumerate(eigs[:-1]):
        if xmin < low:
            continue
        if xmin > high:
            break
        n = np.float32(n_all - i)
        alpha = 1 + n / (logs[i:].sum() - n * logs[i])
        alphas[i] = alpha
        if alpha > 1:
            seq = np.arange(n_all - i, dtype=np.float32)
            distances[i] = np.max(np.abs(1 - (eigs[i:] / xmin) ** (-alpha + 1) - seq / n))
    return float(alphas[np.argmin(distances)])


def released_exponential_scaling(values, target_sum: int, exponent: float) -> list[int]:
    scaled = np.power(np.array(values), exponent)
    integers = np.round(scaled / scaled.sum() * target_sum).astype(int)
    while integers.sum() != target_sum:
        if target_sum - integers.sum() > 0:
            integers[np.argmin(scaled - integers)] += 1
        else:
            integers[np.argmax(scaled - integers)] -= 1
    return integers.tolist()


@settings(max_examples=200, deadline=None)
@given(alphas=st.lists(st.floats(1.5, 8.0), min_size=2, max_size=40), per_layer=st.integers(2, 8),
       beta=st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0]))
def test_released_rounding_matches_exponential_scaling(alphas, per_layer, beta):
    total = per_layer * len(alphas)
    reference = released_exponential_scaling(alphas, total, beta)
    got = alphalora_allocation(alphas, total, beta, rounding="released")
    assert sum(got) == total and min(got) >= 1
    if min(reference) >= 1:  # the released code may leave a layer at 0; hilo keeps one expert there
        assert list(got) == reference


def test_released_rounding_keeps_one_expert_per_layer():
    alphas = [1.0, 1.0, 1.0, 12.0]  # shares 0.0006 x3 and 4.998: released gives [0, 0, 0, 5]
    assert released_exponential_scaling(alphas, 5, 2.5) == [0, 0, 0, 5]
    assert alphalora_allocation(alphas, 5, 2.5) == (1, 1, 1, 2)


@pytest.mark.slow
def test_alphalora_seed_counts_match_the_released_code_on_the_embedded_model():
    from hilo_core.models import load_model
    from spaces import seed_config

    model, _ = load_model("default")
    blocks = model.model.layers
    reference_alphas = [float(np.mean([released_fix_finger(m.weight.data) for m in block.modules()
                                       if type(m) is nn.Linear])) for block in blocks]
    total = 5 * len(blocks)  # the seed's T: 5 experts per layer (160 on 32 layers, as the paper)
    reference = released_exponential_scaling(reference_alphas, total, 2.5)
    ours = layer_alphas(model, cache=False)
    seed = seed_config("alphalora", n_layers=len(blocks), layer_alphas=ours.layers)
    assert len(blocks) == 30 and sum(reference) == total == 150
    assert list(seed.experts_per_layer) == reference  # all 30 layers
    assert np.allclose(ours.layers, reference_alphas, rtol=1e-4)
