"""Routers: per-token expert weights for a MoLoRA layer (docs/architecture.md, "The MoLoRA layer").

Each router maps tokens ``(tokens, d_in)`` to ``RouterOutput(weights, active, aux_loss)`` where
``weights`` is ``(tokens, N)`` with zeros on inactive experts and ``active`` its boolean mask.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import RouterSpec


class RouterOutput(NamedTuple):
    weights: torch.Tensor  # (tokens, N), zero where inactive
    active: torch.Tensor  # (tokens, N) bool
    aux_loss: torch.Tensor  # scalar load-balancing loss (0 for dense / single expert)


def routing_precision(t: torch.Tensor) -> torch.Tensor:
    """Routing runs in float32 at least (float64 stays float64): top-k ties and thresholds need it."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def balance_loss(probs: torch.Tensor, active: torch.Tensor, slots: int | None = None) -> torch.Tensor:
    """Switch-style load balance ``N * sum_i f_i * P_i``; f_i = share of routed slots, P_i = mean prob.

    Computed as ``N * (counts . sum_t p_t) / (slots * tokens)`` in four ops; ``slots`` (the number of
    routed slots, ``tokens * k`` for top-k) is counted from ``active`` when not given.
    """
    tokens, n = probs.shape
    counts = active.sum(0, dtype=probs.dtype)
    total = counts.sum().clamp_min(1.0) if slots is None else max(slots, 1)
    return (counts @ probs.sum(0)) * (n / tokens) / total


class _GatedRouter(nn.Module):
    """Shared part: a bias-free gate ``z = W_g x`` and ``p = softmax(z)`` in float32."""

    def __init__(self, *, d_in: int, n_experts: int, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.n_experts = n_experts
        self.gate = nn.Linear(d_in, n_experts, bias=False, dtype=dtype)

    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(routing_precision(self.gate(x)), dim=-1)


class DenseRouter(_GatedRouter):
    """All experts with soft weights ``p = softmax(W_g x)``."""

    def forward(self, x: torch.Tensor) -> RouterOutput:
        p = self.probs(x)
        return RouterOutput(p, torch.ones_like(p, dtype=torch.bool), p.new_zeros(()))


class TopKRouter(_GatedRouter):
    """MoLA: keep the k largest ``p_i`` and renormalise them to sum 1.

    The renormalised top-k of ``softmax(z)`` is the softmax of the k largest logits: one small softmax.
    """

    def __init__(self, *, d_in: int, n_experts: int, top_k: int, dtype: torch.dtype | None = None) -> None:
        super().__init__(d_in=d_in, n_experts=n_experts, dtype=dtype)
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> RouterOutput:
        z = routing_precision(self.gate(x))
        top = z.topk(self.top_k, dim=-1)
        weights = torch.zeros_like(z).scatter(-1, top.indices, torch.softmax(top.values, dim=-1))
        active = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, top.indices, True)
        p = torch.softmax(z, dim=-1)
        return RouterOutput(weights, active, balance_loss(p, active, slots=z.shape[0] * self.top_k))


class ThresholdRouter(_GatedRouter):
    """AdaMoLE: ``tau = tau_max * sigmoid(w_t.x + b_t)``; weights ``(p_i - tau)_+`` renormalised.

    ``max_i p_i >= 1/N >= tau_max > tau`` so at least one expert is always active.
    """

    def __init__(self, *, d_in: int, n_experts: int, tau_max: float | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(d_in=d_in, n_experts=n_experts, dtype=dtype)
        self.tau_max = 1.0 / n_experts if tau_max is None else tau_max
        self.threshold = nn.Linear(d_in, 1, dtype=dtype)

    def forward(self, x: torch.Tensor) -> RouterOutput:
        p = self.probs(x)
        tau = self.tau_max * torch.sigmoid(self.threshold(x).to(p.dtype))
        kept = torch.relu(p - tau)
        active = kept > 0
        return RouterOutput(kept / kept.sum(-1, keepdim=True), active, balance_loss(p, active))


class TopPRouter(_GatedRouter):
    """Dynamic activation: experts in descending ``p`` until their cumulative mass reaches ``top_p``."""

    def __init__(self, *, d_in: int, n_experts: int, top_p: float, dtype: torch.dtype | None = None) -> None:
        super().__init__(d_in=d_in, n_experts=n_experts, dtype=dtype)
        self.top_p = top_p

    def forward(self, x: torch.Tensor) -> RouterOutput:
        p = self.probs(x)
        sorted_p, order = p.sort(dim=-1, descending=True)
        # An expert is kept when the mass *before* it has not yet reached top_p: the first always is.
        keep_sorted = (sorted_p.cumsum(-1) - sorted_p) < self.top_p
        active = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
        kept = p.masked_fill(~active, 0.0)
        return RouterOutput(kept / kept.sum(-1, keepdim=True), active, balance_loss(p, active))


class SingleExpert(nn.Module):
    """One expert needs no gate: weight 1 for every token (so N = 1 is plain LoRA)."""

    n_experts = 1

    def forward(self, x: torch.Tensor) -> RouterOutput:
        w = routing_precision(x.new_ones(x.shape[0], 1))
        return RouterOutput(w, torch.ones_like(w, dtype=torch.bool), w.new_zeros(()))


def build_router(spec: RouterSpec, *, d_in: int, n_experts: int,
                 dtype: torch.dtype | None = None) -> nn.Module:
    """The router module for ``spec``; a single expert gets no gate parameters whatever the kind."""
    if n_experts == 1:
        return SingleExpert()
    if spec.kind == "dense":
        return DenseRouter(d_in=d_in, n_experts=n_experts, dtype=dtype)
    if spec.kind == "topk":
        return TopKRouter(d_in=d_in, n_experts=n_experts, top_k=spec.top_k, dtype=dtype)
    if spec.kind == "threshold":
        return ThresholdRouter(d_in=d_in, n_experts=n_experts, tau_max=spec.tau_max, dtype=dtype)
    if spec.kind == "topp":
        return TopPRouter(d_in=d_in, n_experts=n_experts, top_p=spec.top_p, dtype=dtype)
    raise ValueError(f"router.kind must be one of dense, topk, threshold, topp; got {spec.kind!r}")
