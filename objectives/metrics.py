"""What one evaluation returns, and the order and direction of the search objectives."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from .records import QuestionRecords

# The search's objectives, in order (Optuna ``directions`` and ``study.set_metric_names``).
# accuracy / score / loss are the accuracy-side signals (noisy; per-question records back them), the
# parameter counts are exact.
DIRECTIONS: dict[str, str] = {"accuracy": "maximize", "score": "maximize", "loss": "minimize",
                              "trainable": "minimize", "active": "minimize"}
PARAMETER_OBJECTIVES = ("trainable", "active")

_RECORD_FIELDS = ("records", "test_records")
_OBJECTIVE_FIELDS = {"accuracy": "accuracy", "score": "score", "loss": "loss", "trainable": "trainable_params",
                     "active": "active_params"}


@dataclass(frozen=True)
class Metrics:
    """Result of ``evaluate``: the objectives plus cost measurements.

    ``accuracy``, ``score`` (mean gold-choice probability) and ``loss`` (mean answer NLL) are on the
    validation split (what the search optimises and what ``on_eval`` reports); ``test_accuracy`` is on
    the test split, scored only when the fidelity asks for it (confirmation, never a search trial).
    ``records`` / ``test_records`` hold the per-question outcomes; they are stored apart from the
    metrics dict (``to_dict`` leaves them out). Timing fields vary between runs; every other field is
    identical for the same config, task and seed.
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
    score: float = math.nan
    loss: float = math.nan
    test_score: float | None = None
    records: QuestionRecords | None = field(default=None, compare=False, repr=False)
    test_records: QuestionRecords | None = field(default=None, compare=False, repr=False)

    def values(self, names: Iterable[str] | None = None) -> tuple[float, ...]:
        """Objective values by ``DIRECTIONS`` name (all of them, in order, when ``names`` is None)."""
        names = tuple(DIRECTIONS) if names is None else tuple(names)
        unknown = [n for n in names if n not in _OBJECTIVE_FIELDS]
        if unknown:
            raise ValueError(f"unknown objective names {unknown}; allowed: {list(DIRECTIONS)}")
        return tuple(float(getattr(self, _OBJECTIVE_FIELDS[n])) for n in names)

    def to_dict(self) -> dict[str, Any]:
        """Every scalar field (the per-question records are stored on their own)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _RECORD_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Metrics":
        """Inverse of ``to_dict`` (reports read metrics back from trial user attrs)."""
        allowed = {f.name for f in fields(cls)} - set(_RECORD_FIELDS)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"Metrics: unknown keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)
