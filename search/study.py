"""Open, create and resume the Optuna study a search writes to (storage is a URL, SQLite by default).

Every finished trial is committed by Optuna's RDB storage before the next one starts. Running trials
beat a heartbeat; one whose heartbeat is GRACE_SECONDS old belongs to a killed process and is marked FAIL,
with the reason, by the next worker that looks (on resume, before each trial, and at the end of a run), so
a study never holds a trial that will never end.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

DEFAULT_OUT_ROOT = Path("reports") / "out"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS  # a trial whose heartbeat is older than this belongs to a dead process
STALE_REASON = (f"interrupted: its process stopped (killed, crashed or lost) during the trial; no heartbeat"
                f" for {GRACE_SECONDS} s")


class SearchInputError(ValueError):
    """Bad user input to a search (storage, study name, budget): the CLI prints it and exits with code 2."""


@dataclass(frozen=True)
class StudyLocation:
    """Where a study lives: its storage URL and the folder for everything else a run writes."""

    name: str
    storage: str
    out_dir: Path


def locate(study: str, storage: str | None = None, out_root: str | Path = DEFAULT_OUT_ROOT) -> StudyLocation:
    """Default storage is ``sqlite:///<out_root>/<study>/study.db``; any RDB URL may replace it."""
    if not study or any(c in study for c in "/\\") or study.startswith("."):
        raise SearchInputError(f"--study must be a plain name without path separators, got {study!r}")
    out_dir = Path(out_root) / study
    if storage is None:
        storage = f"sqlite:///{out_dir / 'study.db'}"
    scheme = storage.split(":", 1)[0].split("+", 1)[0]
    if "://" not in storage or scheme not in STORAGE_SCHEMES:
        raise SearchInputError(f"--storage must be an RDB URL with scheme {'/'.join(STORAGE_SCHEMES)}"
                               f" (e.g. sqlite:///study.db, postgresql://user@host/db), got {storage!r}")
    return StudyLocation(name=study, storage=storage, out_dir=out_dir)


def _check_sqlite_file(url: str) -> None:
    """A corrupt or foreign SQLite file is refused before Optuna touches (or migrates) it."""
    path = Path(url.split(":///", 1)[1]) if ":///" in url else None
    if path is None or not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]  # reads every page once
    except sqlite3.DatabaseError as err:
        raise SearchInputError(f"--storage {url}: {path} is not a readable SQLite database ({err})") from None
    if problems != ["ok"]:
        raise SearchInputError(f"--storage {url}: {path} is a damaged SQLite database ({'; '.join(problems)});"
                               " restore it from a copy or choose another --study")
    if tables and "studies" not in tables:
        raise SearchInputError(f"--storage {url}: {path} is a SQLite file but not an Optuna study database")


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """RDB storage with heartbeats, so trials of a killed worker can be recognised as stale."""
    _check_sqlite_file(url)
    if url.startswith("sqlite:///"):
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                           grace_period=GRACE_SECONDS)
    except Exception as err:  # sqlalchemy raises many types for an unreachable or bad database
        raise SearchInputError(f"--storage {url}: cannot open it ({type(err).__name__}: {err})") from None


def existing_study(storage: optuna.storages.RDBStorage, name: str) -> bool:
    return any(s.study_name == name for s in optuna.get_all_study_summaries(storage))


def create_or_resume(
    location: StudyLocation,
    *,
    objectives: Sequence[str],
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    resume: bool,
    attrs: dict[str, Any],
) -> optuna.Study:
    """A new study (refusing to touch an existing one) or, with ``resume``, the existing one if any.

    Raises:
        SearchInputError: the study exists without ``resume``, or its objectives differ from the stored ones.
    """
    storage = open_storage(location.storage)
    exists = existing_study(storage, location.name)
    if exists and not resume:
        raise SearchInputError(f"study {location.name!r} already exists in {location.storage}; pass --resume to"
                               " continue it or choose another --study name")
    study = optuna.create_study(study_name=location.name, storage=storage, directions=list(directions),
                                sampler=sampler, load_if_exists=resume)
    if exists:
        stored = study.metric_names or []
        if list(stored) != list(objectives):
            raise SearchInputError(f"--objectives {','.join(objectives)} differ from the study's {stored}")
    else:
        study.set_metric_names(list(objectives))
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    return study


def fail_interrupted(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose heartbeat stopped (a killed run) as FAIL, with the reason; returns their numbers.

    A live worker's trials keep beating and are left alone, so this is safe with many workers. Optuna's
    ``fail_stale_trials`` does the same without a reason; a failed trial's attributes can no longer be set,
    so the reason is written first.
    """
    storage = study._storage
    numbers = {t._trial_id: t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id) if numbers else ():
        try:
            storage.set_trial_user_attr(trial_id, "failure", STALE_REASON)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed (or its own worker finished) it first
        failed.append(numbers[trial_id] if trial_id in numbers else storage.get_trial(trial_id).number)
    return sorted(failed)


def wait_for_running(study: optuna.Study, poll_seconds: float = 1.0) -> list[int]:
    """Block until no trial is RUNNING: other workers finish theirs, a killed worker's go stale and fail.

    Returns the numbers of the trials failed as stale. A study that spent its budget is complete only then.
    """
    failed: list[int] = []
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        failed += fail_interrupted(study)
        time.sleep(poll_seconds)
    return failed


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))
