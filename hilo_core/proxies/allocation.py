"""AlphaLoRA's training-free allocation: expert counts from per-layer HT-SR alphas.

Two roundings of the shares ``T * a_l^beta / sum_m a_m^beta`` to integers summing to ``T``:
``"released"`` is AlphaLoRA's released ``expert_number.py`` (``exponential_scaling``) and the default, so
the ``alphalora`` seed gives the counts the authors' code gives; ``"nearest"`` is hilo's variant.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ROUNDINGS = ("released", "nearest")


def alphalora_allocation(alphas: Sequence[float], total_experts: int, beta: float = 2.5, *,
                         rounding: str = "released") -> tuple[int, ...]:
    """Experts per layer ``n_l ~ T * a_l^beta / sum_m a_m^beta`` with ``sum n_l == T`` and every ``n_l >= 1``.

    ``"released"``: ``round`` each share, then while the sum is short add 1 at ``argmin(a^beta - n)``, while
    over take 1 at ``argmax(a^beta - n)`` (the unnormalised weights, as ``exponential_scaling`` does). The
    released code can leave a layer at 0; such layers get 1, taken where the same rule takes.
    ``"nearest"``: ``round`` each share (at least 1), then +-1 steps at the layer farthest from its real-valued
    share: the result stays monotone in alpha and the short/over steps follow the shares.
    """
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"alphas must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"alphas must be positive finite numbers, got {a.tolist()}")
    if not isinstance(total_experts, int) or total_experts < a.size:
        raise ValueError(f"total_experts must be an integer >= number of layers {a.size}, got {total_experts!r}")
    if not (isinstance(beta, (int, float)) and math.isfinite(beta)):
        raise ValueError(f"beta must be a finite number, got {beta!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    weights = a ** beta
    target = total_experts * weights / weights.sum()
    if rounding == "released":
        n = np.rint(target).astype(np.int64)  # numpy's round: half to even, as np.round
        while n.sum() < total_experts:
            n[np.argmin(weights - n)] += 1
        while n.sum() > total_experts:
            n[np.argmax(weights - n)] -= 1
        while n.min() < 1:  # beyond the released code: every layer keeps one expert
            n[np.argmin(n)] += 1
            n[np.argmax(np.where(n > 1, weights - n, -np.inf))] -= 1
        return tuple(int(v) for v in n)
    n = np.maximum(np.rint(target).astype(np.int64), 1)
    while n.sum() < total_experts:
        n[np.argmax(target - n)] += 1
    while n.sum() > total_experts:
        surplus = np.where(n > 1, n - target, -np.inf)
        n[np.argmax(surplus)] -= 1
    return tuple(int(v) for v in n)
