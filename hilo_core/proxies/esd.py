"""Empirical spectral densities: eigenvalues of ``W^T W`` for one weight or a batch of same-shape weights.

The eigenvalues are the squared singular values (HT-SR, Martin & Mahoney); computing them with
``torch.linalg.svdvals`` on the weights' own device keeps a 7B model's pass on its GPU.
"""

from __future__ import annotations

from typing import Sequence

import torch

ESD_DTYPES = (torch.float32, torch.float64)
# Upper bound on the elements stacked into one batched SVD call (float64: 1 GiB), so that a
# 7B model's 32 same-shape gate_proj weights do not all materialise a float64 copy at once.
_MAX_BATCH_ELEMENTS = 1 << 27


def _check_dtype(dtype: torch.dtype) -> None:
    if dtype not in ESD_DTYPES:
        raise ValueError(f"dtype must be one of {ESD_DTYPES}, got {dtype}")


def esd(weight: torch.Tensor, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Ascending eigenvalues of ``W^T W`` (``min(d_out, d_in)`` of them); a ``(b, m, n)`` input gives ``(b, k)``.

    ``svdvals(W)^2`` is the ESD whose tail AlphaLoRA's PL_Alpha_Hill fits; squaring singular values is
    better conditioned than forming ``W^T W``.
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim not in (2, 3):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 2-D (d_out, d_in) or 3-D (batch, d_out, d_in) tensor, got {shape}")
    _check_dtype(dtype)
    if not torch.isfinite(weight).all():
        raise ValueError("weight contains NaN or inf values; the ESD needs finite weights")
    singular = torch.linalg.svdvals(weight.detach().to(dtype))
    return singular.square().flip(-1)


def esd_many(weights: Sequence[torch.Tensor], *, names: Sequence[str] | None = None,
             dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """ESDs of many weights, one batched SVD per group of equal shape and device; results in input order.

    A transformer repeats a handful of shapes (q/k/v/o, gate/up/down), so batching removes per-call overhead.
    """
    _check_dtype(dtype)
    names = list(names) if names is not None else [f"weights[{i}]" for i in range(len(weights))]
    if len(names) != len(weights):
        raise ValueError(f"names has {len(names)} entries for {len(weights)} weights")
    groups: dict[tuple, list[int]] = {}
    for i, (name, w) in enumerate(zip(names, weights)):
        if w.ndim != 2:
            raise ValueError(f"{name}: weight must be 2-D (d_out, d_in), got shape {tuple(w.shape)}")
        if not torch.isfinite(w).all():
            raise ValueError(f"{name}: weight contains NaN or inf values; the ESD needs finite weights")
        groups.setdefault((tuple(w.shape), w.device), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(weights)
    for (shape, _), idx in groups.items():
        chunk = max(1, _MAX_BATCH_ELEMENTS // (shape[0] * shape[1]))
        for start in range(0, len(idx), chunk):
            part = idx[start:start + chunk]
            stacked = torch.stack([weights[i].detach().to(dtype) for i in part])
            for i, eigs in zip(part, esd(stacked, dtype=dtype)):
                out[i] = eigs
    return out
