"""Fidelity: how much compute one evaluation gets (steps, batch, data sizes) and its optimiser settings.

Multi-fidelity search (successive halving, ASHA, pruners) varies these between rungs; everything that
changes the result of ``evaluate`` apart from the config, the task, the seed and the model lives here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _non_negative_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Fidelity:
    """Budget and optimiser settings of one ``evaluate`` call; validated on construction."""

    steps: int = field(default=40, metadata={"help": "optimiser steps (each of grad_accum micro-batches)"})
    batch_size: int = field(default=8, metadata={"help": "training examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches accumulated per optimiser step"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the experts (lora_A, lora_B)"})
    router_lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the routers"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decoupled weight decay, >= 0"})
    aux_weight: float = field(default=0.01, metadata={"help": "weight of the routers' load-balancing loss"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm; 0 turns it off"})
    eval_every: int = field(
        default=0, metadata={"help": "report validation accuracy to on_eval every this many steps; 0 = never"}
    )
    max_eval_examples: int = field(
        default=200, metadata={"help": "validation examples scored (intermediate and final accuracy)"}
    )
    max_test_examples: int = field(
        default=200, metadata={"help": "test examples scored for Metrics.test_accuracy; 0 skips the test split"}
    )
    eval_batch_size: int = field(default=32, metadata={"help": "sequences per forward pass when scoring"})
    max_length: int = field(
        default=128, metadata={"help": "tokens per sequence; longer prompts lose their first tokens"}
    )

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "max_eval_examples", "eval_batch_size", "max_length"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"Fidelity.{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("eval_every", "max_test_examples"):
            if not _non_negative_int(getattr(self, name)):
                raise ValueError(f"Fidelity.{name} must be a non-negative integer, got {getattr(self, name)!r}")
        for name in ("lr", "router_lr"):
            value = getattr(self, name)
            if not (_finite_number(value) and value > 0):
                raise ValueError(f"Fidelity.{name} must be a positive finite number, got {value!r}")
        for name in ("weight_decay", "aux_weight", "max_grad_norm"):
            value = getattr(self, name)
            if not (_finite_number(value) and value >= 0):
                raise ValueError(f"Fidelity.{name} must be a finite number >= 0, got {value!r}")
        if self.max_length < 2:
            raise ValueError(f"Fidelity.max_length must be at least 2 (a prompt and an answer token), "
                             f"got {self.max_length}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
