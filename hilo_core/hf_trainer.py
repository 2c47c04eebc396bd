"""Train an injected config with your own ``transformers.Trainer`` (or TRL's ``SFTTrainer``, a subclass).

``inject(model, config)``, then pass ``MoLoRACallback(aux_weight=...)`` in ``callbacks=[...]``. While the
model trains, the callback adds ``aux_weight * aux_loss(model)`` (the routers' load-balancing loss) to the
loss the model's forward returns, as transformers' Mixtral adds ``router_aux_loss_coef * aux_loss``;
it logs the mean aux loss as ``aux_loss`` and writes ``save_adapters`` output to ``checkpoint-<step>/hilo_adapters``
whenever the Trainer saves a checkpoint. Evaluation forwards (``model.eval()``) get no aux term.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .accounting import aux_loss
from .inject import injected_config
from .io import save_adapters

ADAPTER_DIR = "hilo_adapters"


class MoLoRACallback(TrainerCallback):
    """Router load-balancing loss added to the training loss, and hilo adapters saved with every checkpoint."""

    def __init__(self, *, aux_weight: float = 0.01) -> None:
        if not (isinstance(aux_weight, (int, float)) and not isinstance(aux_weight, bool)
                and math.isfinite(aux_weight) and aux_weight >= 0):
            raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
        self.aux_weight = float(aux_weight)
        self._hook = None
        self._aux_sum, self._aux_count = 0.0, 0

    def _add_aux_loss(self, module: nn.Module, args, output):
        """Forward hook on the model: ``loss += aux_weight * aux_loss`` on training forwards that have a loss."""
        loss = getattr(output, "loss", None)
        if not module.training or loss is None:
            return output
        aux = aux_loss(module).to(loss.device, loss.dtype)
        self._aux_sum += float(aux.detach())
        self._aux_count += 1
        output.loss = loss + self.aux_weight * aux
        return output

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None or injected_config(unwrap(model)) is None:
            raise ValueError("MoLoRACallback needs a model with MoLoRA adapters: call hilo_core.inject(model, config) "
                             "before building the Trainer")
        self._hook = model.register_forward_hook(self._add_aux_loss)

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
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / ADAPTER_DIR
            save_adapters(unwrap(model), folder)


def checkpoint_adapters(output_dir: str | os.PathLike, step: int) -> Path:
    """Where ``MoLoRACallback`` saved the adapters of checkpoint ``step`` (for ``load_adapters``)."""
    return Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}" / ADAPTER_DIR


def unwrap(model: nn.Module) -> nn.Module:
    """The injected model inside a DDP/compile wrapper (what ``save_adapters`` needs)."""
    while not hasattr(model, "hilo_config") and hasattr(model, "module"):
        model = model.module
    return model

