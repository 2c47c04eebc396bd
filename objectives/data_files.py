"""User data as a Task: JSONL/CSV files or a ``datasets.load_from_disk`` folder, checked row by row.

Classification rows hold ``text`` and ``label``; multiple-choice rows hold ``question``, ``choices``
and ``answer`` (a choice's text or its 0-based index). Every malformed row is reported with its
number before anything is trained (``TaskDataError``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .task import SPLITS, Example, Task, stratified_split

CLASSIFICATION_KEYS = ("text", "label")
MULTIPLE_CHOICE_KEYS = ("question", "choices", "answer")
_SHOWN_PROBLEMS = 20


class TaskDataError(ValueError):
    """Malformed rows in user data; ``problems`` lists ``(where, reason)`` for every bad row."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"  {where}: {reason}" for where, reason in problems[:_SHOWN_PROBLEMS]]
        if len(problems) > _SHOWN_PROBLEMS:
            lines.append(f"  ... and {len(problems) - _SHOWN_PROBLEMS} more")
        super().__init__(f"{source}: {len(problems)} malformed row(s), nothing was trained:\n" + "\n".join(lines))


def _kind_of(keys: Sequence[str], source: str) -> str:
    if "question" in keys or "choices" in keys:
        return "multiple_choice"
    if "text" in keys or "label" in keys:
        return "classification"
    raise TaskDataError(source, [("columns", f"expected {CLASSIFICATION_KEYS} (classification) or "
                                            f"{MULTIPLE_CHOICE_KEYS} (multiple choice), got {sorted(keys)}")])


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _choices_cell(value: Any) -> Any:
    """CSV cells hold choices as a JSON list or ``a|b|c``."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                return value
        return [c.strip() for c in text.split("|")] if text else []
    return value


def _multiple_choice_row(row: Mapping[str, Any]) -> tuple[str, tuple[str, ...], int]:
    """``(question, choices, answer index)`` or ValueError naming what is wrong."""
    question, choices, answer = row.get("question"), _choices_cell(row.get("choices")), row.get("answer")
    if _is_blank(question) or not isinstance(question, str):
        raise ValueError(f"empty or missing question, got {question!r}")
    if not isinstance(choices, (list, tuple)) or len(choices) < 2:
        raise ValueError(f"choices must be a list of at least two strings, got {choices!r}")
    if any(not isinstance(c, str) or not c.strip() for c in choices):
        raise ValueError(f"choices must be non-empty strings, got {list(choices)!r}")
    choices = tuple(c.strip() for c in choices)
    if len(set(choices)) != len(choices):
        raise ValueError(f"choices repeat, got {list(choices)!r}")
    if _is_blank(answer):
        raise ValueError("missing answer")
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise ValueError(f"answer index {answer} is out of range for {len(choices)} choices")
        return question.strip(), choices, answer
    if isinstance(answer, str) and answer.strip() in choices:
        return question.strip(), choices, choices.index(answer.strip())
    raise ValueError(f"answer {answer!r} is not among the choices {list(choices)!r}")


def _classification_row(row: Mapping[str, Any]) -> tuple[str, str]:
    text, label = row.get("text"), row.get("label")
    if _is_blank(text) or not isinstance(text, str):
        raise ValueError(f"empty or missing text, got {text!r}")
    if _is_blank(label) or isinstance(label, (list, dict, float)):
        raise ValueError(f"missing label or not a string/integer, got {label!r}")
    return text.strip(), str(label).strip()


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {lineno}", json.loads(line)
            except json.JSONDecodeError as err:
                yield f"line {lineno}", ValueError(f"invalid JSON: {err.msg}")


def _csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            yield f"line {reader.line_num}", row


def _build(name: str, source: str, rows: list[tuple[str, str, Any]], *, seed: int,
           fractions: Sequence[float], given_splits: bool) -> Task:
    """Check every row, then make examples; ``rows`` are ``(split or "", where, raw row)``."""
    problems: list[tuple[str, str]] = []
    good = [r for r in rows if isinstance(r[2], Mapping)]
    if not good:
        raise TaskDataError(source, [(w, str(r)) for _, w, r in rows] or [("file", "no rows")])
    kind = _kind_of(list(good[0][2].keys()), source)
    parsed: list[tuple[str, str, Any]] = []
    for split, where, raw in rows:
        try:
            if isinstance(raw, Exception):
                raise raw
            if not isinstance(raw, Mapping):
                raise ValueError(f"expected an object with keys, got {type(raw).__name__}")
            parsed.append((split, where, _multiple_choice_row(raw) if kind == "multiple_choice"
                           else _classification_row(raw)))
        except ValueError as err:
            problems.append((where, str(err)))
    if problems:
        raise TaskDataError(source, problems)

    if kind == "classification":
        labels = sorted({p[2][1] for p in parsed})
        if len(labels) < 2:
            raise TaskDataError(source, [("label", f"classification needs at least two labels, got {labels}")])
        verbalisers = tuple(f" {label}" for label in labels)
        examples = [Example(prompt=f"{text}\nLabel:", choices=verbalisers, answer=labels.index(label),
                            id=f"{source}:{where}") for _, where, (text, label) in parsed]
        strata = [e.answer for e in examples]
    else:
        examples = [Example(prompt=f"Question: {q}\nAnswer:", choices=tuple(f" {c}" for c in choices),
                            answer=answer, id=f"{source}:{where}") for _, where, (q, choices, answer) in parsed]
        strata = [0] * len(examples)
    if given_splits:
        parts = [[i for i, p in enumerate(parsed) if p[0] == split] for split in SPLITS]
    else:
        parts = stratified_split(strata, fractions, seed=seed)
    splits = [tuple(examples[i] for i in part) for part in parts]
    return Task(name=name, kind=kind, train=splits[0], validation=splits[1], test=splits[2],
                description=f"user data from {source} ({len(examples)} rows)")


def load_task_file(path: str | Path, *, seed: int = 0,
                   fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> Task:
    """A Task from a ``.jsonl``/``.csv`` file or a ``datasets.save_to_disk`` folder.

    Splits are carved by ``seed`` in ``fractions`` (stratified by label for classification), except a
    saved ``DatasetDict`` holding exactly train/validation/test, whose splits are kept as given.

    Raises:
        TaskDataError: malformed rows, each with its line (files) or split and row (folders).
        ValueError: an unsupported file type.
    """
    path = Path(path)
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        return _load_dataset_folder(path, name=name, seed=seed, fractions=fractions)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = [("", where, raw) for where, raw in _jsonl_rows(path)]
    elif suffix == ".csv":
        rows = [("", where, raw) for where, raw in _csv_rows(path)]
    else:
        raise ValueError(f"task file {path}: expected a .jsonl, .csv or a datasets folder, got {suffix!r}")
    return _build(name, path.name, rows, seed=seed, fractions=fractions, given_splits=False)


def _load_dataset_folder(path: Path, *, name: str, seed: int, fractions: Sequence[float]) -> Task:
    from datasets import Dataset, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise ValueError(f"task folder {path}: not a folder written by datasets' save_to_disk ({err})") from None
    parts = {"": loaded} if isinstance(loaded, Dataset) else dict(loaded)
    given = set(parts) == set(SPLITS)
    rows: list[tuple[str, str, Any]] = []
    for split, data in parts.items():
        names = getattr(data.features.get("label"), "names", None)  # ClassLabel ints -> their names
        for i, raw in enumerate(data, 1):
            if names is not None and isinstance(raw.get("label"), int) and 0 <= raw["label"] < len(names):
                raw = {**raw, "label": names[raw["label"]]}
            rows.append((split, f"{split + ' ' if split else ''}row {i}", raw))
    return _build(name, path.name, rows, seed=seed, fractions=fractions, given_splits=given)
