"""HiLo's small-value proportion: per layer, the share of adapter outputs too small to matter.

A layer whose experts mostly output ``|v| < 1e-3`` after a warm-up uses little of its capacity
(HiLo, arXiv 2502.03884); the adapter output is the delta a MoLoRA layer adds to its base output.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..inject import find_decoder_layers, molora_modules


def _layer_index(name: str, stack_name: str) -> int:
    return int(name[len(stack_name) + 1:].split(".", 1)[0])


@torch.no_grad()
def small_value_proportion(model: nn.Module, batch: Mapping[str, torch.Tensor] | torch.Tensor, *,
                           threshold: float = 1e-3) -> tuple[float, ...]:
    """Per layer, the fraction of adapter output values with ``|v| < threshold`` on ``batch`` (eval mode).

    Forward hooks take each MoLoRA layer's output minus its base layer's output; padding positions
    (``attention_mask == 0``) are not counted. Disabled layers count as all-small (they add nothing).
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}")
    modules = list(molora_modules(model))
    if not modules:
        raise ValueError("model has no MoLoRA layers: inject adapters (hilo_core.inject) before measuring them")
    stack_name, blocks = find_decoder_layers(model)
    if isinstance(batch, Mapping):
        inputs, mask = dict(batch), batch.get("attention_mask")
    elif isinstance(batch, torch.Tensor):
        inputs, mask = {"input_ids": batch}, None
    else:
        raise TypeError(f"batch must be a tensor of input ids or a mapping of model inputs, got {type(batch).__name__}")
    small = [0] * len(blocks)
    total = [0] * len(blocks)
    base_out: dict[int, torch.Tensor] = {}

    def keep_base(module: nn.Module, args, output: torch.Tensor) -> None:
        base_out[id(module)] = output

    def count(layer: int, wrapper: nn.Module, output: torch.Tensor) -> None:
        delta = output.double() - base_out.pop(id(wrapper.base_layer)).double()  # (..., d_out)
        if mask is not None and tuple(delta.shape[:-1]) == tuple(mask.shape):
            delta = delta[mask.to(torch.bool)]
        small[layer] += int((delta.abs() < threshold).sum())
        total[layer] += delta.numel()

    handles = []
    training = {m: m.training for m in model.modules()}
    try:
        for name, module in modules:
            layer = _layer_index(name, stack_name)
            handles.append(module.base_layer.register_forward_hook(keep_base))
            handles.append(module.register_forward_hook(
                lambda mod, args, out, layer=layer: count(layer, mod, out)))
        model.eval()
        model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training.items():
            m.train(flag)
    missing = [i for i, t in enumerate(total) if t == 0]
    if missing:
        raise ValueError(f"layers {missing} of {stack_name} have no MoLoRA output on this batch "
                         "(no adapted module there, or an empty batch)")
    return tuple(s / t for s, t in zip(small, total))
