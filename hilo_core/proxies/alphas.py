"""HT-SR alpha of every target linear of a model, and the per-layer means AlphaLoRA allocates from.

Reads the frozen base weights (``MoLoRALinear.base_layer`` on an injected model), so the proxy is the
same before and after ``inject``; results are cached on disk keyed by a hash of those weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from ..config import LLAMA_TARGETS
from ..inject import find_decoder_layers
from ..layers import MoLoRALinear, linear_shape
from .cache import cached_json, weights_digest
from .esd import ESD_DTYPES, esd_many
from .hill import DEFAULT_XMIN_SEARCH, XMIN_SEARCHES, hill_alpha

@dataclass(frozen=True)
class LayerAlphas:
    """Per-layer mean alphas (iterating gives them, so it passes as ``alphas`` anywhere) and per-module alphas.

    ``modules[i]`` maps the qualified names of layer i's linears (``model.layers.3.self_attn.q_proj``) to alphas.
    """

    layers: tuple[float, ...]
    modules: tuple[dict[str, float], ...] = ()

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self) -> Iterator[float]:
        return iter(self.layers)

    def module_alphas(self) -> dict[str, float]:
        """Every module's alpha in one mapping, in model order."""
        return {name: a for layer in self.modules for name, a in layer.items()}

    def to_json(self) -> dict:
        return {"layers": list(self.layers), "modules": [dict(m) for m in self.modules]}

    @classmethod
    def from_json(cls, data: dict) -> LayerAlphas:
        return cls(layers=tuple(float(a) for a in data["layers"]),
                   modules=tuple({k: float(v) for k, v in m.items()} for m in data["modules"]))


def target_weights(model: nn.Module, target_modules: Sequence[str]) -> list[tuple[int, str, torch.Tensor]]:
    """``(layer index, qualified name, weight)`` for each target linear, base weights under MoLoRA wrappers.

    Matches names as ``inject`` does (last name component) so a proxy covers exactly the adapted linears.
    """
    targets = tuple(target_modules)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"target_modules must be a non-empty sequence of module names, got {target_modules!r}")
    stack_name, blocks = find_decoder_layers(model)
    found: list[tuple[int, str, torch.Tensor]] = []
    for i, block in enumerate(blocks):
        for path, module in block.named_modules():
            if path.rsplit(".", 1)[-1] not in targets:
                continue
            base = module.base_layer if isinstance(module, MoLoRALinear) else module
            try:
                linear_shape(base)
            except TypeError:
                raise ValueError(f"target module {stack_name}.{i}.{path} is a {type(base).__name__},"
                                 " not a linear layer (nn.Linear or Conv1D)") from None
            found.append((i, f"{stack_name}.{i}.{path}", base.weight))
    if not found:
        available = sorted({p.rsplit(".", 1)[-1] for p, m in blocks[0].named_modules()
                            if isinstance(m, (nn.Linear, MoLoRALinear)) or type(m).__name__ == "Conv1D"})
        raise ValueError(f"target_modules {list(targets)} match no linear in {stack_name}; "
                         f"linear names there: {available}")
    empty = sorted(set(range(len(blocks))) - {i for i, _, _ in found})
    if empty:
        raise ValueError(f"target_modules {list(targets)} match no linear in layers {empty} of {stack_name}; "
                         "every layer needs at least one to get an alpha")
    return found


def layer_alphas(model: nn.Module, target_modules: Sequence[str] = LLAMA_TARGETS, *,
                 xmin_search: str = DEFAULT_XMIN_SEARCH,
                 dtype: torch.dtype = torch.float32, cache: bool = True) -> LayerAlphas:
    """Mean HT-SR alpha of each layer's target linears, with every module's alpha.

    AlphaLoRA: a layer's alpha is the mean PL_Alpha_Hill of its linears; the ESDs are batched by shape.
    """
    if xmin_search not in XMIN_SEARCHES:
        raise ValueError(f"xmin_search must be one of {XMIN_SEARCHES}, got {xmin_search!r}")
    if dtype not in ESD_DTYPES:
        raise ValueError(f"dtype must be one of {ESD_DTYPES}, got {dtype}")
    found = target_weights(model, target_modules)
    names = [name for _, name, _ in found]

    def compute() -> dict:
        eigs = esd_many([w for _, _, w in found], names=names, dtype=dtype)
        alphas = [hill_alpha(e, xmin_search=xmin_search) for e in eigs]
        modules: list[dict[str, float]] = [{} for _ in range(max(i for i, _, _ in found) + 1)]
        for (layer, name, _), alpha in zip(found, alphas):
            modules[layer][name] = alpha
        layers = tuple(sum(m.values()) / len(m) for m in modules)
        return LayerAlphas(layers=layers, modules=tuple(modules)).to_json()

    if not cache:
        return LayerAlphas.from_json(compute())
    key = {"proxy": "layer_alphas", "targets": sorted(set(target_modules)), "xmin_search": xmin_search,
           "dtype": str(dtype), "weights": weights_digest({name: w for _, name, w in found})}
    return cached_json(key, compute, LayerAlphas.from_json)
