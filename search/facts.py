"""What the search needs to know of the base model (layer count, target shapes, HT-SR alphas) and the space
built from it; read once per run on the driver, so trials never load the model for it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rich.console import Console

from hilo_core import find_decoder_layers, module_shapes
from objectives import base_model
from spaces import Space, get_space, load_space_file

from .study import SearchInputError


@dataclass(frozen=True)
class ModelFacts:
    """What the space and the constraint need to know of the base model."""

    n_layers: int
    target_modules: tuple[str, ...]
    shapes: dict[str, tuple[int, int]]
    layer_alphas: tuple[float, ...]


def model_facts(model_name: str, targets: Sequence[str], console: Console) -> ModelFacts:
    """Layer count, target shapes and HT-SR alphas (cached on disk by hilo_core.proxies) of the base model."""
    from hilo_core.proxies import layer_alphas

    try:
        model, _ = base_model(model_name)
    except (OSError, ValueError, ModuleNotFoundError) as err:
        raise SearchInputError(f"--model {model_name}: {err}") from None
    _, blocks = find_decoder_layers(model)
    try:
        shapes = module_shapes(model, tuple(targets))
    except ValueError as err:
        raise SearchInputError(f"--targets: {err}") from None
    with console.status("HT-SR alphas of the base model (cached after the first run) ..."):
        alphas = tuple(layer_alphas(model, tuple(targets)).layers)
    return ModelFacts(n_layers=len(blocks), target_modules=tuple(targets), shapes=shapes, layer_alphas=alphas)


def build_space(name: str, facts: ModelFacts) -> Space:
    """The built-in space ``name`` or the YAML/JSON space file at ``name``, sized to the model."""
    common = {"n_layers": facts.n_layers, "target_modules": facts.target_modules, "layer_alphas": facts.layer_alphas}
    try:
        if Path(name).suffix.lower() in (".yaml", ".yml", ".json"):
            return load_space_file(name, **common)
        return get_space(name, **common)
    except (OSError, ValueError) as err:
        raise SearchInputError(f"--space {name}: {err}") from None
