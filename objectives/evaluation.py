"""evaluate(config, task, fidelity): inject, fine-tune briefly, score, count parameters, restore the model.

The base model is loaded once per process (keyed by name) and shared by every trial; adapters are
ejected in a ``finally`` so no trial's weights reach the next, whatever the trial raised.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from hilo_core import MoLoRAConfig, count_active, count_trainable, eject, inject
from hilo_core.models import DEFAULT_MODEL, load_model

from .checkpoint import load_adapter_state, load_checkpoint, save_checkpoint
from .fidelity import Fidelity
from .metrics import Metrics
from .registry import get_task
from .records import QuestionRecords, question_fingerprint
from .scoring import choice_scores
from .sequences import EncodedExample, encode
from .task import Task
from .train import train

_BASE_MODELS: dict[str, tuple[nn.Module, Any]] = {}


def base_model(name: str = DEFAULT_MODEL) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` loaded once per process: on the GPU when there is one, else the CPU."""
    if name not in _BASE_MODELS:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        _BASE_MODELS[name] = load_model(name, device=device)
    return _BASE_MODELS[name]


def _activity_batch(encoded: list[EncodedExample], max_length: int, device: torch.device) -> torch.Tensor:
    """Real evaluation tokens without padding (padding would skew data-dependent routers' counts):
    correct-answer sequences of validation examples joined into one row of up to ``max_length`` tokens."""
    ids: list[int] = []
    for e in encoded:
        ids.extend(e.sequence(e.answer))
        if len(ids) >= max_length:
            break
    return torch.tensor([ids[:max_length]], dtype=torch.long, device=device)


