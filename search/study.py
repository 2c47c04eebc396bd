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
from optuna.study import StudyDirection
from optuna.trial import TrialState

DEFAULT_OUT_ROOT = Path("reports") / "out"
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 3 * HEARTBEAT_SECONDS  # a trial whose heartbeat is older than this belongs to a dead process
STALE_REASON = (f"interrupted: its process stopped (killed, crashed or lost) during the trial; no heartbeat"
                f" for {GRACE_SECONDS} s")
# A claimed trial that no worker started (no ``worker`` attribute): a Ray driver stages trials before
# they get a worker, and a driver lost meanwhile leaves them claimed.
UNSTARTED_REASON = (f"interrupted before it started: the process that claimed it stopped (killed, crashed or"
                    f" lost) before a worker took it; no heartbeat for {GRACE_SECONDS} s")
SETUP_ATTR = "setup"  # study attribute: "pending" while its creator queues seeds and budget, then "done"
SETUP_WAIT_SECONDS = 60.0  # a creator that has not finished the set-up by then is taken to have stopped
SCHEMA_RACE_RETRIES = 5
_SCHEMA_RACE_MESSAGES = ("already exists", "duplicate key", "unique constraint")


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
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                                               grace_period=GRACE_SECONDS)
        except Exception as err:  # sqlalchemy raises many types for an unreachable or bad database
            # Workers opening a new database at once all try to create Optuna's tables; the losers fail with
            # "already exists" / a duplicate key, and find the tables in place when they try again.
            if attempt < SCHEMA_RACE_RETRIES and any(m in str(err).lower() for m in _SCHEMA_RACE_MESSAGES):
                time.sleep(0.1 * (attempt + 1))
                continue
            raise SearchInputError(f"--storage {url}: cannot open it ({type(err).__name__}: {err})") from None
    raise AssertionError("unreachable")


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

    Of several workers starting a new study at once exactly one creates it (the study name is unique in the
    database); the others wait until it has queued the seeds and the budget (``mark_set_up``), so nothing is
    queued twice.

    Raises:
        SearchInputError: the study exists without ``resume``, or was created with other options
            (``check_same_study``).
    """
    storage = open_storage(location.storage)
    created = False
    if not existing_study(storage, location.name):
        try:
            storage.create_new_study([StudyDirection[d.upper()] for d in directions], location.name)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago
    if not created and not resume:
        raise SearchInputError(f"study {location.name!r} already exists in {location.storage}; pass --resume to"
                               " continue it or choose another --study name")
    study = optuna.load_study(study_name=location.name, storage=storage, sampler=sampler)
    if not created and wait_for_set_up(study):
        check_same_study(study, objectives=objectives, attrs=attrs)
        return study
    # Created here, or its creator stopped before finishing the set-up: this worker does it. "pending" is the
    # first write, so a worker that finds neither it nor metric names knows the creator is only starting.
    study.set_user_attr(SETUP_ATTR, "pending")
    study.set_metric_names(list(objectives))
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    return study


# study attribute -> the option that sets it; a resumed study must be given the same values
IDENTITY_OPTIONS = {"task": "--task", "task_columns": "--task-columns", "model": "--model", "space": "--space",
                    "seed": "--seed", "target_modules": "--targets", "schedule": "--scheduler/--eta/--rungs",
                    "evaluator": "--evaluator", "supernet_steps": "--supernet-steps"}


def check_same_study(study: optuna.Study, *, objectives: Sequence[str], attrs: dict[str, Any]) -> None:
    """Refuse to continue a study with another task, model, space, seed, objectives or targets than it was
    created with: its trials would be mixed with results of a different experiment.

    Only attributes the study stores are compared (a study written by an older version may lack some).

    Raises:
        SearchInputError: one line naming every option that differs, with the study's value.
    """
    stored_attrs = study.user_attrs
    differences = []
    stored_objectives = list(study.metric_names or [])
    if stored_objectives != list(objectives):
        differences.append(f"--objectives {','.join(objectives)} (study: {','.join(stored_objectives)})")
    for key, option in IDENTITY_OPTIONS.items():
        if key in stored_attrs and stored_attrs[key] != attrs.get(key):
            differences.append(f"{option} {_option_text(attrs.get(key))} (study: {_option_text(stored_attrs[key])})")
    if differences:
        raise SearchInputError(f"--resume: these options differ from the study's, so this would be another"
                               f" experiment: {'; '.join(differences)}. Repeat the study's options or choose"
                               f" another --study name")


def _option_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def wait_for_set_up(study: optuna.Study, timeout: float | None = None) -> bool:
    """Wait until the worker that created the study has queued its seeds and budget; False after ``timeout``.

    A study written before the set-up marker existed has metric names and no marker: it is set up.
    """
    deadline = time.monotonic() + (SETUP_WAIT_SECONDS if timeout is None else timeout)
    while True:
        # Metric names first: the creator writes the marker before them, so names without a marker can only
        # be a study older than the marker (read the other way round, a creator in between looks finished).
        has_names = study.metric_names is not None
        marker = study._storage.get_study_user_attrs(study._study_id).get(SETUP_ATTR)
        if marker == "done" or (marker is None and has_names):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def mark_set_up(study: optuna.Study) -> None:
    """The seeds and the budget are queued: workers waiting in ``create_or_resume`` may go on."""
    study.set_user_attr(SETUP_ATTR, "done")


def fail_interrupted(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials whose heartbeat stopped (a killed run) as FAIL, with the reason; returns their numbers.

    A live worker's trials keep beating and are left alone, so this is safe with many workers. Optuna's
    ``fail_stale_trials`` does the same without a reason; a failed trial's attributes can no longer be set,
    so the reason is written first.
    """
    storage = study._storage
    running = {t._trial_id: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    failed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id) if running else ():
        trial = running.get(trial_id) or storage.get_trial(trial_id)
        try:
            storage.set_trial_user_attr(trial_id, "failure",
                                        STALE_REASON if "worker" in trial.user_attrs else UNSTARTED_REASON)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process failed (or its own worker finished) it first
        failed.append(trial.number)
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
