"""Dispatch in one place: which implementation computes a MoLoRA adapter delta.

An ordered list of ``(applies, implementation)`` entries, first match wins (PEFT's ``dispatch_*``
shape); the plain-torch stacked path is the last entry and always applies.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable

import torch

from .reference import stacked_delta

DeltaFn = Callable[..., torch.Tensor]
TRITON_ENABLED = True  # module-level opt-out; the environment variable HILO_DISABLE_TRITON=1 is the other
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=None)
def triton_importable() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_applies(x: torch.Tensor) -> bool:
    """Fused kernels on CUDA tensors only: CPU tensors must never reach a Triton launch."""
    return (x.is_cuda and x.dtype in TRITON_DTYPES and TRITON_ENABLED
            and os.environ.get("HILO_DISABLE_TRITON") != "1" and triton_importable())


def triton_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                 ranks: tuple[int, ...], alpha: float, base: torch.Tensor | None = None) -> torch.Tensor:
    """Imported on first use: defining the kernels needs triton, and costs nothing until a GPU call."""
    from .molora_triton import molora_triton_delta
    return molora_triton_delta(x, A, B, weights, ranks, alpha, base=base)


DISPATCH: list[tuple[Callable[[torch.Tensor], bool], DeltaFn]] = [
    (triton_applies, triton_delta),
    (lambda x: True, stacked_delta),
]


def molora_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                 ranks: tuple[int, ...], alpha: float, *, base: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i * alpha / r_i * B_i A_i x`` for ``x (tokens, d_in)`` by the first applicable path.

    With ``base`` (the frozen layer's output, ``(tokens, d_out)``) it returns ``base + delta`` in base's
    dtype, the add fused into the second GEMM (the Triton epilogue, or ``addmm`` on the torch path).
    """
    for applies, fn in DISPATCH:
        if applies(x):
            return fn(x, A, B, weights, ranks, alpha, base=base)
    raise RuntimeError("no MoLoRA implementation applies")  # unreachable: the last entry always applies
