"""One-shot evaluation, part 1: train one elastic super-adapter on a task, then score sub-configs without training.

Each step's sub-configs come from ``sampler(rng)`` with ``rng = random.Random(f"{seed}:{step}")``, a function of
the seed and the step only, so a resumed run draws what an uninterrupted one would. Every sub-config gets its
own forward and backward on the step's batches (answer loss plus the balance loss over its active experts),
gradients averaged into one AdamW step (``objectives.train``). ``sandwich`` is BigNAS' rule (largest, smallest
and random sub-configs every step, as in Once-for-All); ``uniform`` draws only random ones. Scores carry the
same per-question records, on the same validation questions, as ``evaluate``'s.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from hilo_core import MoLoRAConfig, config_trainable, count_active, eject, module_shapes
from hilo_core.elastic import inject_elastic, set_subconfig
from hilo_core.models import DEFAULT_MODEL

from .checkpoint import TrainState, load_adapter_state, load_checkpoint, read_checkpoint, save_checkpoint
from .evaluation import _activity_batch, _peak_memory, base_model, score_questions
from .fidelity import Fidelity
from .metrics import Metrics
from .registry import get_task
from .sequences import encode
from .task import Task
from .train import train

Draw = Callable[[random.Random], MoLoRAConfig] | Sequence[MoLoRAConfig]
Sampler = Callable[[random.Random], Sequence[MoLoRAConfig]]
_OPEN: dict[str, tuple[Path, int]] = {}  # model name -> (checkpoint, its step) loaded by loaded_supernet


def _drawer(draw: Draw) -> Callable[[random.Random], MoLoRAConfig]:
    if callable(draw):
        return draw
    configs = tuple(draw)
    if not configs or not all(isinstance(c, MoLoRAConfig) for c in configs):
        raise ValueError(f"draw must be a function(rng) -> MoLoRAConfig or a non-empty list of MoLoRAConfigs, "
                         f"got {draw!r:.80}")
    return lambda rng: rng.choice(configs)


def sandwich(largest: MoLoRAConfig, smallest: MoLoRAConfig, draw: Draw, *, n_random: int = 2) -> Sampler:
    """BigNAS' sandwich rule: each step trains ``largest``, ``smallest`` and ``n_random`` configs from ``draw``."""
    if not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"n_random must be an integer >= 0, got {n_random!r}")
    pick = _drawer(draw)
    return lambda rng: [largest, smallest] + [pick(rng) for _ in range(n_random)]


def uniform(draw: Draw, *, n: int = 1) -> Sampler:
    """``n`` sub-configs from ``draw`` per step (LoNAS' random elastic ranks, with expert counts)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    pick = _drawer(draw)
    return lambda rng: [pick(rng) for _ in range(n)]


def _run_key(maxima: MoLoRAConfig) -> str:
    """What a super-adapter checkpoint is of (its layout), so no standalone run's checkpoint is read as one."""
    return json.dumps({"supernet": maxima.to_dict()})


@dataclass(frozen=True)
class SupernetResult:
    steps: int
    seconds: float  # time in training steps, over every segment of a resumed run
    tokens: int  # real tokens of every forward (one per sub-config and micro-batch)
    final_loss: float  # mean answer loss over the last (up to) 10 steps, averaged over their sub-configs
    checkpoint: Path


