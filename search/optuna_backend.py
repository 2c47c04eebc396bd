"""`--backend optuna`: trials in this process and ``--workers - 1`` helper processes on the same storage."""

from __future__ import annotations

import argparse
import subprocess
import sys

import optuna
from optuna.trial import TrialState
from rich.console import Console

from .progress import SearchProgress
from .study import finished_count
from .threads import threads_per_worker, torch_threads, worker_env
from .timeout import time_limit
from .promotion import run_scheduled_worker
from .trials import TrialContext, run_promoted, run_trial
from .worker import queued_trials, run_worker, wait_for_others


def run_with_optuna(study: optuna.Study, ctx: TrialContext, args: argparse.Namespace, console: Console) -> None:
    """Trials in this process (and ``--workers - 1`` helper processes on the same storage) until the
    queue below the budget is empty; then wait for trials other processes still run."""
    queued = len(queued_trials(study, args.budget))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if args.budget is not None and not queued and not running and ctx.promotions is None:
        console.print(f"study already has {finished_count(study)} finished trials (budget {args.budget}); nothing to run")
        return
    timeout = args.budget_hours * 3600 if args.budget_hours else None
    n_helpers = args.workers - 1 if args.budget is None else min(args.workers - 1, max(queued - 1, 0))
    threads = threads_per_worker(args.threads, args.workers)  # threads shared out, not each worker all of them
    helpers = [spawn_worker(args, study.study_name, threads) for _ in range(n_helpers)]
    def objective(trial: optuna.Trial) -> tuple[float, ...]:
        with time_limit(args.trial_timeout):
            return run_trial(trial, ctx)

    with torch_threads(threads), SearchProgress(total=args.budget or 0, done=finished_count(study),
                                                objectives=ctx.objectives, console=console) as progress:
        if ctx.promotions is None:
            run_worker(study, objective, budget=args.budget, timeout=timeout, callbacks=[progress])
        else:
            def promoted(trial: optuna.Trial) -> tuple[float, ...]:
                with time_limit(args.trial_timeout):
                    return run_promoted(trial, ctx)

            run_scheduled_worker(study, ctx.promotions, fresh=objective, promoted=promoted, budget=args.budget,
                                 timeout=timeout, callbacks=[progress], rung_callbacks=[progress.rung])
    for proc in helpers:
        if proc.wait() != 0:
            console.print(f"[yellow]warning:[/] helper worker (pid {proc.pid}) exited with code {proc.returncode}")
    if args.budget is not None and timeout is None:
        wait_for_others(study, console)
        if ctx.promotions is not None:
            wait_for_others(ctx.promotions.rungs, console)


def spawn_worker(args: argparse.Namespace, study_name: str, threads: int | None = None) -> subprocess.Popen:
    """Another process running trials of the same study (same storage), without seeds, confirmation or report;
    ``threads``: its torch threads (also its ``OMP_NUM_THREADS``, read when torch loads), None for the default."""
    replace = None if threads is None else {"--threads": str(threads)}
    return subprocess.Popen([sys.executable, "-m", "search.run", *worker_argv(args, study_name, replace=replace)],
                            stdout=subprocess.DEVNULL, env=worker_env(threads))


def worker_argv(args: argparse.Namespace, study_name: str, *, replace: dict[str, str] | None = None,
                drop: tuple[str, ...] = ()) -> list[str]:
    """The run's own arguments for one more worker of ``study_name``: one process, resuming, no confirmation (the
    main run confirms) and no report; ``replace`` sets options anew (option -> value), ``drop`` removes some."""
    argv = [a for a in args.argv if a not in ("--resume", "--no-report")]
    for name in ("--workers", "--study", "--confirm", *(replace or {}), *drop):
        argv = _drop_option(argv, name)
    for name, value in (replace or {}).items():
        argv += [name, value]
    return argv + ["--workers", "1", "--resume", "--no-report", "--confirm", "0", "--study", study_name]


def _drop_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out
