"""Plain-torch MoLoRA adapter deltas: the stacked path (two GEMMs) and the per-expert loop.

Shared contract of every implementation (Triton kernels included): given dropped-out inputs
``x (tokens, d_in)``, stacked ``A (R, d_in)``, ``B (d_out, R)``, router ``weights (tokens, N)`` and the
expert ``ranks`` (summing to R), return ``sum_i w_i * alpha / r_i * B_i A_i x`` as ``(tokens, d_out)``.
"""

from __future__ import annotations

import torch


def segment_ids(ranks: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """Expert index of each of the R stacked rank columns: ranks (2, 3) -> [0, 0, 1, 1, 1]."""
    return torch.repeat_interleave(torch.arange(len(ranks), device=device),
                                   torch.tensor(ranks, device=device))


def column_scale(weights: torch.Tensor, ranks: tuple[int, ...], alpha: float) -> torch.Tensor:
    """Per-token, per-rank-column scale ``w_i(x) * alpha / r_i``: ``(tokens, R)``."""
    seg = segment_ids(ranks, weights.device)
    per_expert = weights * (alpha / torch.tensor(ranks, dtype=weights.dtype, device=weights.device))
    return per_expert.index_select(-1, seg)


def stacked_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                  ranks: tuple[int, ...], alpha: float) -> torch.Tensor:
    """Two skinny GEMMs whatever N: ``h = x A^T``, scale h's segments, ``y = h B^T``."""
    h = x @ A.t()
    h = h * column_scale(weights, ranks, alpha).to(h.dtype)
    return h @ B.t()


def loop_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
               ranks: tuple[int, ...], alpha: float) -> torch.Tensor:
    """The published MoLA/AlphaLoRA shape: one LoRA per expert, 2N GEMMs. Oracle and baseline only."""
    y = x.new_zeros(x.shape[0], B.shape[0])
    start = 0
    for i, r in enumerate(ranks):
        A_i, B_i = A[start:start + r], B[:, start:start + r]
        y = y + (weights[:, i:i + 1] * (alpha / r)).to(x.dtype) * ((x @ A_i.t()) @ B_i.t())
        start += r
    return y
