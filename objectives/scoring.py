"""Accuracy by length-normalised log-likelihood: the choice with the highest mean token log-prob wins.

Classification is scored the same way over its label verbalisers (a one-token verbaliser's score is its
label-word log-prob). Batched: all choices of many questions share padded forward passes, and every
one-token choice of a question is read from the same position, so it costs no sequence of its own.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from .sequences import EncodedExample, tail_logits


class _Row(NamedTuple):
    question: int
    choice: int | None  # the multi-token choice this row spells out; None for a prompt-only row
    anchor: bool  # the question's one-token choices are read from this row's prompt end
    ids: tuple[int, ...]
    n_cont: int


def _rows(encoded: Sequence[EncodedExample]) -> list[_Row]:
    rows = []
    for q, e in enumerate(encoded):
        multi = [j for j, c in enumerate(e.choices) if len(c) > 1]
        if multi:
            rows.extend(_Row(q, j, k == 0, e.sequence(j), len(e.choices[j])) for k, j in enumerate(multi))
        else:
            rows.append(_Row(q, None, True, e.prompt, 0))
    return rows


@torch.inference_mode()
def choice_scores(model: nn.Module, encoded: Sequence[EncodedExample], *, pad_id: int, device: torch.device,
                  batch_rows: int = 32) -> list[list[float]]:
    """Mean log-probability of each choice's tokens given its prompt, per question."""
    sums = [[0.0] * len(e.choices) for e in encoded]
    rows = sorted(_rows(encoded), key=lambda r: len(r.ids))  # similar lengths pad less; sort is stable
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_rows):
            batch = rows[start:start + batch_rows]
            keep = max(r.n_cont for r in batch) + 1
            # (question, choice, row, position, token) for every token log-prob the batch must deliver
            wanted: list[tuple[int, int, int, int, int]] = []
            for i, r in enumerate(batch):
                end_of_prompt = keep - 1 - r.n_cont  # this position predicts the first continuation token
                e = encoded[r.question]
                if r.choice is not None:
                    wanted += [(r.question, r.choice, i, end_of_prompt + k, t)
                               for k, t in enumerate(e.choices[r.choice])]
                if r.anchor:
                    wanted += [(r.question, j, i, end_of_prompt, c[0]) for j, c in enumerate(e.choices) if len(c) == 1]
            logp = tail_logits(model, [r.ids for r in batch], keep, pad_id=pad_id, device=device).log_softmax(-1)
            index = torch.tensor([w[2:] for w in wanted], device=logp.device)
            for (q, j, *_), value in zip(wanted, logp[index[:, 0], index[:, 1], index[:, 2]].tolist()):
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
