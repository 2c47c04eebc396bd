"""Token sequences: examples encoded once, and one left-padded forward pass that returns tail logits.

Left padding puts every sequence's continuation at the end, so only the last ``keep`` positions need
the vocabulary projection (``logits_to_keep``): on a 135M model with a 49k vocabulary that is a fifth of
the compute. Position ids are counted from each sequence's first real token, so padding changes nothing.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from .task import Example


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
    """
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


def tail_logits(model: nn.Module, sequences: Sequence[Sequence[int]], keep: int, *, pad_id: int,
                device: torch.device) -> torch.Tensor:
    """Float32 logits ``(rows, keep, vocab)`` at the last ``keep`` positions of left-padded sequences."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
        mask[i, length - len(seq):] = 1
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
              "position_ids": (mask.cumsum(-1) - 1).clamp(min=0).to(device)}
    if _takes_logits_to_keep(type(model)):
        inputs["logits_to_keep"] = keep
    with autocast(device):
        logits = model(**inputs).logits
    return logits[:, -keep:].float()


def answer_loss(model: nn.Module, batch: Sequence[EncodedExample], *, pad_id: int,
                device: torch.device) -> tuple[torch.Tensor, int]:
    """Mean next-token loss over the correct choices' tokens (the prompt is context, not target)."""
    answers = [e.choices[e.answer] for e in batch]
    keep = max(len(a) for a in answers) + 1
    logits = tail_logits(model, [e.sequence(e.answer) for e in batch], keep, pad_id=pad_id, device=device)
    # Position keep-1-len(a)+i predicts answer token i: targets right-aligned, the rest ignored.
    targets = torch.full((len(batch), keep - 1), -100, dtype=torch.long)
    for i, a in enumerate(answers):
        targets[i, keep - 1 - len(a):] = torch.tensor(a, dtype=torch.long)
    loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                       targets.reshape(-1).to(device), ignore_index=-100)
    return loss, sum(len(e.sequence(e.answer)) for e in batch)
