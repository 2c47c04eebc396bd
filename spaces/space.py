"""The Space protocol: an Optuna trial in, a MoLoRAConfig out; seeds are configs the space can express."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from optuna.trial import FixedTrial

from hilo_core.config import LayerSpec, MoLoRAConfig, RouterSpec

from .seeds import seed_config, seed_names


@dataclass(frozen=True)
class Seed:
    """A named rule-based config as this space's params: ``study.enqueue_trial(params, user_attrs=...)``."""

    name: str = field(metadata={"help": "seed name, e.g. 'mola-2468' (stored as trial user attr seed_name)"})
    params: dict[str, Any] = field(metadata={"help": "flat trial params that make sample() rebuild the seed"})


def check_layers(n_layers: Any, layer_alphas: Sequence[float] | None) -> tuple[float, ...] | None:
    """Validate the model facts every space is built from."""
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    if layer_alphas is None:
        return None
    alphas = tuple(float(a) for a in layer_alphas)
    if len(alphas) != n_layers:
        raise ValueError(f"layer_alphas must have n_layers={n_layers} entries, got {len(alphas)}")
    if not all(math.isfinite(a) and a > 0 for a in alphas):
        raise ValueError(f"layer_alphas must be positive finite numbers, got {list(alphas)}")
    return alphas


def check_targets(target_modules: Sequence[str]) -> tuple[str, ...]:
    """Validate target names where MoLoRAConfig does (the one place), by building a one-layer config."""
    if isinstance(target_modules, str):
        raise ValueError(f"target_modules must be a list of module names, got the string {target_modules!r}")
    one_layer = (LayerSpec(ranks=(1,), router=RouterSpec(kind="dense")),)
    return MoLoRAConfig(layers=one_layer, target_modules=tuple(target_modules)).target_modules


class Space(ABC):
    """Maps a trial to a MoLoRAConfig by choosing only (docs/architecture.md); names live in ``spaces.params``."""

    name: str
    n_layers: int
    target_modules: tuple[str, ...]
    layer_alphas: tuple[float, ...] | None

    @abstractmethod
    def sample(self, trial: Any) -> MoLoRAConfig:
        """Define-by-run: suggest this space's flat params on ``trial`` and build the config."""

    @abstractmethod
    def encode(self, config: MoLoRAConfig) -> dict[str, Any] | None:
        """Candidate params for ``config`` from its structure, or None; ``params_for`` checks them."""

    @abstractmethod
    def size(self) -> int:
        """Distinct choices; an upper bound on distinct configs (clamped top_k and ladders may coincide)."""

    @abstractmethod
    def describe(self) -> str:
        """Human-readable summary of the grids, groups and routers."""

    def params_for(self, config: MoLoRAConfig) -> dict[str, Any] | None:
        """Params that make ``sample`` rebuild ``config`` exactly (only suggested names), or None.

        The candidate from ``encode`` is replayed through ``sample`` so that fields it does not look at
        (lora_alpha, targets, disabled layers) can never make an enqueued seed differ from its config.
        """
        params = self.encode(config)
        if params is None:
            return None
        trial = FixedTrial(params)
        return params if self.sample(trial) == config and trial.params == params else None

    def seeds(self) -> list[Seed]:
        """The rule-based seeds (``spaces.seeds.SEED_NAMES`` order) that this space can express."""
        out = []
        for name in seed_names(n_layers=self.n_layers, layer_alphas=self.layer_alphas):
            config = seed_config(name, n_layers=self.n_layers, layer_alphas=self.layer_alphas,
                                 target_modules=self.target_modules)
            params = self.params_for(config)
            if params is not None:
                out.append(Seed(name=name, params=params))
        return out


def format_grid(grid: Sequence[Any]) -> str:
    return "{" + ", ".join(str(v) for v in grid) + "}"


def format_size(n: int) -> str:
    """Exact below a million, else mantissa and exponent (ints past float range included)."""
    digits = str(n)
    return digits if n < 10**6 else f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"
