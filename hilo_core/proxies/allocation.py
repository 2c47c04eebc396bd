"""AlphaLoRA's training-free allocation: expert counts from per-layer HT-SR alphas."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def alphalora_allocation(alphas: Sequence[float], total_experts: int, beta: float = 2.5) -> tuple[int, ...]:
    """``n_l = round(T * a_l^beta / sum_m a_m^beta)``, then +-1 steps until ``sum n_l == T``; every n_l >= 1.

    Steps go to the layer farthest from its real-valued target, so the result stays monotone in alpha.
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
    weights = a ** beta
    target = total_experts * weights / weights.sum()
    n = np.maximum(np.rint(target).astype(np.int64), 1)
    while n.sum() < total_experts:
        n[np.argmax(target - n)] += 1
    while n.sum() > total_experts:
        surplus = np.where(n > 1, n - target, -np.inf)
        n[np.argmax(surplus)] -= 1
    return tuple(int(v) for v in n)
