"""`python -m search.confirm --study S --top K --seeds N`: the confirmation stage of a search.

Retrains the K best candidates of the noise-aware front and the best seed rules with N fresh training
seeds each, scores them on the validation *and* the test split (the first look at test in the study),
and stores every run in the study ``<S>.confirm`` of the same storage, so the search's own trials never
change. Killed, it resumes: only the (config, seed) runs not yet finished are queued again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from hilo_core import MoLoRAConfig
from hilo_core.cli import OneLineParser, print_error, quiet_hub_logs
from objectives import Fidelity, get_task
from objectives.front import search_front
from objectives.records import RECORDS_ATTR, TEST_RECORDS_ATTR
from reports.confirmed import confirm_study_name
from reports.rungs import SCHEDULE_ATTR, front_runs, runs_by_rung

from .study import DEFAULT_OUT_ROOT, SearchInputError, fail_interrupted, locate, open_storage
from .threads import threads_per_worker, torch_threads, worker_env
from .trials import failure_reason, record_worker
from .worker import run_worker, wait_for_others

SEED_OFFSET = 1000  # confirmation seeds are base + 1000 + i: never a seed the search's replicates used


@dataclass(frozen=True)
class Pick:
    """A config chosen for confirmation."""

    role: str  # "candidate" or "rule"
    of_trial: int
    config: str
    label: str


def choose(study: optuna.Study, *, top: int, rules: int, alpha: float = 0.05) -> list[Pick]:
    """The ``top`` searched members of the noise-aware front and the ``rules`` best seed rules, both ranked by
    their mean validation signal (seed rules are never counted as searched candidates).

    A scheduled search is read at its top rung; its rules at the highest rung any rule reached.
    """
    def ranked(runs: list[FrozenTrial]):
        done = {t.number: t for t in runs}
        sf = search_front(done.values(), study.metric_names or (), alpha=alpha)
        first = {c.key: done[sf.trials[c.key][0]] for c in sf.candidates}
        by_mean = sorted(range(len(sf.candidates)), key=lambda i: (-sf.candidates[i].mean, sf.candidates[i].order))
        seeded = [i for i in by_mean if "seed_name" in first[sf.candidates[i].key].user_attrs]
        return sf, first, by_mean, seeded

    sf, first, by_mean, seeded = ranked(front_runs(study))
    searched = [(sf, first, i) for i in by_mean if i in sf.front and i not in seeded]
    rule_picks = [(sf, first, i) for i in seeded]
    if study.user_attrs.get(SCHEDULE_ATTR) and not rule_picks:
        for rung, runs in sorted(runs_by_rung(study).items(), reverse=True):
            r_sf, r_first, _, r_seeded = ranked(runs)
            if r_seeded:
                rule_picks = [(r_sf, r_first, i) for i in r_seeded]
                break
    picks: list[Pick] = []
    for role, chosen in (("candidate", searched[:top]), ("rule", rule_picks[:rules])):
        for front, firsts, i in chosen:
            t = firsts[front.candidates[i].key]
            number = int(t.user_attrs.get("lineage", t.number))  # a promoted run names its search trial
            label = t.user_attrs.get("seed_name") or f"trial {number}"
            picks.append(Pick(role=role, of_trial=number, config=front.candidates[i].key, label=label))
    return picks


def queue(confirm: optuna.Study, picks: Sequence[Pick], *, seeds: int, base_seed: int,
          seed_offset: int = SEED_OFFSET) -> int:
    """Queue the (config, seed) runs not yet finished or queued; returns how many were added."""
    have = {(t.user_attrs.get("config"), t.user_attrs.get("train_seed")) for t in confirm.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING)}
    added = 0
    for p in picks:
        for i in range(seeds):
            seed = base_seed + seed_offset + i
            if (p.config, seed) in have:
                continue
            confirm.enqueue_trial({}, user_attrs={"config": p.config, "train_seed": seed, "role": p.role,
                                                  "of_trial": p.of_trial, "label": p.label})
            added += 1
    return added


def make_objective(study: optuna.Study, *, test_examples: int):
    """One confirmation run: the search's task, model and fidelity, a fresh seed, validation and test scored."""
    from objectives import evaluate

    attrs = study.user_attrs
    task = get_task(attrs["task"], seed=attrs.get("seed", 0), columns=attrs.get("task_columns"))
    fidelity = replace(Fidelity(**attrs["fidelity"]), eval_every=0,
                       max_test_examples=test_examples or max(len(task.test), 1))

    def objective(trial: optuna.Trial) -> tuple[float]:
        a = trial.user_attrs
        record_worker(trial)
        try:
            metrics = evaluate(MoLoRAConfig.from_json(a["config"]), task, fidelity, seed=a["train_seed"],
                               model=attrs["model"])
        except BaseException as err:
            trial.set_user_attr("failure", failure_reason(err))
            raise
        trial.set_user_attr("metrics", metrics.to_dict())
        trial.set_user_attr(RECORDS_ATTR, metrics.records.encode())
        trial.set_user_attr(TEST_RECORDS_ATTR, metrics.test_records.encode())
        return (metrics.accuracy,)

    return objective


