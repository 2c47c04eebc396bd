"""User data as a Task: JSONL/CSV files or a ``datasets.load_from_disk`` folder, checked row by row.

Classification rows hold ``text`` and ``label``; multiple-choice rows hold ``question``, ``choices``,
``answer`` (a choice's text, its 0-based integer index, or its label "A".. / "1"..) and optionally a
context (``context``, ``hint`` or ``passage``) put before the question; ``columns`` maps other field
names. Every malformed row is reported with its number before anything is trained (``TaskDataError``).
Rows repeating an earlier split's row are dropped from the later split, so nothing trained on is tested on.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .task import SPLITS, Example, Task, check_fractions, drop_repeats, stratified_carve, stratified_split

CLASSIFICATION_KEYS = ("text", "label")
MULTIPLE_CHOICE_KEYS = ("question", "choices", "answer")
CONTEXT_KEYS = ("context", "hint", "passage")  # the first one a row has goes before its question
COLUMN_ROLES = (*MULTIPLE_CHOICE_KEYS, "context", *CLASSIFICATION_KEYS)
SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}
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


def parse_task_columns(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """``question=stem,choices=options,answer=key`` (``--task-columns``) as ``{role: field name}``.

    Raises:
        ValueError: a piece without ``=``, an unknown role, an empty or repeated name.
    """
    if text is None or text == "":
        return {}
    pairs = list(text.items()) if isinstance(text, Mapping) else \
        [piece.split("=", 1) if "=" in piece else (piece, None) for piece in str(text).split(",")]
    columns: dict[str, str] = {}
    for role, name in pairs:
        role = str(role).strip()
        if role not in COLUMN_ROLES:
            raise ValueError(f"task columns: role must be one of {list(COLUMN_ROLES)}, got {role!r} in {text!r}")
        if name is None or not str(name).strip():
            raise ValueError(f"task columns: {role} needs a field name as {role}=NAME, got {text!r}")
        if role in columns:
            raise ValueError(f"task columns: {role} is given twice in {text!r}")
        columns[role] = str(name).strip()
    return columns


def _renamed(row: Mapping[str, Any], columns: Mapping[str, str]) -> dict[str, Any]:
    """The row with its mapped fields under their role names (``columns`` = ``{role: field name}``)."""
    out = {k: v for k, v in row.items() if k not in COLUMN_ROLES}
    for role in COLUMN_ROLES:
        name = columns.get(role, role)
        if name in row:
            out[role] = row[name]
    if "context" not in columns:
        out.pop("context", None)
        out["context"] = next((row[k] for k in CONTEXT_KEYS if not _is_blank(row.get(k))), None)
    return out


def _kind_of(keys: Sequence[str], source: str) -> str:
    if "question" in keys or "choices" in keys:
        return "multiple_choice"
    if "text" in keys or "label" in keys:
        return "classification"
    raise TaskDataError(source, [("columns", f"expected {CLASSIFICATION_KEYS} (classification) or "
                                            f"{MULTIPLE_CHOICE_KEYS} (multiple choice) or a mapping of"
                                            f" them (--task-columns), got {sorted(keys)}")])


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


def _answer_index(answer: Any, choices: tuple[str, ...]) -> int:
    """A choice's text, its 0-based integer index, or its label: "A".. or "1".. (1-based, as letters are).

    A string that is one choice's text and another choice's label is refused as ambiguous.
    """
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise ValueError(f"answer index {answer} is out of range for {len(choices)} choices")
        return answer
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a choice's text, index or label, got {answer!r}")
    text = answer.strip()
    by_text = choices.index(text) if text in choices else None
    label = _label_index(text)
    if label is not None and not 0 <= label < len(choices):
        if by_text is None:
            raise ValueError(f"answer label {answer!r} is out of range for {len(choices)} choices (labels A.. or"
                             " 1.. count from the first choice; 0-based indices are integers)")
        label = None
    if by_text is not None and label is not None and by_text != label:
        raise ValueError(f"answer {answer!r} is ambiguous: the text of choice {by_text + 1} and the label of"
                         f" choice {label + 1} in {list(choices)!r}")
    if by_text is None and label is None:
        raise ValueError(f"answer {answer!r} is not among the choices {list(choices)!r} nor a label A.. / 1..")
    return by_text if by_text is not None else label


def _label_index(text: str) -> int | None:
    """0-based index of a label "A".."Z" or "1".., None when ``text`` is no label."""
    if len(text) == 1 and "A" <= text <= "Z":
        return ord(text) - ord("A")
    if text.isascii() and text.isdigit():
        return int(text) - 1
    return None


def _multiple_choice_row(row: Mapping[str, Any]) -> tuple[str, tuple[str, ...], int]:
    """``(prompt text, choices, answer index)`` or ValueError naming what is wrong."""
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
    context = row.get("context")
    if context is not None and not isinstance(context, str):
        raise ValueError(f"context must be a string, got {context!r}")
    prompt = f"Question: {question.strip()}"
    if not _is_blank(context):
        prompt = f"Context: {context.strip()}\n{prompt}"
    return prompt, choices, _answer_index(answer, choices)


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
           fractions: Sequence[float], columns: Mapping[str, str]) -> Task:
    """Check every row, then make examples; ``rows`` are ``(split or "", where, raw row)``."""
    problems: list[tuple[str, str]] = []
    good = [r for r in rows if isinstance(r[2], Mapping)]
    if not good:
        raise TaskDataError(source, [(w, str(r)) for _, w, r in rows] or [("file", "no rows")])
    kind = _kind_of(list(_renamed(good[0][2], columns)), source)
    parsed: list[tuple[str, str, Any]] = []
    for split, where, raw in rows:
        try:
            if isinstance(raw, Exception):
                raise raw
            if not isinstance(raw, Mapping):
                raise ValueError(f"expected an object with keys, got {type(raw).__name__}")
            raw = _renamed(raw, columns)
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
        examples = [Example(prompt=f"{prompt}\nAnswer:", choices=tuple(f" {c}" for c in choices),
                            answer=answer, id=f"{source}:{where}") for _, where, (prompt, choices, answer) in parsed]
        strata = [0] * len(examples)
    parts, how = _split_indices([p[0] for p in parsed], strata, seed=seed, fractions=fractions)
    splits, dropped = drop_repeats([[examples[i] for i in part] for part in parts])
    emptied = [(split, f"all {n} rows repeat rows of an earlier split (same prompt and answer)")
               for split, kept, n in zip(SPLITS, splits, dropped) if n and not kept]
    if emptied:
        raise TaskDataError(source, emptied)
    repeats = ", ".join(f"{n} {split}" for split, n in zip(SPLITS, dropped) if n)
    description = f"user data from {source} ({len(examples)} rows; {how}" + \
        (f"; dropped {repeats} row(s) repeating an earlier split's row (same prompt and answer))" if repeats else ")")
    return Task(name=name, kind=kind, train=splits[0], validation=splits[1], test=splits[2], description=description)


def _split_indices(tags: list[str], strata: list[int], *, seed: int,
                   fractions: Sequence[float]) -> tuple[list[list[int]], str]:
    """Train/validation/test indices and how they were made: given splits are kept, a missing validation
    or test split is carved from train (a user's test rows are never trained on), anything else is cut."""
    f_train, f_val, f_test = check_fractions(fractions)
    given = set(tags)
    if "train" not in given or not given <= set(SPLITS):
        return [list(p) for p in stratified_split(strata, fractions, seed=seed)], f"splits cut by seed {seed}"
    by_split = {s: [i for i, t in enumerate(tags) if t == s] for s in SPLITS}
    missing = [s for s in SPLITS if not by_split[s]]
    train = by_split["train"]
    if len(missing) == 2:
        parts = stratified_split([strata[i] for i in train], fractions, seed=seed)
        by_split = {s: [train[j] for j in part] for s, part in zip(SPLITS, parts)}
    elif missing:
        share = (f_val if missing[0] == "validation" else f_test)
        kept, carved = stratified_carve([strata[i] for i in train], share / (f_train + share), seed=seed)
        by_split["train"], by_split[missing[0]] = [train[j] for j in kept], [train[j] for j in carved]
    kept = ", ".join(s for s in SPLITS if s not in missing)
    how = f"{' and '.join(missing)} carved from train by seed {seed}, {kept} as given" if missing else "splits as given"
    return [by_split[s] for s in SPLITS], how


def load_task_file(path: str | Path, *, seed: int = 0, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                   columns: str | Mapping[str, str] | None = None) -> Task:
    """A Task from a ``.jsonl``/``.csv`` file or a ``datasets.save_to_disk`` folder.

    Splits are carved by ``seed`` in ``fractions`` (stratified by label for classification). A saved
    ``DatasetDict`` keeps the splits it has (``dev``/``val`` read as validation) when one is ``train``, and
    carves only the missing ones from train. ``columns`` maps roles to field names (``parse_task_columns``).

    Raises:
        TaskDataError: malformed rows, each with its line (files) or split and row (folders).
        ValueError: an unsupported file type, a folder that is no dataset, bad ``columns``.
    """
    columns = parse_task_columns(columns)
    path = Path(path)
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        return _load_dataset_folder(path, name=name, seed=seed, fractions=fractions, columns=columns)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = [("", where, raw) for where, raw in _jsonl_rows(path)]
    elif suffix == ".csv":
        rows = [("", where, raw) for where, raw in _csv_rows(path)]
    else:
        raise ValueError(f"task file {path}: expected a .jsonl, .csv or a datasets folder, got {suffix!r}")
    return _build(name, path.name, rows, seed=seed, fractions=fractions, columns=columns)


def _load_dataset_folder(path: Path, *, name: str, seed: int, fractions: Sequence[float],
                         columns: Mapping[str, str]) -> Task:
    from datasets import Dataset, load_from_disk

    try:
        loaded = load_from_disk(str(path))
    except FileNotFoundError as err:
        raise ValueError(f"task folder {path}: not a folder written by datasets' save_to_disk ({err})") from None
    parts = {"": loaded} if isinstance(loaded, Dataset) else dict(loaded)
    label = columns.get("label", "label")
    rows: list[tuple[str, str, Any]] = []
    for split, data in parts.items():
        names = getattr(data.features.get(label), "names", None)  # ClassLabel ints -> their names
        for i, raw in enumerate(data, 1):
            if names is not None and isinstance(raw.get(label), int) and 0 <= raw[label] < len(names):
                raw = {**raw, label: names[raw[label]]}
            rows.append((SPLIT_ALIASES.get(split, split), f"{split + ' ' if split else ''}row {i}", raw))
    return _build(name, path.name, rows, seed=seed, fractions=fractions, columns=columns)
