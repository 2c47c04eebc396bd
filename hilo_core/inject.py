"""Put MoLoRA experts into any HF transformer (and take them out again) from one MoLoRAConfig.

Wrap, don't patch (PEFT): each target linear is replaced by a ``MoLoRALinear`` holding it as
``base_layer``; ``eject`` puts the originals back and restores every ``requires_grad`` flag.
"""

from __future__ import annotations

from typing import Callable, Iterator

from torch import nn

from .config import LayerSpec, MoLoRAConfig
from .layers import MoLoRALinear, linear_shape

_SAVED_FLAGS = "_hilo_requires_grad"
_CONFIG_ATTR = "hilo_config"
ELASTIC_ATTR = "hilo_elastic"  # the maxima of an elastic super-adapter (hilo_core.elastic)


def _holds_linear(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D" for m in module.modules())


def find_decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's stack of transformer blocks: its longest ``nn.ModuleList`` of blocks holding linears.

    Works for Llama/Mistral/Qwen2 (``model.layers``), GPT-2 (``transformer.h``) and BERT
    (``encoder.layer``) without a per-architecture table.
    """
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and all(_holds_linear(b) for b in module):
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise ValueError(f"{type(model).__name__}: no nn.ModuleList of transformer blocks holding linears found")
    return best


def _targets_in(block: nn.Module, targets: tuple[str, ...]) -> Iterator[tuple[str, str, nn.Module]]:
    """``(path, target name, module)`` for each submodule whose last name component is a target."""
    for path, module in block.named_modules():
        leaf = path.rsplit(".", 1)[-1]
        if leaf in targets:
            yield path, leaf, module


def _set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, leaf, new)


def inject(model: nn.Module, config: MoLoRAConfig) -> nn.Module:
    """Wrap ``config.target_modules`` of layer i with ``config.layers[i]``; freeze everything else.

    Raises:
        ValueError: layer-count mismatch, a target name found in no layer, a target that is not linear,
            or a model that already holds adapters.
    """
    return wrap_targets(model, config, lambda module, spec: MoLoRALinear(
        module, spec=spec, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout))


def wrap_targets(model: nn.Module, config: MoLoRAConfig,
                 build: Callable[[nn.Module, LayerSpec], MoLoRALinear]) -> nn.Module:
    """``inject`` with another wrapper: ``build(linear, config.layers[i])`` replaces each target of layer i.

    The elastic super-adapter (``hilo_core.elastic``) is injected through here, so both share the checks,
    the freezing and ``eject``. Raises as ``inject`` does.
    """
    if not isinstance(config, MoLoRAConfig):
        raise TypeError(f"config must be a MoLoRAConfig, got {type(config).__name__}")
    if getattr(model, _CONFIG_ATTR, None) is not None:
        raise ValueError("model already has MoLoRA adapters: call hilo_core.eject(model) first")
    stack_name, blocks = find_decoder_layers(model)
    if len(blocks) != config.n_layers:
        raise ValueError(f"config has {config.n_layers} layer specs but {stack_name} has {len(blocks)} layers")
    plan: list[tuple[nn.Module, str, nn.Module, int]] = []
    found: set[str] = set()
    for i, block in enumerate(blocks):
        for path, leaf, module in _targets_in(block, config.target_modules):
            try:
                linear_shape(module)
            except TypeError:
                raise ValueError(f"target module {stack_name}.{i}.{path} is a {type(module).__name__},"
                                 " not a linear layer (nn.Linear or Conv1D)") from None
            plan.append((block, path, module, i))
            found.add(leaf)
    missing = [t for t in config.target_modules if t not in found]
    if missing:
        available = sorted({p.rsplit(".", 1)[-1] for p, m in blocks[0].named_modules()
                            if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"})
        raise ValueError(f"target_modules {missing} match no module in {stack_name}; linear names there: {available}")

    setattr(model, _SAVED_FLAGS, {n: p.requires_grad for n, p in model.named_parameters()})
    model.requires_grad_(False)
    for block, path, module, i in plan:
        wrapped = build(module, config.layers[i])
        for p in wrapped.adapter_params().values():
            p.requires_grad_(True)
        _set_submodule(block, path, wrapped)
    setattr(model, _CONFIG_ATTR, config)
    return model


def molora_modules(model: nn.Module) -> Iterator[tuple[str, MoLoRALinear]]:
    """Every MoLoRA layer in the model with its qualified name, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, MoLoRALinear):
            yield name, module


def eject(model: nn.Module) -> nn.Module:
    """Remove every MoLoRA wrapper, restoring the original modules and requires_grad flags."""
    for name, module in list(molora_modules(model)):
        _set_submodule(model, name, module.base_layer)
    flags = getattr(model, _SAVED_FLAGS, None)
    if flags is not None:
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, p.requires_grad))
        delattr(model, _SAVED_FLAGS)
    for attr in (_CONFIG_ATTR, ELASTIC_ATTR):
        if hasattr(model, attr):
            delattr(model, attr)
    return model


def injected_config(model: nn.Module) -> MoLoRAConfig | None:
    """The config a model was injected with, or None for a bare model."""
    return getattr(model, _CONFIG_ATTR, None)
