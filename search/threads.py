"""Torch CPU threads per search worker: the process's threads shared out among ``--workers`` processes.

Left alone, every worker process takes torch's default (one thread per core), so K workers oversubscribe
the cores K times; on a 2-core CPU two 2-thread jobs each stepped 1.2-6.9x slower (by OpenMP wait setting and
model) than two one-thread jobs (``benchmarks/openmp.py``, docs/benchmarks.md "OpenMP settings decide more
than the layer code").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import torch


def threads_per_worker(requested: int | None, workers: int, *, env: Mapping[str, str] | None = None,
                       threads: int | None = None) -> int | None:
    """Torch threads for each of ``workers`` processes, or None to leave torch as it is: ``requested`` when
    given; None when ``OMP_NUM_THREADS`` is set (the user's per-process choice, which torch has read and
    helper processes inherit) or for a single worker (nothing to share); else this process's threads
    (``threads``, default ``torch.get_num_threads()``: torch's count of the usable cores) divided among the
    workers, at least one each."""
    if requested is not None:
        return requested
    if (os.environ if env is None else env).get("OMP_NUM_THREADS") or workers == 1:
        return None
    return max(1, (torch.get_num_threads() if threads is None else threads) // workers)


def worker_env(threads: int | None) -> dict[str, str] | None:
    """The environment of a helper process given ``threads`` (its ``OMP_NUM_THREADS``, read when torch loads);
    None (inherit this one's) when the count is left to torch."""
    return None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` inside the block and the previous count after it (None: unchanged), so a
    search called in-process (tests, benchmarks) leaves its caller's setting as it found it."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
