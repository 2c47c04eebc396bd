"""MoLoRALinear: a frozen linear plus a routed mixture of LoRA experts with per-expert ranks.

``y = W0 x + sum_i w_i(x) * alpha / r_i * B_i A_i dropout(x)``, computed on the stacked
``A (R, d_in)`` / ``B (d_out, R)`` so that any number of experts costs two GEMMs, the base output added
inside the second one. Nothing is built per call (the per-column scales are cached); dropout's
``1 / (1 - p)`` is folded into alpha and it is skipped when p = 0 or in eval mode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import LayerSpec
from .kernels import molora_delta
from .kernels.reference import loop_delta
from .routers import RouterOutput, build_router

_DROP_LEVELS = 1 << 16  # dropout probabilities are resolved to 1/65536: 16 random bits per element


def dropout_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """``(kept, keep)``: a bool mask keeping each element with probability ``keep = 1 - round(p * 2^16) / 2^16``.

    Four elements share one 64-bit draw of torch's generator (seeded, reproducible): a quarter of
    ``bernoulli_``'s draws; on the CPU ``bernoulli_`` took longer than the adapter's forward GEMMs.
    """
    n = math.prod(shape)
    level = round(p * _DROP_LEVELS)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=device).random_(-2 ** 63, 2 ** 63 - 1)
    kept = bits.view(torch.int16)[:n].view(shape) >= level - _DROP_LEVELS // 2
    return kept, 1.0 - level / _DROP_LEVELS


def compute_dtype(x: torch.Tensor, param: torch.Tensor) -> torch.dtype:
    """The adapters' GEMM dtype: autocast's (bf16) on CUDA when it is on, so the fused kernels run in it."""
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    return param.dtype


def linear_shape(base: nn.Module) -> tuple[int, int]:
    """``(d_in, d_out)`` of an ``nn.Linear`` or a GPT-2 style ``Conv1D`` (weight stored ``(d_in, d_out)``)."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    if type(base).__name__ == "Conv1D" and hasattr(base, "nf"):
        d_in, d_out = base.weight.shape
        return d_in, d_out
    raise TypeError(f"expected nn.Linear or transformers Conv1D, got {type(base).__name__}")


class MoLoRALinear(nn.Module):
    """Wraps (never edits) a base linear; ``adapter_params()`` are the only trainable tensors it adds."""

    def __init__(self, base_layer: nn.Module, *, spec: LayerSpec, lora_alpha: float,
                 lora_dropout: float = 0.0) -> None:
        super().__init__()
        d_in, d_out = linear_shape(base_layer)
        self.base_layer = base_layer
        self.spec = spec
        self.ranks = spec.ranks
        self.lora_alpha = float(lora_alpha)
        self.d_in, self.d_out = d_in, d_out
        self.disabled = spec.disabled
        weight = base_layer.weight
        factory = {"dtype": weight.dtype, "device": weight.device}
        self.lora_A = nn.Parameter(torch.empty(spec.total_rank, d_in, **factory))
        self.lora_B = nn.Parameter(torch.zeros(d_out, spec.total_rank, **factory))
        self.router = build_router(spec.router, d_in=d_in, n_experts=spec.n_experts, dtype=weight.dtype)
        self.router.to(weight.device)
        self.lora_dropout = float(lora_dropout)
        self.use_loop = False  # the per-expert reference path: test oracle and benchmark baseline only
        self.aux_loss: torch.Tensor | None = None
        self.track_activity = False
        self.reset_activity()
        self.reset_adapter()

    def reset_adapter(self) -> None:
        """LoRA init: each expert's A Kaiming-uniform (as PEFT), B zero, so the adapter starts at 0."""
        start = 0
        for r in self.ranks:
            nn.init.kaiming_uniform_(self.lora_A[start:start + r], a=math.sqrt(5))
            start += r
        nn.init.zeros_(self.lora_B)

    def adapter_params(self) -> dict[str, nn.Parameter]:
        """The adapter's own trainable tensors (torchtune's protocol): freezing and counting build on it."""
        params = {"lora_A": self.lora_A, "lora_B": self.lora_B}
        params.update({f"router.{n}": p for n, p in self.router.named_parameters()})
        return params

    def reset_activity(self) -> None:
        self.tokens_seen = 0
        self.active_rank_sum = 0.0
        self.active_expert_sum = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.disabled:
            return out
        tokens = x.reshape(-1, self.d_in)
        routed = self.route(tokens)
        self.aux_loss = routed.aux_loss
        if self.track_activity:
            self._record(routed.active)
        dtype = compute_dtype(x, self.lora_A)
        xd, alpha = tokens.to(dtype), self.lora_alpha
        if self.training and self.lora_dropout > 0:
            kept, keep = dropout_mask(xd.shape, self.lora_dropout, xd.device)
            # a float mask, cast once: multiplying by the bool mask casts it again in the backward
            xd, alpha = xd * kept.to(xd.dtype), alpha / keep
        A, B = (f.to(dtype) for f in self.factors())
        base = out.reshape(-1, self.d_out)
        if self.use_loop:
            return loop_delta(xd, A, B, routed.weights, self.ranks, alpha, base=base).reshape(out.shape)
        return molora_delta(xd, A, B, routed.weights, self.ranks, alpha, base=base).reshape(out.shape)

    def route(self, tokens: torch.Tensor) -> RouterOutput:
        """Router weights for ``tokens (tokens, d_in)``; the elastic layer routes over its active experts."""
        return self.router(tokens)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The stacked ``A (R, d_in)`` and ``B (d_out, R)`` the forward multiplies by."""
        return self.lora_A, self.lora_B

    @torch.no_grad()
    def _record(self, active: torch.Tensor) -> None:
        ranks = torch.tensor(self.ranks, dtype=torch.float64, device=active.device)
        act = active.to(torch.float64)
        self.tokens_seen += active.shape[0]
        self.active_rank_sum += float((act @ ranks).sum())
        self.active_expert_sum += float(act.sum())

    def __getstate__(self) -> dict:
        """Copies and pickles drop the last forward's aux loss: it is a graph node, not state."""
        state = dict(self.__dict__)
        state["aux_loss"] = None
        return state

    def router_param_count(self) -> int:
        return sum(p.numel() for p in self.router.parameters())

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, d_out={self.d_out}, ranks={self.ranks}, router={self.spec.router.kind}, "
                f"alpha={self.lora_alpha}, dropout={self.lora_dropout}, disabled={self.disabled}")