def confirm(study: optuna.Study, storage: str | optuna.storages.BaseStorage, *, top: int, seeds: int, rules: int,
            test_examples: int = 0, alpha: float = 0.05, console: Console | None = None, workers: int = 1,
            threads: int | None = None) -> optuna.Study:
    """Run (or resume) the confirmation stage of ``study``; returns the ``<study>.confirm`` study.

    ``workers`` > 1 (``storage`` given as a URL) starts that many processes in all on the queued runs
    (``search.confirm --join``), each with ``threads`` torch threads (None: the default share, as the search's).
    """
    console = console or Console()
    url = storage if isinstance(storage, str) else None
    if url is not None:
        storage = open_storage(url)  # with heartbeats: runs of other or killed processes are told apart
    picks = choose(study, top=top, rules=rules, alpha=alpha)
    if not any(p.role == "candidate" for p in picks):
        console.print("[yellow]note:[/] the noise-aware front holds no searched config; confirming the rules only")
    confirm_study = optuna.create_study(study_name=confirm_study_name(study.study_name), storage=storage,
                                        directions=["maximize"], load_if_exists=True)
    confirm_study.set_user_attr("settings", {"top": top, "seeds": seeds, "rules": rules, "alpha": alpha,
                                             "test_examples": test_examples})
    stale = fail_interrupted(confirm_study)  # a killed run's trial: failed now, so its run is queued again
    if stale:
        console.print(f"confirmation runs {stale} were left by a stopped process and are marked FAIL")
    added = queue(confirm_study, picks, seeds=seeds, base_seed=int(study.user_attrs.get("seed", 0)))
    study.set_user_attr("confirmation", confirm_study.study_name)
    console.print(f"confirmation: {len(picks)} configs x {seeds} fresh seeds ({added} runs to go): "
                  + ", ".join(p.label for p in picks))
    budget = len(confirm_study.get_trials(deepcopy=False))
    threads = threads_per_worker(threads, workers)
    n_helpers = min(workers - 1, max(added - 1, 0)) if url is not None else 0
    helpers = [spawn_confirm_worker(study.study_name, url, threads) for _ in range(n_helpers)]
    if helpers:
        console.print(f"confirmation: {n_helpers} helper process(es) beside this one")

    def progress(_: optuna.Study, t: FrozenTrial) -> None:
        state = f"val {t.value:.3f}" if t.state == TrialState.COMPLETE else f"{t.state.name}: {t.user_attrs.get('failure')}"
        console.print(f"  confirm {t.user_attrs.get('label'):<14} seed {t.user_attrs.get('train_seed')}: {state}")

    with torch_threads(threads):
        run_worker(confirm_study, make_objective(study, test_examples=test_examples), budget=budget, timeout=None,
                   callbacks=[progress])
    for proc in helpers:
        if proc.wait() != 0:
            console.print(f"[yellow]warning:[/] confirmation helper (pid {proc.pid}) exited with code"
                          f" {proc.returncode}")
    wait_for_others(confirm_study, console)
    return confirm_study


