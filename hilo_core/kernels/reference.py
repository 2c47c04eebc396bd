"""Plain-torch MoLoRA adapter deltas: the stacked path (two GEMMs) and the per-expert loop.

Shared contract of every implementation (Triton kernels included): given dropped-out inputs
``x (tokens, d_in)``, stacked ``A (R, d_in)``, ``B (d_out, R)``, router ``weights (tokens, N)`` and the
expert ``ranks`` (summing to R), return ``sum_i w_i * alpha / r_i * B_i A_i x`` as ``(tokens, d_out)``;
with ``base (tokens, d_out)`` (the frozen layer's output) return ``base + delta`` in base's dtype.
"""

from __future__ import annotations

import functools

import torch


def segment_ids(ranks: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """Expert index of each of the R stacked rank columns: ranks (2, 3) -> [0, 0, 1, 1, 1]."""
    return torch.repeat_interleave(torch.arange(len(ranks), device=device),
                                   torch.tensor(ranks, device=device))


@functools.lru_cache(maxsize=4096)
def scale_matrix(ranks: tuple[int, ...], alpha: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``S (N, R)`` with ``S[i, j] = alpha / r_i`` where column j belongs to expert i, else 0; cached.

    ``weights @ S`` is the per-token, per-column scale ``w_i(x) * alpha / r_i`` in one GEMM, and its
    gradient is one GEMM too; built once per (ranks, alpha, device, dtype), never per call.
    """
    seg = segment_ids(ranks)
    scale = torch.zeros(len(ranks), sum(ranks), dtype=torch.float64)
    scale[seg, torch.arange(sum(ranks))] = torch.tensor([alpha / r for r in ranks], dtype=torch.float64)[seg]
    return scale.to(device=device, dtype=dtype)


def stacked_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                  ranks: tuple[int, ...], alpha: float, base: torch.Tensor | None = None) -> torch.Tensor:
    """Two skinny GEMMs whatever N: ``h = x A^T``, scale h's segments, ``y = h B^T`` (+ base in the GEMM)."""
    h = x @ A.t()
    h = h * (weights @ scale_matrix(tuple(ranks), float(alpha), weights.device, weights.dtype)).to(h.dtype)
    if base is None:
        return h @ B.t()
    if base.dtype == h.dtype:
        return torch.addmm(base, h, B.t())
    return base + (h @ B.t()).to(base.dtype)


def loop_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
               ranks: tuple[int, ...], alpha: float, base: torch.Tensor | None = None) -> torch.Tensor:
    """The published MoLA/AlphaLoRA shape: one LoRA per expert, 2N GEMMs. Oracle and baseline only."""
    y = x.new_zeros(x.shape[0], B.shape[0])
    start = 0
    for i, r in enumerate(ranks):
        A_i, B_i = A[start:start + r], B[:, start:start + r]
        y = y + (weights[:, i:i + 1] * (alpha / r)).to(x.dtype) * ((x @ A_i.t()) @ B_i.t())
        start += r
    return y if base is None else base + y.to(base.dtype)
