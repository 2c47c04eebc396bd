"""Train an injected config with your own ``transformers.Trainer`` class (TRL's ``SFTTrainer`` too).

``inject(model, config)``, then build ``with_molora(YourTrainer)(..., aux_weight=0.01)``: the subclass adds
``aux_weight * aux_loss`` (the routers' load-balancing loss of the training forward) to whatever loss the
trainer computes, so it holds whether the loss comes from the model, a label smoother, ``compute_loss_func``
or TRL's fused LM head. Under gradient accumulation it counts as the mean over micro-batches, as
``objectives.train`` does. ``MoLoRACallback`` (added by the subclass; usable alone for the saving part) logs
the mean aux loss as ``aux_loss`` and writes ``save_adapters`` output to ``checkpoint-<step>/hilo_adapters``
whenever the Trainer saves a checkpoint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .accounting import aux_loss
from .inject import injected_config
from .io import save_adapters

ADAPTER_DIR = "hilo_adapters"


def _check_weight(aux_weight: float) -> float:
    if not (isinstance(aux_weight, (int, float)) and not isinstance(aux_weight, bool)
            and math.isfinite(aux_weight) and aux_weight >= 0):
        raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
    return float(aux_weight)


def unwrap(model: nn.Module) -> nn.Module:
    """The injected model inside DDP / compile wrappers (what ``save_adapters`` needs)."""
    while injected_config(model) is None and hasattr(model, "module"):
        model = model.module
    return model


class MoLoRACallback(TrainerCallback):
    """Records the routers' aux loss of each training forward, logs its mean, saves adapters at checkpoints."""

    def __init__(self) -> None:
        self._hook = None
        self.pending: torch.Tensor | None = None  # aux loss of the last training forward with gradients
        self._aux_sum, self._aux_count = 0.0, 0

    def _record(self, module: nn.Module, args, output) -> None:
        # A no-grad forward (TRL re-runs one for its metrics) must not replace the one the loss backpropagates.
        if module.training and torch.is_grad_enabled():
            self.pending = aux_loss(module)
            self._aux_sum += float(self.pending.detach())
            self._aux_count += 1

    def take(self) -> torch.Tensor | None:
        """The aux loss recorded since the last call (None when no training forward ran)."""
        aux, self.pending = self.pending, None
        return aux

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None or injected_config(unwrap(model)) is None:
            raise ValueError("the model has no MoLoRA adapters: call hilo_core.inject(model, config) before "
                             "building the Trainer")
        self._hook = model.register_forward_hook(self._record)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        """Add the mean aux loss since the last log to the logs and to ``state.log_history``."""
        if logs is None or not self._aux_count or "loss" not in logs:
            return
        mean = self._aux_sum / self._aux_count
        self._aux_sum, self._aux_count = 0.0, 0
        logs["aux_loss"] = mean
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1]["aux_loss"] = mean

    def on_save(self, args, state, control, model=None, **kwargs):
        if model is not None and state.is_world_process_zero:
            save_adapters(unwrap(model), checkpoint_adapters(args.output_dir, state.global_step))


def with_molora(trainer_class: type) -> type:
    """A subclass of ``trainer_class`` (``transformers.Trainer`` or one of its subclasses) taking ``aux_weight``.

    Its ``compute_loss`` is the parent's plus ``aux_weight * aux_loss``; a ``MoLoRACallback`` is added.
    """
    class MoLoRATrainer(trainer_class):
        def __init__(self, *args, aux_weight: float = 0.01, **kwargs):
            self.aux_weight = _check_weight(aux_weight)
            super().__init__(*args, **kwargs)
            self.molora = MoLoRACallback()
            self.add_callback(self.molora)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
            aux = self.molora.take()
            if aux is None or self.aux_weight == 0:
                return result
            loss, outputs = result if return_outputs else (result, None)
            # Trainer divides a per-micro-batch loss by the accumulation steps itself; a loss it considers
            # normalised over the whole accumulated batch it does not, so the aux mean is taken here.
            scaled = getattr(self, "loss_is_scaled_for_ga", None)
            if scaled is None:
                scaled = (getattr(self, "model_accepts_loss_kwargs", False) and num_items_in_batch is not None) \
                    or getattr(self, "compute_loss_func", None) is not None
            steps = getattr(self, "current_gradient_accumulation_steps", 1) if scaled else 1
            loss = loss + self.aux_weight * aux.to(loss.device, loss.dtype) / steps
            return (loss, outputs) if return_outputs else loss

    MoLoRATrainer.__name__ = MoLoRATrainer.__qualname__ = f"MoLoRA{trainer_class.__name__}"
    return MoLoRATrainer


def checkpoint_adapters(output_dir: str | os.PathLike, step: int) -> Path:
    """Where ``MoLoRACallback`` saves the adapters of checkpoint ``step`` (for ``load_adapters``)."""
    return Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}" / ADAPTER_DIR