def spawn_confirm_worker(study_name: str, url: str, threads: int | None) -> subprocess.Popen:
    """A process running queued confirmation runs of ``study_name`` (``search.confirm --join``)."""
    argv = ["--study", study_name, "--storage", url, "--join"]
    argv += [] if threads is None else ["--threads", str(threads)]
    return subprocess.Popen([sys.executable, "-m", "search.confirm", *argv], stdout=subprocess.DEVNULL,
                            env=worker_env(threads))


def join(study: optuna.Study, storage: optuna.storages.BaseStorage, *, threads: int | None) -> int:
    """Run confirmation runs already queued for ``study`` (by a ``confirm`` elsewhere) until none is left, with
    the test-question count that confirmation stored."""
    confirm_study = optuna.load_study(study_name=confirm_study_name(study.study_name), storage=storage)
    test_examples = int(confirm_study.user_attrs.get("settings", {}).get("test_examples", 0))
    with torch_threads(threads):
        return run_worker(confirm_study, make_objective(study, test_examples=test_examples),
                          budget=len(confirm_study.get_trials(deepcopy=False)), timeout=None)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="python -m search.confirm", description=__doc__)
    p.add_argument("--study", required=True, help="the search study to confirm")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: the study folder's sqlite file)")
    p.add_argument("--out-root", default=str(DEFAULT_OUT_ROOT))
    p.add_argument("--top", type=int, default=3, help="searched configs of the noise-aware front to confirm")
    p.add_argument("--seeds", type=int, default=3, help="fresh training seeds per confirmed config")
    p.add_argument("--rules", type=int, default=3, help="best seed rules (by validation) to confirm beside them")
    p.add_argument("--test-examples", type=int, default=0, help="test questions scored (default 0: the whole split)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the noise-aware front")
    p.add_argument("--workers", type=int, default=1, help="processes running the confirmation runs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's"
                   " threads divided among --workers, or OMP_NUM_THREADS when it is set)")
    p.add_argument("--join", action="store_true", help="only run confirmation runs already queued for the study"
                   " (another process, or machine on the same storage, chose and queued them; its --test-examples"
                   " apply)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_hub_logs()  # a --join helper shares the search's terminal: no model-loading bars on it
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat: hilo's choice
    console = Console(soft_wrap=True)
    try:
        for name in ("top", "seeds"):
            if getattr(args, name) <= 0:
                raise SearchInputError(f"--{name} must be a positive integer, got {getattr(args, name)}")
        if args.rules < 0 or args.test_examples < 0:
            raise SearchInputError(f"--rules and --test-examples must be >= 0, got {args.rules}, {args.test_examples}")
        if not 0 < args.alpha < 1:
            raise SearchInputError(f"--alpha must be in (0, 1), got {args.alpha}")
        if args.workers <= 0 or (args.threads is not None and args.threads <= 0):
            raise SearchInputError(f"--workers and --threads must be positive integers, got {args.workers},"
                                   f" {args.threads}")
        location = locate(args.study, args.storage, args.out_root)
        if location.storage.startswith("sqlite:///") and not Path(location.storage[len("sqlite:///"):]).is_file():
            raise SearchInputError(f"--study {args.study}: no storage file at {location.storage[len('sqlite:///'):]}"
                                   " (pass --storage URL or --out-root)")  # opening it would create an empty one
        storage = open_storage(location.storage)
        if args.study not in optuna.get_all_study_names(storage=storage):
            raise SearchInputError(f"--study {args.study}: no such study in {location.storage}")
        study = optuna.load_study(study_name=args.study, storage=storage)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise SearchInputError(f"--study {args.study}: no completed trial to confirm")
        if args.join and confirm_study_name(args.study) not in optuna.get_all_study_names(storage=storage):
            raise SearchInputError(f"--join: no confirmation is queued for study {args.study!r} (run"
                                   " search.confirm or search.run --confirm K without --join first)")
    except (SearchInputError, ValueError) as err:
        print_error("search.confirm", err)
        return 2
    if args.join:
        join(study, storage, threads=args.threads)
        return 0
    confirm(study, location.storage, top=args.top, seeds=args.seeds, rules=args.rules,
            test_examples=args.test_examples, alpha=args.alpha, console=console, workers=args.workers,
            threads=args.threads)
    from .report import print_verdicts

    print_verdicts(study, location, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
