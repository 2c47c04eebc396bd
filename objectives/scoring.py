"""Accuracy by length-normalised log-likelihood: the choice with the highest mean token log-prob wins.

Classification is scored the same way over its label verbalisers (a one-token verbaliser's score is its
label-word log-prob). Each question is one packed row: its prompt once, then every multi-token choice's
tokens (but the last), each choice attending to the prompt and to itself only (a 4D attention mask, the
choice's position ids continuing the prompt's). The prompt end predicts every choice's first token, so
one-token choices cost nothing beyond the prompt; the LM head runs only where a choice token is read.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .sequences import EncodedExample, left_pad, selected_logits


class _Packed(NamedTuple):
    ids: tuple[int, ...]  # prompt, then each multi-token choice without its last token
    segment: tuple[int, ...]  # 0 for the prompt, j + 1 for choice j's tokens
    position: tuple[int, ...]  # position ids: choices continue from the prompt's end
    reads: tuple[tuple[int, int, int], ...]  # (choice, offset from the prompt's last token, token id)

    @property
    def tail(self) -> int:
        """Positions from the prompt's last token on: the only ones whose logits are read."""
        return len(self.ids) - self.segment.count(0) + 1


def pack(e: EncodedExample) -> _Packed:
    """The packed row of one question and where each choice token's log-prob is read in it."""
    ids, segment, position = list(e.prompt), [0] * len(e.prompt), list(range(len(e.prompt)))
    reads = []
    for j, choice in enumerate(e.choices):
        reads.append((j, 0, choice[0]))  # the prompt's last token predicts every choice's first token
        reads.extend((j, len(ids) - len(e.prompt) + 1 + k, token) for k, token in enumerate(choice[1:]))
        ids += choice[:-1]
        segment += [j + 1] * (len(choice) - 1)
        position += range(len(e.prompt), len(e.prompt) + len(choice) - 1)
    return _Packed(tuple(ids), tuple(segment), tuple(position), tuple(reads))


def packed_mask(segments: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Additive ``(rows, 1, length, length)`` mask: causal within the prompt, each choice sees prompt + itself.

    ``segments`` is ``(rows, length)``: -1 padding, 0 prompt, j + 1 choice j. Every position attends to
    itself, so no row of the softmax is empty (padding rows would otherwise turn into NaN).
    """
    length = segments.shape[1]
    q, k = segments[:, :, None], segments[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = causal & (k >= 0) & ((k == 0) | (k == q)) | torch.eye(length, dtype=torch.bool)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


@torch.inference_mode()
def choice_scores(model: nn.Module, encoded: Sequence[EncodedExample], *, pad_id: int, device: torch.device,
                  batch_rows: int = 32) -> list[list[float]]:
    """Mean log-probability of each choice's tokens given its prompt, per question."""
    sums = [[0.0] * len(e.choices) for e in encoded]
    packed = [pack(e) for e in encoded]
    order = sorted(range(len(encoded)), key=lambda q: len(packed[q].ids))  # similar lengths pad less
    dtype = getattr(model, "dtype", torch.float32)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_rows):
            questions = order[start:start + batch_rows]
            batch = [packed[q] for q in questions]
            ids, real = left_pad([p.ids for p in batch], pad_id)
            segments, _ = left_pad([p.segment for p in batch], -1)
            positions, _ = left_pad([p.position for p in batch], 0)
            select = torch.zeros_like(real)
            for i, p in enumerate(batch):
                select[i, ids.shape[1] - p.tail:] = True
            logp = selected_logits(model, ids, packed_mask(segments, dtype), positions, select,
                                   device=device).log_softmax(-1)
            row_start = 0  # selected positions come row by row
            wanted: list[tuple[int, int, int, int]] = []  # (question, choice, selected index, token)
            for q, p in zip(questions, batch):
                wanted += [(q, j, row_start + offset, token) for j, offset, token in p.reads]
                row_start += p.tail
            index = torch.tensor([w[2:] for w in wanted], device=logp.device)
            for (q, j, *_), value in zip(wanted, logp[index[:, 0], index[:, 1]].tolist()):
                sums[q][j] += value
    finally:
        model.train(was_training)
    return [[total / len(c) for total, c in zip(row, e.choices)] for row, e in zip(sums, encoded)]


def accuracy(model: nn.Module, encoded: Sequence[EncodedExample], *, pad_id: int, device: torch.device,
             batch_rows: int = 32) -> float:
    """Share of questions whose correct choice scores highest (ties go to the first choice)."""
    if not encoded:
        raise ValueError("accuracy needs at least one example")
    scores = choice_scores(model, encoded, pad_id=pad_id, device=device, batch_rows=batch_rows)
    hits = sum(max(range(len(s)), key=s.__getitem__) == e.answer for s, e in zip(scores, encoded))
    return hits / len(encoded)
