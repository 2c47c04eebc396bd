"""``--trial-timeout``: a trial still running after its time limit (hung, or far slower than asked for) ends
FAIL with the reason instead of holding its worker, and the budget's end, forever.

The Optuna backend runs trials in the main thread of each worker process, so the limit is a real-time
timer whose signal raises inside the trial (``time_limit``); the Ray backend's driver kills the trial's
worker process instead (``search.ray_cluster``), which also ends a trial that is stopped or stuck in C code.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from objectives import TrialFailed


class TrialTimeout(TrialFailed):
    """A trial ran past ``--trial-timeout``; its ``failure`` attribute is :func:`timeout_reason`."""


def timeout_reason(seconds: float) -> str:
    """What a timed-out trial's ``failure`` attribute says, on both backends."""
    return f"timed out: still running after --trial-timeout {seconds:g} s (hung or too slow); stopped"


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in this (the main) thread once ``seconds`` have passed; None: no limit.

    The signal is handled between Python bytecodes, so a trial blocked inside one C call ends when that
    call returns; a blocking sleep, lock or queue wait is interrupted at once.
    """
    if seconds is None:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("time_limit needs the main thread (it uses SIGALRM)")

    def expire(signum, frame) -> None:
        raise TrialTimeout(timeout_reason(seconds))

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
