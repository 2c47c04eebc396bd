"""Per-question records of one evaluation: right or wrong, and the probability of the gold choice.

A study compares configs question by question (paired), so every completed trial keeps, for each question
of the study's one fixed validation set, whether it was answered right and the gold choice's probability
(softmax over the choices' mean token log-probs). Stored as one compact text attribute per trial
(bit-packed hits + float32 probabilities, base64: ~5.5 kB per 1000 questions), which any Optuna storage
holds and every node of a cluster reads without a shared file system.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

_VERSION = "q1"
SIGNALS = ("accuracy", "score", "loss")  # accuracy-side objectives that per-question records give
RECORDS_ATTR = "val_records"  # trial user attribute: QuestionRecords.encode() of the validation questions
TEST_RECORDS_ATTR = "test_records"  # the same for test questions (confirmation runs only)


@dataclass(frozen=True)
class QuestionRecords:
    """``correct[i]`` and ``gold_prob[i]`` for question ``i`` of the set named by ``fingerprint``."""

    correct: np.ndarray  # (questions,) bool
    gold_prob: np.ndarray  # (questions,) float32
    fingerprint: str

    def __post_init__(self) -> None:
        if self.correct.shape != self.gold_prob.shape or self.correct.ndim != 1:
            raise ValueError(f"QuestionRecords: correct {self.correct.shape} and gold_prob {self.gold_prob.shape} "
                             "must be 1-D and of one length")

    @classmethod
    def from_scores(cls, scores: Sequence[Sequence[float]], answers: Sequence[int], fingerprint: str
                    ) -> "QuestionRecords":
        """From per-choice mean log-probs: the argmax (ties to the first choice) and the softmax of the gold."""
        correct, gold = [], []
        for s, answer in zip(scores, answers):
            s = np.asarray(s, dtype=np.float64)
            correct.append(int(np.argmax(s)) == answer)
            z = np.exp(s - s.max())
            gold.append(z[answer] / z.sum())
        return cls(np.asarray(correct, dtype=bool), np.asarray(gold, dtype=np.float32), fingerprint)

    def __len__(self) -> int:
        return int(self.correct.size)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())

    @property
    def score(self) -> float:
        """Mean probability of the gold choice: accuracy's smooth, lower-variance sibling."""
        return float(self.gold_prob.astype(np.float64).mean())

    @property
    def loss(self) -> float:
        """Mean answer NLL, -log p(gold) (probabilities floored at 1e-12)."""
        return float(-np.log(np.maximum(self.gold_prob.astype(np.float64), 1e-12)).mean())

    def values(self, signal: str) -> np.ndarray:
        """Per-question values of ``signal``, higher is better (so ``loss`` comes back negated)."""
        if signal == "accuracy":
            return self.correct.astype(np.float64)
        if signal == "score":
            return self.gold_prob.astype(np.float64)
        if signal == "loss":
            return np.log(np.maximum(self.gold_prob.astype(np.float64), 1e-12))
        raise ValueError(f"signal must be one of {list(SIGNALS)}, got {signal!r}")

    def encode(self) -> str:
        """``q1:<fingerprint>:<n>:<packed hits>:<float32 probs>`` (base64), the stored form."""
        hits = base64.b64encode(np.packbits(self.correct).tobytes()).decode()
        probs = base64.b64encode(self.gold_prob.astype("<f4").tobytes()).decode()
        return f"{_VERSION}:{self.fingerprint}:{len(self)}:{hits}:{probs}"

    @classmethod
    def decode(cls, text: str) -> "QuestionRecords":
        parts = text.split(":")
        if len(parts) != 5 or parts[0] != _VERSION:
            raise ValueError(f"question records: expected '{_VERSION}:fingerprint:n:hits:probs', got {text[:40]!r}...")
        _, fingerprint, n, hits, probs = parts
        n = int(n)
        correct = np.unpackbits(np.frombuffer(base64.b64decode(hits), dtype=np.uint8))[:n].astype(bool)
        gold = np.frombuffer(base64.b64decode(probs), dtype="<f4").astype(np.float32)
        if gold.size != n or correct.size != n:
            raise ValueError(f"question records: {n} questions announced, {correct.size} hits and {gold.size} "
                             "probabilities stored")
        return cls(correct, gold, fingerprint)


def question_fingerprint(items: Sequence[tuple[Sequence[int], Sequence[Sequence[int]], int]]) -> str:
    """Short hash of a question set (prompt ids, choice ids, answer per question), in order.

    Two records compare only when their fingerprints match: same questions, same order, same tokenisation.
    """
    h = hashlib.sha256()
    for prompt, choices, answer in items:
        h.update(repr((tuple(prompt), tuple(tuple(c) for c in choices), int(answer))).encode())
    return h.hexdigest()[:16]


def stored_records(attrs: Mapping[str, Any], key: str = RECORDS_ATTR) -> QuestionRecords | None:
    """The records a trial stored under ``key`` (its user attributes), if any."""
    text = attrs.get(key)
    return QuestionRecords.decode(text) if text else None
