"""The short fine-tune: AdamW over the adapters (own lr for routers), LM loss on the answer tokens
plus the routers' weighted load-balancing loss, gradient accumulation and clipping, seeded data order
in length-grouped batches (little padding).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from hilo_core import aux_loss, molora_modules

from .checkpoint import TrainState
from .fidelity import Fidelity
from .sequences import EncodedExample, answer_loss


class TrialFailed(RuntimeError):
    """Training could not go on (non-finite loss or gradients); ``reason`` says why. The model is restored."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float  # time in training steps only; on_step callbacks are not counted
    tokens: int  # real (unpadded) tokens seen
    final_loss: float  # mean answer loss over the last (up to) 10 steps
    state: TrainState | None = None  # where training stopped (to continue it later), when asked for


def optimizer_groups(model: nn.Module, fidelity: Fidelity) -> list[dict]:
    """Experts at ``lr``, routers (``router.*`` in each ``adapter_params()``) at ``router_lr``."""
    experts, routers = [], []
    for _, module in molora_modules(model):
        for name, param in module.adapter_params().items():
            (routers if name.startswith("router.") else experts).append(param)
    if not experts:
        raise ValueError("model has no MoLoRA adapters to train: call hilo_core.inject first")
    groups = [{"params": experts, "lr": fidelity.lr}]
    if routers:
        groups.append({"params": routers, "lr": fidelity.router_lr})
    return groups


GROUP_BATCHES = 8  # batches per length group: sorting within 8 batches' worth of examples keeps mixing


def length_batches(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless seeded batches of indices whose examples have similar lengths (little padding).

    Each epoch is a fresh permutation cut into groups of ``GROUP_BATCHES * batch_size``; a group is sorted
    by length and cut into batches, and the epoch's batches are shuffled (HF's ``LengthGroupedSampler``
    idea). Every index appears exactly once per epoch; only an epoch's last group may leave one batch
    smaller than ``batch_size``.
    """
    generator = torch.Generator().manual_seed(seed)
    group = GROUP_BATCHES * batch_size
    while True:
        order = torch.randperm(len(lengths), generator=generator).tolist()
        batches = []
        for g in range(0, len(order), group):
            members = sorted(order[g:g + group], key=lambda i: lengths[i])  # stable: ties keep the seeded order
            batches += [members[b:b + batch_size] for b in range(0, len(members), batch_size)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[b]


def train(model: nn.Module, examples: Sequence[EncodedExample], fidelity: Fidelity, *, seed: int, pad_id: int,
          device: torch.device, on_step: Callable[[int], None] | None = None, resume: TrainState | None = None,
          keep_state: bool = False, variants: Callable[[int], Sequence[Callable[[], None]]] | None = None
          ) -> TrainResult:
    """Train the injected adapters up to ``fidelity.steps``; ``on_step(step)`` runs every ``eval_every``.

    ``resume`` continues a paused run (its adapters already loaded into ``model``) from ``resume.step``:
    optimiser moments, dropout's RNG and the data stream go on where they stopped, so k steps + resume to n
    equals n steps uninterrupted, bit for bit on the CPU. ``keep_state`` returns the state to pause here.
    ``variants(step)`` (super-adapter training, ``objectives.supernet``) lists set-ups, each run before its own
    forward and backward of every micro-batch of that step; their losses are averaged into one optimiser step
    (``TrainResult.tokens`` then counts each forward's tokens).

    Raises:
        TrialFailed: a non-finite loss or gradient norm.
    """
    if not examples:
        raise ValueError("train needs at least one example")
    start = resume.step if resume is not None else 0
    if start > fidelity.steps:
        raise ValueError(f"cannot continue a run paused at step {start} to fewer steps ({fidelity.steps})")
    optimizer = torch.optim.AdamW(optimizer_groups(model, fidelity), weight_decay=fidelity.weight_decay)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    batches = length_batches([len(e.sequence(e.answer)) for e in examples], fidelity.batch_size, seed)
    seconds, tokens, recent = 0.0, 0, []
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        torch.set_rng_state(resume.rng)
        for _ in range(start * fidelity.grad_accum):  # the batch stream depends only on the seed
            next(batches)
        seconds, tokens, recent = resume.seconds, resume.tokens, list(resume.recent)
    model.train()
    for step in range(start + 1, fidelity.steps + 1):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        setups = (None,) if variants is None else tuple(variants(step))
        forwards = fidelity.grad_accum * len(setups)
        for _ in range(fidelity.grad_accum):
            batch = [examples[i] for i in next(batches)]
            for setup in setups:
                if setup is not None:
                    setup()
                lm_loss, n_tokens = answer_loss(model, batch, pad_id=pad_id, device=device)
                loss = lm_loss + fidelity.aux_weight * aux_loss(model).to(lm_loss.device)
                if not torch.isfinite(loss):
                    raise TrialFailed(f"loss is {loss.item()} at step {step} (lm {lm_loss.item():.4g}); "
                                      f"lower lr ({fidelity.lr}) or router_lr ({fidelity.router_lr})")
                (loss / forwards).backward()
                step_loss += lm_loss.item() / forwards
                tokens += n_tokens
        if fidelity.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, fidelity.max_grad_norm)
            if not torch.isfinite(norm):
                raise TrialFailed(f"gradient norm is {norm.item()} at step {step}")
        optimizer.step()
        seconds += time.perf_counter() - started
        recent = (recent + [step_loss])[-10:]
        if on_step is not None and fidelity.eval_every and step % fidelity.eval_every == 0:
            on_step(step)
            model.train()
    if not all(bool(torch.isfinite(p).all()) for p in params):
        raise TrialFailed(f"adapter weights became non-finite by step {fidelity.steps}")
    state = TrainState(step=fidelity.steps, optimizer=optimizer.state_dict(), rng=torch.get_rng_state(),
                       recent=recent, tokens=tokens, seconds=seconds) if keep_state else None
    return TrainResult(steps=fidelity.steps, seconds=seconds, tokens=tokens,
                       final_loss=sum(recent) / len(recent) if recent else math.nan, state=state)
