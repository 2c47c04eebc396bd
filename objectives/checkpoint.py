"""A paused training run: adapter weights, optimiser state, RNG state and position in the data stream.

Multi-fidelity search (successive halving) trains a config to a rung, pauses it, and continues the same run
later when it is promoted. ``TrainState`` holds everything ``train`` needs to go on *bit-for-bit* as if it had
never stopped: there is no LR schedule, the batch order is a function of the seed and the step, and dropout
draws from the global torch generator, whose state is saved with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hilo_core import molora_modules

FORMAT = 1  # bump when the saved layout changes; load refuses other versions


@dataclass
class TrainState:
    """Where a training run stopped: after ``step`` optimiser steps (of which ``seconds`` timed)."""

    step: int
    optimizer: dict[str, Any]
    rng: torch.Tensor  # torch.get_rng_state() after the last step: dropout's generator
    recent: list[float]  # the last (up to 10) step losses, for TrainResult.final_loss
    tokens: int
    seconds: float


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every MoLoRA module's ``adapter_params()`` by ``<module path>.<param name>``, detached copies."""
    return {f"{path}.{name}": p.detach().clone() for path, module in molora_modules(model)
            for name, p in module.adapter_params().items()}


def load_adapter_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (as ``adapter_state`` wrote it) into the injected adapters, which must match exactly.

    Raises:
        ValueError: a missing or extra key, or a shape mismatch (another config was injected).
    """
    params = {f"{path}.{name}": p for path, module in molora_modules(model)
              for name, p in module.adapter_params().items()}
    missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or extra:
        raise ValueError(f"checkpoint does not match the injected adapters: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    with torch.no_grad():
        for key, p in params.items():
            if p.shape != state[key].shape:
                raise ValueError(f"checkpoint {key}: shape {tuple(state[key].shape)}, adapter has {tuple(p.shape)}")
            p.copy_(state[key])


def save_checkpoint(path: str | Path, model: nn.Module, state: TrainState, *, config_json: str, seed: int) -> None:
    """Write the paused run (adapters + ``state``) to ``path`` with ``torch.save``; ``config_json`` and ``seed``
    are stored so a load can refuse to continue another config's or seed's run."""
    torch.save({"format": FORMAT, "config": config_json, "seed": seed, "adapters": adapter_state(model),
                "step": state.step, "optimizer": state.optimizer, "rng": state.rng, "recent": list(state.recent),
                "tokens": state.tokens, "seconds": state.seconds}, Path(path))


def load_checkpoint(path: str | Path, *, config_json: str, seed: int) -> tuple[dict[str, torch.Tensor], TrainState]:
    """``(adapter weights, TrainState)`` of a checkpoint written by ``save_checkpoint`` for this config and seed.

    Raises:
        ValueError: another format version, config or seed than asked for.
    """
    saved_config, saved_seed, adapters, state = read_checkpoint(path)
    if saved_config != config_json or saved_seed != seed:
        raise ValueError(f"checkpoint {path} is of another run (seed {saved_seed}, config differs: "
                         f"{saved_config != config_json}); asked for seed {seed}")
    return adapters, state


def read_checkpoint(path: str | Path) -> tuple[str, int, dict[str, torch.Tensor], TrainState]:
    """``(config_json, seed, adapter weights, TrainState)`` of any checkpoint ``save_checkpoint`` wrote.

    Raises:
        ValueError: another format version.
    """
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if data.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: format {data.get('format')!r}, this version reads {FORMAT}")
    state = TrainState(step=int(data["step"]), optimizer=data["optimizer"], rng=data["rng"],
                       recent=[float(x) for x in data["recent"]], tokens=int(data["tokens"]),
                       seconds=float(data["seconds"]))
    return data["config"], int(data["seed"]), data["adapters"], state
