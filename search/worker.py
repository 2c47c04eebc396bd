"""One search worker: claim a queued trial of the study, run it with a heartbeat, record it, repeat.

A budget is spent as queued (WAITING) trials numbered below it, queued when a run sets the study up
(``queue_budget``); a worker takes one by moving it WAITING -> RUNNING, a single guarded update in the
database, so any number of workers on one storage never run a trial twice nor more than the budget.
``Study.optimize`` with ``MaxTrialsCallback`` cannot promise that: with no queued trial left it creates
a new one, and two workers finishing at once may both start another.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from .study import GRACE_SECONDS, HEARTBEAT_SECONDS, fail_interrupted, wait_for_running

Callback = Callable[[optuna.Study, FrozenTrial], None]


def queue_budget(study: optuna.Study, budget: int) -> int:
    """Queue empty trials (the sampler fills them) until the study holds ``budget``; returns how many."""
    missing = budget - len(study.get_trials(deepcopy=False))
    for _ in range(missing):
        study.enqueue_trial({})
    return max(0, missing)


def queued_trials(study: optuna.Study, budget: int | None) -> list[FrozenTrial]:
    """Trials queued (WAITING) below ``budget``: what is left of it to run."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if budget is None or t.number < budget]


def claim(study: optuna.Study, budget: int | None) -> optuna.Trial | None:
    """The lowest queued trial below ``budget``, now RUNNING and ours; None when there is none.

    Without a budget a trial is queued first, so every trial is claimed the same way.
    """
    while True:
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if budget is not None and t.number >= budget:
                continue  # queued for a larger budget (another process asked for more)
            trial = claim_trial(study, t)
            if trial is not None:
                return trial
        if budget is not None:
            return None
        study.enqueue_trial({})


def claim_trial(study: optuna.Study, waiting: FrozenTrial) -> optuna.Trial | None:
    """``waiting`` moved WAITING -> RUNNING and ours, or None when another worker took it first."""
    storage = study._storage
    # Beat first: a process killed between the two statements leaves a RUNNING trial that has a
    # heartbeat, so it goes stale; the other order would leave one that never does.
    storage.record_heartbeat(waiting._trial_id)
    try:
        if storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING):
            return optuna.Trial(study, waiting._trial_id)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # another worker took it and finished it meanwhile
    return None


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_ids: Callable[[], Iterable[int]]) -> Iterator[None]:
    """Record the heartbeat of ``trial_ids()`` now and every HEARTBEAT_SECONDS, so a killed process's trials
    go stale. A worker beats its one trial; the Ray driver every trial its searcher holds."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial_id in trial_ids():
                try:
                    storage.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried next time; the trial goes on
                    continue
            if stop.wait(HEARTBEAT_SECONDS):
                return

    thread = threading.Thread(target=beat, name="hilo-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def run_one(study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], Sequence[float]]
            ) -> FrozenTrial:
    """Run the objective on a claimed trial and tell the outcome; an exception fails only this trial."""
    with heartbeat(study._storage, lambda: (trial._trial_id,)):
        try:
            values = objective(trial)
        except optuna.TrialPruned:
            return study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        except Exception:
            return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        except BaseException:  # KeyboardInterrupt, SystemExit: the trial is over, then the run
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
    # skip_if_finished: a trial failed as stale by another process (a starved heartbeat) stays failed
    return study.tell(trial, list(values), skip_if_finished=True)


def run_worker(study: optuna.Study, objective: Callable[[optuna.Trial], Sequence[float]], *, budget: int | None,
               timeout: float | None, callbacks: Sequence[Callback] = ()) -> int:
    """Claim and run trials until none is queued below ``budget`` or ``timeout`` seconds have passed."""
    start, ran = time.monotonic(), 0
    while timeout is None or time.monotonic() - start < timeout:
        fail_interrupted(study)  # trials of a worker that died meanwhile
        trial = claim(study, budget)
        if trial is None:
            break
        frozen = run_one(study, trial, objective)
        ran += 1
        for callback in callbacks:
            callback(study, frozen)
        gc.collect()  # a trial's adapters and optimiser state go before the next is built
    return ran


def wait_for_others(study: optuna.Study, console: Console) -> None:
    """Trials still RUNNING belong to other processes: wait until they finish or, a killed one's, go stale."""
    others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not others:
        return
    console.print(f"waiting for {len(others)} trial(s) still RUNNING in other processes (or until their"
                  f" heartbeat is {GRACE_SECONDS} s old) ...")
    failed = wait_for_running(study)
    if failed:
        console.print(f"trials {failed} were left by a stopped process and are marked FAIL")