def train_supernet(maxima: MoLoRAConfig, task: Task | str, fidelity: Fidelity, *, sampler: Sampler,
                   save_to: str | Path, seed: int = 0, model: str = DEFAULT_MODEL, checkpoint_every: int = 0,
                   resume_from: str | Path | None = None, progress: bool = False) -> SupernetResult:
    """Train an elastic super-adapter of layout ``maxima`` on ``task`` for ``fidelity.steps`` steps.

    Args:
        maxima: per layer ``n_experts`` is the super-adapter's ``n_max`` and ``max(ranks)`` its ``r_max``.
        sampler: ``sampler(rng) -> [MoLoRAConfig, ...]``, the sub-configs of one step (``sandwich``,
            ``uniform``); each must fit ``maxima``. A resumed run needs the same sampler (it is not stored).
        save_to: the checkpoint (adapters, AdamW state, RNG state, step), written every ``checkpoint_every``
            steps (0: only at the end) by a rename, so a killed run leaves the last whole one.
        resume_from: a checkpoint of this layout and seed: training goes on from its step, bit for bit on the
            CPU as if it had not stopped (its file may be ``save_to``).
        progress: a tqdm bar over the steps (on stderr).

    Raises:
        ValueError: a checkpoint of another layout or seed, or a sub-config that does not fit ``maxima``.
        TrialFailed: a non-finite loss or gradient norm. The base model is restored in every case.
    """
    if not isinstance(maxima, MoLoRAConfig):
        raise TypeError(f"maxima must be a MoLoRAConfig, got {type(maxima).__name__}")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be an integer >= 0, got {checkpoint_every!r}")
    task = get_task(task)
    base, tokenizer = base_model(model)
    device = next(base.parameters()).device
    train_set = encode(tokenizer, task.train, max_length=fidelity.max_length)
    key, save_to = _run_key(maxima), Path(save_to)
    paused = load_checkpoint(resume_from, config_json=key, seed=seed) if resume_from else None
    state: TrainState | None = paused[1] if paused else None
    start = state.step if state else 0
    every = checkpoint_every or fidelity.steps
    stops = list(range(start + every, fidelity.steps, every)) + [fidelity.steps]

    def variants(step: int) -> list[Callable[[], None]]:
        configs = sampler(random.Random(f"{seed}:{step}"))
        if not configs:
            raise ValueError(f"sampler drew no sub-config for step {step}")
        return [functools.partial(set_subconfig, base, c) for c in configs]

    torch.manual_seed(seed)  # super-adapter init and dropout draw from the global generator
    inject_elastic(base, maxima)
    try:
        if paused is not None:
            load_adapter_state(base, paused[0])
        with tqdm(total=fidelity.steps, initial=start, desc="super-adapter", unit="step",
                  disable=not progress) as bar:
            for stop in stops:  # one segment per checkpoint: each continues the last as a resumed run does
                result = train(base, train_set, replace(fidelity, steps=stop, eval_every=1), seed=seed,
                               pad_id=tokenizer.pad_token_id, device=device, on_step=lambda _: bar.update(),
                               resume=state, keep_state=True, variants=variants)
                state = result.state
                partial = save_to.with_name(save_to.name + ".partial")
                save_checkpoint(partial, base, state, config_json=key, seed=seed)
                os.replace(partial, save_to)
    finally:
        eject(base)
        base.eval()
    return SupernetResult(steps=result.steps, seconds=result.seconds, tokens=result.tokens,
                          final_loss=result.final_loss, checkpoint=save_to)


@contextmanager
def loaded_supernet(checkpoint: str | Path, *, model: str = DEFAULT_MODEL) -> Iterator[MoLoRAConfig]:
    """The shared base model holds ``checkpoint``'s super-adapter while open (``score_subconfig`` then loads
    nothing); it is ejected on exit. Yields the super-adapter's layout.

    Raises:
        ValueError: the checkpoint is of a standalone run, not of ``train_supernet``.
    """
    path = Path(checkpoint).resolve()
    run, _, adapters, state = read_checkpoint(path)
    layout = json.loads(run)
    if not isinstance(layout, dict) or set(layout) != {"supernet"}:
        raise ValueError(f"checkpoint {checkpoint} is of a standalone run, not of a super-adapter (train_supernet)")
    maxima = MoLoRAConfig.from_dict(layout["supernet"])
    base, _ = base_model(model)
    inject_elastic(base, maxima)
    try:
        load_adapter_state(base, adapters)
        _OPEN[model] = (path, state.step)
        yield maxima
    finally:
        _OPEN.pop(model, None)
        eject(base)
        base.eval()


def score_subconfig(config: MoLoRAConfig, task: Task | str, fidelity: Fidelity, *, checkpoint: str | Path,
                    model: str = DEFAULT_MODEL) -> Metrics:
    """Score ``config`` inside a trained super-adapter on ``evaluate``'s validation questions, training nothing.

    ``records`` are per question as ``evaluate``'s (same questions, same fingerprint, so they pair with
    standalone trials); ``trainable_params`` and ``active_params`` are those of ``config`` trained alone,
    ``steps`` the super-adapter's, ``train_seconds`` 0. No test question is scored. Inside ``loaded_supernet``
    for this checkpoint nothing is loaded; otherwise the super-adapter is loaded for this call and ejected.

    Raises:
        ValueError: ``config`` does not fit the super-adapter (one line naming layer, field, value, allowed).
    """
    path = Path(checkpoint).resolve()
    if _OPEN.get(model, (None, 0))[0] != path:
        with loaded_supernet(path, model=model):
            return score_subconfig(config, task, fidelity, checkpoint=path, model=model)
    task = get_task(task)
    base, tokenizer = base_model(model)
    device = next(base.parameters()).device
    val_set = encode(tokenizer, task.validation[:fidelity.max_eval_examples], max_length=fidelity.max_length)
    set_subconfig(base, config)
    started = time.perf_counter()
    records = score_questions(base, val_set, pad_id=tokenizer.pad_token_id, device=device,
                              batch_rows=fidelity.eval_batch_size)
    eval_seconds = time.perf_counter() - started
    active = count_active(base, _activity_batch(val_set, fidelity.max_length, device))
    return Metrics(accuracy=records.accuracy, score=records.score, loss=records.loss,
                   trainable_params=config_trainable(config, module_shapes(base, config.target_modules)),
                   active_params=float(active), train_seconds=0.0, tokens_per_second=0.0,
                   peak_memory=_peak_memory(device), steps=_OPEN[model][1], eval_seconds=eval_seconds,
                   records=records)
