"""Parameter accounting: trainable adapter parameters and expected active ones per token.

trainable = sum over adapted linears of ``R * (d_in + d_out) + router params``;
active = sum of ``E[sum_{i active} r_i] * (d_in + d_out) + router params`` (docs/architecture.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .config import LayerSpec, MoLoRAConfig
from .inject import find_decoder_layers, injected_config, molora_modules
from .layers import MoLoRALinear


def count_trainable(model: nn.Module) -> int:
    """Exact adapter parameter count from module shapes, via each adapter's ``adapter_params()``."""
    return sum(p.numel() for _, m in molora_modules(model) for p in m.adapter_params().values())


def aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the load-balancing losses the routers produced in the last forward pass."""
    losses = [m.aux_loss for _, m in molora_modules(model) if m.aux_loss is not None and not m.disabled]
    return torch.stack(losses).sum() if losses else torch.zeros(())


@contextmanager
def track_activity(model: nn.Module) -> Iterator[list[MoLoRALinear]]:
    """Record which experts fire per token in every MoLoRA layer while the block runs."""
    modules = [m for _, m in molora_modules(model)]
    for m in modules:
        m.reset_activity()
        m.track_activity = True
    try:
        yield modules
    finally:
        for m in modules:
            m.track_activity = False


def _module_active(m: MoLoRALinear) -> float:
    if m.disabled:
        return 0.0
    mean_rank = m.active_rank_sum / m.tokens_seen
    return mean_rank * (m.d_in + m.d_out) + m.router_param_count()


@torch.no_grad()
def count_active(model: nn.Module, batch: torch.Tensor | Mapping[str, Any]) -> float:
    """Mean active adapter parameters per token over ``batch`` (input ids or a model kwargs mapping).

    Exact for ``topk`` and ``dense`` (every token fires the same experts' count); for ``threshold`` and
    ``topp`` it is the mean over the batch's tokens.
    """
    modules = [m for _, m in molora_modules(model)]
    if not modules:
        raise ValueError("model has no MoLoRA layers: call hilo_core.inject first")
    was_training = model.training
    model.eval()
    try:
        with track_activity(model):
            model(**batch) if isinstance(batch, Mapping) else model(batch)
            return sum(_module_active(m) for m in modules)
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class LayerRow:
    """One row of the parameter table: a transformer layer's adapters."""

    layer: int
    n_experts: int
    ranks: tuple[int, ...]
    router: str
    modules: int
    trainable: int


def parameter_table(model: nn.Module) -> list[LayerRow]:
    """Per-layer summary of the injected adapters, ordered by layer."""
    config = injected_config(model)
    if config is None:
        raise ValueError("model has no MoLoRA layers: call hilo_core.inject first")
    _, blocks = find_decoder_layers(model)
    per_layer = [[m for m in block.modules() if isinstance(m, MoLoRALinear)] for block in blocks]
    return [
        LayerRow(layer=i, n_experts=spec.n_experts, ranks=spec.ranks, router=spec.router.kind,
                 modules=len(per_layer[i]),
                 trainable=sum(p.numel() for m in per_layer[i] for p in m.adapter_params().values()))
        for i, spec in enumerate(config.layers)
    ]


def module_shapes(model: nn.Module, target_modules: tuple[str, ...]) -> dict[str, tuple[int, int]]:
    """``{path in a decoder layer: (d_in, d_out)}`` for every target linear of the first decoder layer.

    Keyed by path (``attn.c_proj``, ``mlp.c_proj``), not by name: one target name may match several
    modules of different shapes in a block (GPT-2's two ``c_proj``, BERT's three ``dense``).
    """
    from .layers import linear_shape

    stack_name, blocks = find_decoder_layers(model)
    shapes: dict[str, tuple[int, int]] = {}
    for path, module in blocks[0].named_modules():
        if _leaf(path) in target_modules:
            try:
                shapes[path] = (module.d_in, module.d_out) if isinstance(module, MoLoRALinear) else \
                    linear_shape(module)
            except TypeError:
                raise ValueError(f"target module {stack_name}.0.{path} is a {type(module).__name__},"
                                 " not a linear layer (nn.Linear or Conv1D)") from None
    missing = [t for t in target_modules if t not in {_leaf(p) for p in shapes}]
    if missing:
        raise ValueError(f"target_modules {missing} match no linear in the first decoder layer")
    return shapes


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _target_shapes(config: MoLoRAConfig, shapes: Mapping[str, tuple[int, int]]) -> list[tuple[int, int]]:
    """The shapes of the modules ``config`` adapts in one layer (keys: paths, or bare target names)."""
    chosen = [shape for path, shape in shapes.items() if _leaf(path) in config.target_modules]
    missing = [t for t in config.target_modules if t not in {_leaf(p) for p in shapes}]
    if missing:
        raise ValueError(f"shapes hold no module named {missing} (config.target_modules); got {sorted(shapes)}")
    return chosen


def config_trainable(config: MoLoRAConfig, shapes: Mapping[str, tuple[int, int]]) -> int:
    """Trainable adapter parameters of ``config`` without building it (search constraints, reports).

    Equals ``count_trainable`` after ``inject`` when every layer's targets have the first layer's shapes.
    """
    per_layer = _target_shapes(config, shapes)
    return sum(spec.total_rank * (d_in + d_out) + router_param_count(spec, d_in)
               for spec in config.layers for d_in, d_out in per_layer)


def config_active(config: MoLoRAConfig, shapes: Mapping[str, tuple[int, int]]) -> float | None:
    """Active adapter parameters per token known from the config alone (topk / dense / one expert).

    Expected active rank for top-k is the mean over which k experts fire; that depends on the data when
    ranks differ inside a layer, so only equal-rank top-k layers are exact here. None otherwise.
    """
    per_layer = _target_shapes(config, shapes)
    total = 0.0
    for spec in config.layers:
        if spec.disabled:
            continue
        n, kind = spec.n_experts, spec.router.kind
        if n == 1 or kind == "dense":
            rank = float(spec.total_rank)
        elif kind == "topk" and len(set(spec.ranks)) == 1:
            rank = float(spec.router.top_k * spec.ranks[0])
        else:
            return None
        total += sum(rank * (d_in + d_out) + router_param_count(spec, d_in) for d_in, d_out in per_layer)
    return total


def router_param_count(spec: LayerSpec, d_in: int) -> int:
    """Gate ``N * d_in`` (none for one expert) plus AdaMoLE's threshold ``d_in + 1``."""
    if spec.n_experts == 1:
        return 0
    return spec.n_experts * d_in + (d_in + 1 if spec.router.kind == "threshold" else 0)
