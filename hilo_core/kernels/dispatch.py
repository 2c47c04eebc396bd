"""Dispatch in one place: which implementation computes a MoLoRA adapter delta.

An ordered list of ``(applies, implementation)`` entries, first match wins (PEFT's ``dispatch_*``
shape); the plain-torch stacked path is the last entry and always applies.
"""

from __future__ import annotations

from typing import Callable

import torch

from .reference import stacked_delta

DeltaFn = Callable[..., torch.Tensor]
DISPATCH: list[tuple[Callable[[torch.Tensor], bool], DeltaFn]] = [
    (lambda x: True, stacked_delta),
]


def molora_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                 ranks: tuple[int, ...], alpha: float) -> torch.Tensor:
    """``sum_i w_i * alpha / r_i * B_i A_i x`` for ``x (tokens, d_in)`` by the first applicable path."""
    for applies, fn in DISPATCH:
        if applies(x):
            return fn(x, A, B, weights, ranks, alpha)
    raise RuntimeError("no MoLoRA implementation applies")  # unreachable: the last entry always applies
