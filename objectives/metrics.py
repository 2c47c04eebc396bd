"""What one evaluation returns, and the order and direction of the search objectives."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

# The search's objectives, in order (Optuna ``directions`` and ``study.set_metric_names``).
DIRECTIONS: dict[str, str] = {"accuracy": "maximize", "trainable": "minimize", "active": "minimize"}

_OBJECTIVE_FIELDS = {"accuracy": "accuracy", "trainable": "trainable_params", "active": "active_params"}


@dataclass(frozen=True)
class Metrics:
    """Result of ``evaluate``: the objectives plus cost measurements.

    ``accuracy`` is on the validation split (what the search optimises and what ``on_eval`` reports, so
    pruners compare like with like); ``test_accuracy`` is on the test split, which nothing optimises.
    Timing fields vary between runs; every other field is identical for the same config, task and seed.
    """

    accuracy: float
    trainable_params: int
    active_params: float
    train_seconds: float
    tokens_per_second: float
    peak_memory: int
    steps: int
    test_accuracy: float | None = None
    eval_seconds: float = 0.0
    final_loss: float = math.nan

    def values(self, names: Iterable[str] | None = None) -> tuple[float, ...]:
        """Objective values by ``DIRECTIONS`` name (all of them, in order, when ``names`` is None)."""
        names = tuple(DIRECTIONS) if names is None else tuple(names)
        unknown = [n for n in names if n not in _OBJECTIVE_FIELDS]
        if unknown:
            raise ValueError(f"unknown objective names {unknown}; allowed: {list(DIRECTIONS)}")
        return tuple(float(getattr(self, _OBJECTIVE_FIELDS[n])) for n in names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Metrics":
        """Inverse of ``to_dict`` (reports read metrics back from trial user attrs)."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"Metrics: unknown keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)