def _peak_memory(device: torch.device) -> int:
    """Bytes: peak GPU memory allocated during the trial, or the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def evaluate(config: MoLoRAConfig, task: Task | str, fidelity: Fidelity, *, seed: int = 0,
             model: str = DEFAULT_MODEL, on_eval: Callable[[int, float], None] | None = None,
             on_records: Callable[[int, QuestionRecords], None] | None = None,
             resume_from: str | Path | None = None, save_to: str | Path | None = None,
             warm_start: Mapping[str, torch.Tensor] | None = None) -> Metrics:
    """Fine-tune ``config``'s adapters on ``task`` for ``fidelity.steps`` and measure them.

    Args:
        config: the adapter layout; its layer count must match the model's.
        task: a Task, a built-in task name (``objectives.TASKS``) or a path to user data.
        fidelity: steps, batch sizes, learning rates and evaluation sizes.
        seed: seeds adapter init, dropout and data order; same inputs + seed -> same Metrics on the CPU
            (timings aside).
        model: ``default`` (embedded SmolLM2-135M), a local folder or an HF id.
        on_eval: called as ``on_eval(step, validation_accuracy)`` every ``fidelity.eval_every`` steps;
            it may raise (``optuna.TrialPruned``) to stop the trial.
        on_records: called as ``on_records(step, validation_records)`` at the same steps (and after the
            last step): the per-question outcomes of every intermediate fidelity of one run.
        resume_from: a checkpoint of this config and seed (``save_to`` of an earlier call): training goes on
            from its step to ``fidelity.steps`` instead of starting afresh (successive-halving promotion).
        save_to: write a checkpoint here after training, to continue the run later.
        warm_start: adapter weights to start from instead of the seed's init, keyed as
            ``hilo_core.export_subconfig`` gives a sub-config's (exactly this config's adapters).

    Returns:
        Metrics; ``accuracy``/``score``/``loss`` and per-question ``records`` on the validation split;
        ``test_accuracy``/``test_records`` on the test split when ``fidelity.max_test_examples`` > 0 (a
        search sets it to 0: only the confirmation stage looks at test questions).

    Raises:
        TrialFailed: non-finite loss or weights. Whatever ``on_eval`` raises is re-raised. In every case
            the adapters are ejected first and the base model is as it was.
        TaskDataError: malformed user data, before any model is loaded.
    """
    if not isinstance(config, MoLoRAConfig):
        raise TypeError(f"config must be a MoLoRAConfig, got {type(config).__name__}")
    if not isinstance(fidelity, Fidelity):
        raise TypeError(f"fidelity must be a Fidelity, got {type(fidelity).__name__}")
    if warm_start is not None and resume_from is not None:
        raise ValueError("warm_start and resume_from both set: a resumed run continues from its checkpoint's weights")
    task = get_task(task)
    base, tokenizer = base_model(model)
    device = next(base.parameters()).device
    pad_id = tokenizer.pad_token_id
    train_set = encode(tokenizer, task.train, max_length=fidelity.max_length)
    val_set = encode(tokenizer, task.validation[:fidelity.max_eval_examples], max_length=fidelity.max_length)
    test_set = encode(tokenizer, task.test[:fidelity.max_test_examples], max_length=fidelity.max_length)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    eval_seconds = 0.0
    last_eval: tuple[int, QuestionRecords] | None = None

    def score(encoded: list[EncodedExample]) -> QuestionRecords:
        nonlocal eval_seconds
        started = time.perf_counter()
        records = score_questions(base, encoded, pad_id=pad_id, device=device, batch_rows=fidelity.eval_batch_size)
        eval_seconds += time.perf_counter() - started
        return records

    def report(step: int) -> None:
        nonlocal last_eval
        last_eval = (step, score(val_set))
        if on_records is not None:
            on_records(*last_eval)
        if on_eval is not None:
            on_eval(step, last_eval[1].accuracy)

    paused = load_checkpoint(resume_from, config_json=config.to_json(), seed=seed) if resume_from else None
    torch.manual_seed(seed)  # adapter init and dropout draw from the global generator
    inject(base, config)
    try:
        if paused is not None or warm_start is not None:
            load_adapter_state(base, paused[0] if paused is not None else dict(warm_start))
        result = train(base, train_set, fidelity, seed=seed, pad_id=pad_id, device=device,
                       on_step=report if on_eval is not None or on_records is not None else None,
                       resume=paused[1] if paused else None, keep_state=save_to is not None)
        if save_to is not None:
            save_checkpoint(save_to, base, result.state, config_json=config.to_json(), seed=seed)
        if last_eval and last_eval[0] == result.steps:
            val = last_eval[1]
        else:
            val = score(val_set)
            if on_records is not None:
                on_records(result.steps, val)
        test = score(test_set) if test_set else None
        trainable = count_trainable(base)
        active = count_active(base, _activity_batch(val_set, fidelity.max_length, device))
    finally:
        eject(base)
        base.eval()
    seconds = result.seconds - (paused[1].seconds if paused else 0.0)  # this call's share of a paused run
    tokens = result.tokens - (paused[1].tokens if paused else 0)
    return Metrics(accuracy=val.accuracy, score=val.score, loss=val.loss, trainable_params=trainable,
                   active_params=float(active), train_seconds=seconds,
                   tokens_per_second=tokens / max(seconds, 1e-9), peak_memory=_peak_memory(device),
                   steps=result.steps, test_accuracy=test.accuracy if test else None,
                   test_score=test.score if test else None, eval_seconds=eval_seconds,
                   final_loss=result.final_loss, records=val, test_records=test)


def score_questions(model: nn.Module, encoded: list[EncodedExample], *, pad_id: int, device: torch.device,
                    batch_rows: int) -> QuestionRecords:
    """Per-question records of ``encoded`` under ``model`` as it is: the one scoring path of every evaluation."""
    scores = choice_scores(model, encoded, pad_id=pad_id, device=device, batch_rows=batch_rows)
    return QuestionRecords.from_scores(scores, [e.answer for e in encoded], question_set_fingerprint(encoded))


def question_set_fingerprint(encoded: list[EncodedExample]) -> str:
    """The fingerprint of a scored question set (see ``objectives.records.question_fingerprint``)."""
    return question_fingerprint([(e.prompt, e.choices, e.answer) for e in encoded])


def validation_fingerprint(task: Task | str, fidelity: Fidelity, model: str = DEFAULT_MODEL) -> str:
    """The fingerprint of the validation questions ``evaluate`` scores for this task, fidelity and model."""
    task = get_task(task)
    _, tokenizer = base_model(model)
    val = encode(tokenizer, task.validation[:fidelity.max_eval_examples], max_length=fidelity.max_length)
    return question_set_fingerprint(val)
