"""Token sequences: examples encoded once per process, and forward passes that project only needed positions.

Rows are left-padded, so every sequence's continuation sits at the end and ``logits_to_keep`` cuts the
hidden states to that tail; a hook on the LM head then keeps only the positions whose logits are used
(on a 135M model with a 49k vocabulary the head is a fifth of the forward's compute). Position ids count
from each sequence's first real token, so padding changes nothing.
"""

from __future__ import annotations

import functools
import inspect
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .task import Example

_CACHE_SIZE = 64  # encoded splits kept per process: a search touches a handful (train, validation, test)
_ENCODED: OrderedDict[tuple[int, int, tuple[Example, ...]], tuple[Any, tuple[EncodedExample, ...]]] = OrderedDict()


@dataclass(frozen=True)
class EncodedExample:
    """Token ids of an Example: the (possibly left-truncated) prompt and each choice's continuation."""

    prompt: tuple[int, ...]
    choices: tuple[tuple[int, ...], ...]
    answer: int

    def sequence(self, choice: int) -> tuple[int, ...]:
        return self.prompt + self.choices[choice]


def encode(tokenizer: Any, examples: Sequence[Example], *, max_length: int) -> list[EncodedExample]:
    """Tokenise prompts (with the tokenizer's special tokens) and choices (without) separately.

    A prompt too long for ``max_length`` with its longest choice loses its *first* tokens (the end holds
    the question's template). Raises ValueError when a choice is empty or alone exceeds ``max_length``.
    Results are cached per process, keyed by the tokenizer object, ``max_length`` and the examples' content,
    so every trial of a search reuses one encoding of each split.
    """
    examples = tuple(examples)
    key = (id(tokenizer), max_length, examples)
    hit = _ENCODED.get(key)
    if hit is not None and hit[0] is tokenizer:
        _ENCODED.move_to_end(key)
        return list(hit[1])
    encoded = _encode(tokenizer, examples, max_length=max_length)
    _ENCODED[key] = (tokenizer, tuple(encoded))
    if len(_ENCODED) > _CACHE_SIZE:
        _ENCODED.popitem(last=False)
    return encoded


def _encode(tokenizer: Any, examples: tuple[Example, ...], *, max_length: int) -> list[EncodedExample]:
    if not examples:
        return []
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    flat = tokenizer([c for e in examples for c in e.choices], add_special_tokens=False)["input_ids"]
    encoded, start = [], 0
    for e, prompt in zip(examples, prompts):
        choices = tuple(tuple(ids) for ids in flat[start:start + len(e.choices)])
        start += len(e.choices)
        longest = max(len(c) for c in choices)
        if min(len(c) for c in choices) == 0 or longest >= max_length:
            raise ValueError(f"example {e.id or e.prompt[:40]!r}: choices must tokenise to 1..{max_length - 1} "
                             f"tokens (max_length={max_length}), got {[len(c) for c in choices]}")
        encoded.append(EncodedExample(prompt=tuple(prompt[-(max_length - longest):]), choices=choices,
                                      answer=e.answer))
    return encoded


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on a GPU; a no-op on the CPU, where float32 keeps runs bit-for-bit repeatable."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@functools.lru_cache(maxsize=None)
def _takes_logits_to_keep(model_type: type) -> bool:
    return "logits_to_keep" in inspect.signature(model_type.forward).parameters


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, real)``: sequences right-aligned in a ``(rows, length)`` long tensor, and the bool real-token mask."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    real = torch.zeros((len(sequences), length), dtype=torch.bool)
    for i, seq in enumerate(sequences):
        ids[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
        real[i, length - len(seq):] = True
    return ids, real


@contextmanager
def _head_sees_only(model: nn.Module, select: torch.Tensor) -> Iterator[bool]:
    """While active, the LM head projects only the ``select``ed positions (flattened, row-major).

    Yields False when the model has no separate output head; the caller then indexes the full logits.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield False
        return

    def keep_selected(_module: nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        return (hidden[select[:, -hidden.shape[1]:].to(hidden.device)],) + tuple(args[1:])

    handle = head.register_forward_pre_hook(keep_selected)
    try:
        yield True
    finally:
        handle.remove()


def selected_logits(model: nn.Module, ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                    select: torch.Tensor, *, device: torch.device) -> torch.Tensor:
    """Float32 logits ``(n_selected, vocab)`` at ``select``'s True positions of ``(rows, length)`` inputs.

    ``attention_mask`` is the 2D real-token mask or a prepared 4D additive mask ``(rows, 1, length, length)``.
    Selected positions must all lie in the rows' tail (they do for left-padded continuations).
    """
    first = int(select.any(0).int().argmax())
    inputs = {"input_ids": ids.to(device), "attention_mask": attention_mask.to(device),
              "position_ids": position_ids.to(device), "use_cache": False}
    if _takes_logits_to_keep(type(model)):
        inputs["logits_to_keep"] = ids.shape[1] - first
    with _head_sees_only(model, select) as hooked, autocast(device):
        logits = model(**inputs).logits
    if not hooked:
        logits = logits[select[:, -logits.shape[1]:].to(logits.device)]
    return logits.float()


def answer_loss(model: nn.Module, batch: Sequence[EncodedExample], *, pad_id: int,
                device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over the correct choices' tokens (the prompt is context, not target)."""
    ids, real = left_pad([e.sequence(e.answer) for e in batch], pad_id)
    length = ids.shape[1]
    # Position length-1-len(a)+i predicts answer token i: only those positions reach the LM head.
    select = torch.zeros_like(real)
    targets = []
    for i, e in enumerate(batch):
        answer = e.choices[e.answer]
        select[i, length - 1 - len(answer):length - 1] = True
        targets.extend(answer)
    positions = (real.long().cumsum(-1) - 1).clamp(min=0)
    logits = selected_logits(model, ids, real.long(), positions, select, device=device)
    loss = nn.functional.cross_entropy(logits, torch.tensor(targets, dtype=torch.long, device=logits.device))
    return loss, int(real.sum())
