"""Task: examples as prompt + choices + answer, with train/validation/test splits fixed by a seed.

Classification is multiple choice over the label verbalisers, so one scoring rule serves both kinds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Hashable, Sequence

TASK_KINDS = ("multiple_choice", "classification")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Example:
    """One question: the model continues ``prompt`` with each of ``choices``; ``choices[answer]`` is right."""

    prompt: str = field(metadata={"help": "text the choices continue; no trailing space"})
    choices: tuple[str, ...] = field(metadata={"help": "continuations, each with its leading space"})
    answer: int = field(metadata={"help": "index of the correct choice"})
    id: str = field(default="", metadata={"help": "where the example came from (file line, section)"})

    def __post_init__(self) -> None:
        if isinstance(self.choices, list):
            object.__setattr__(self, "choices", tuple(self.choices))
        where = f"example {self.id!r}: " if self.id else ""
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise ValueError(f"{where}prompt must be a non-empty string, got {self.prompt!r}")
        if len(self.choices) < 2 or not all(isinstance(c, str) and c.strip() for c in self.choices):
            raise ValueError(f"{where}choices must be at least two non-empty strings, got {self.choices!r}")
        if not (isinstance(self.answer, int) and 0 <= self.answer < len(self.choices)):
            raise ValueError(f"{where}answer must index choices (0..{len(self.choices) - 1}), got {self.answer!r}")


@dataclass(frozen=True, eq=False)
class Task:
    """A named task with disjoint splits; compared and hashed by identity (splits can be large)."""

    name: str
    kind: str
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_KINDS}, got {self.kind!r}")
        for split in SPLITS:
            examples = tuple(getattr(self, split))
            object.__setattr__(self, split, examples)
            if not examples:
                raise ValueError(f"task {self.name!r}: the {split} split is empty; give it more rows")
        ids = [e.id for split in SPLITS for e in getattr(self, split) if e.id]
        if len(ids) != len(set(ids)):
            raise ValueError(f"task {self.name!r}: an example id occurs twice across splits")

    def split(self, name: str) -> tuple[Example, ...]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(getattr(self, s))}" for s in SPLITS)
        return f"Task(name={self.name!r}, kind={self.kind!r}, {sizes})"


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``(train, validation, test)`` shares: three positive numbers summing to 1."""
    fractions = tuple(fractions)
    if len(fractions) != 3 or not all(isinstance(f, (int, float)) and f > 0 for f in fractions) \
            or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three positive shares (train, validation, test) summing to 1, "
                         f"got {fractions!r}")
    return fractions


def stratified_split(strata: Sequence[Hashable], fractions: Sequence[float], *,
                     seed: int) -> tuple[list[int], list[int], list[int]]:
    """Indices of ``strata`` cut into disjoint train/validation/test parts, each stratum in proportion.

    Deterministic for a seed: strata are visited in sorted order and shuffled by one ``random.Random``.
    """
    _, f_val, f_test = check_fractions(fractions)
    test, validation, train = _stratified_parts(strata, (f_test, f_val), seed=seed)
    return train, validation, test


def stratified_carve(strata: Sequence[Hashable], share: float, *, seed: int) -> tuple[list[int], list[int]]:
    """``(kept, carved)`` indices of ``strata``: ``share`` of each stratum carved off (a missing split)."""
    if not (isinstance(share, (int, float)) and 0 < share < 1):
        raise ValueError(f"share must lie in (0, 1), got {share!r}")
    carved, kept = _stratified_parts(strata, (share,), seed=seed)
    return kept, carved


def _stratified_parts(strata: Sequence[Hashable], shares: Sequence[float], *, seed: int) -> list[list[int]]:
    """``len(shares) + 1`` sorted index lists: ``round(n * share)`` of each stratum per share, the rest last."""
    rng = random.Random(seed)
    by_stratum: dict[Hashable, list[int]] = {}
    for i, key in enumerate(strata):
        by_stratum.setdefault(key, []).append(i)
    parts: list[list[int]] = [[] for _ in range(len(shares) + 1)]
    for key in sorted(by_stratum, key=repr):
        members = by_stratum[key]
        rng.shuffle(members)
        start = 0
        for part, share in zip(parts, shares):
            n = round(len(members) * share)
            part.extend(members[start:start + n])
            start += n
        parts[-1].extend(members[start:])
    for part in parts:
        part.sort()
    return parts


def drop_repeats(splits: Sequence[Sequence[Example]]) -> tuple[list[tuple[Example, ...]], list[int]]:
    """Each split without the examples an earlier split already holds (same prompt and right answer),
    so nothing trained on is validated or tested on; returns the splits and how many each lost."""
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for examples in splits:
        keys = [(e.prompt, e.choices[e.answer]) for e in examples]
        kept.append(tuple(e for e, k in zip(examples, keys) if k not in seen))
        dropped.append(len(examples) - len(kept[-1]))
        seen.update(keys)
    return kept, dropped
