"""The search itself: model facts, proxies, space, study, seeds, then trials until the budget is spent."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hilo_core import LLAMA_TARGETS, find_decoder_layers, module_shapes
from objectives import DIRECTIONS, Fidelity, TaskDataError, base_model, get_task
from spaces import Space, get_space, load_space_file, trainable_constraint

from .progress import SearchProgress, front_table
from .pruning import AccuracyPruning, make_pruner
from .study import GRACE_SECONDS, SearchInputError, StudyLocation, create_or_resume, fail_interrupted, finished_count, \
    locate, mark_set_up, wait_for_running
from .trials import TrialContext, run_trial
from .worker import queue_budget, queued_trials, run_worker


@dataclass(frozen=True)
class ModelFacts:
    """What the space and the constraint need to know of the base model."""

    n_layers: int
    target_modules: tuple[str, ...]
    shapes: dict[str, tuple[int, int]]
    layer_alphas: tuple[float, ...]


def model_facts(model_name: str, targets: Sequence[str], console: Console) -> ModelFacts:
    """Layer count, target shapes and HT-SR alphas (cached on disk by hilo_core.proxies) of the base model."""
    from hilo_core.proxies import layer_alphas

    try:
        model, _ = base_model(model_name)
    except (OSError, ValueError, ModuleNotFoundError) as err:
        raise SearchInputError(f"--model {model_name}: {err}") from None
    _, blocks = find_decoder_layers(model)
    try:
        shapes = module_shapes(model, tuple(targets))
    except ValueError as err:
        raise SearchInputError(f"--targets: {err}") from None
    with console.status("HT-SR alphas of the base model (cached after the first run) ..."):
        alphas = tuple(layer_alphas(model, tuple(targets)).layers)
    return ModelFacts(n_layers=len(blocks), target_modules=tuple(targets), shapes=shapes, layer_alphas=alphas)


def build_space(name: str, facts: ModelFacts) -> Space:
    common = {"n_layers": facts.n_layers, "target_modules": facts.target_modules, "layer_alphas": facts.layer_alphas}
    try:
        if Path(name).suffix.lower() in (".yaml", ".yml", ".json"):
            return load_space_file(name, **common)
        return get_space(name, **common)
    except (OSError, ValueError) as err:
        raise SearchInputError(f"--space {name}: {err}") from None


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler for ``--sampler``; budget constraints reach it through ``trial.set_constraint``."""
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def enqueue_seeds(study: optuna.Study, space: Space, budget: int | None, console: Console) -> list[str]:
    """Enqueue the space's seeds not yet in the study (a resumed study keeps the ones it has)."""
    present = {t.user_attrs.get("seed_name") for t in study.get_trials(deepcopy=False)}
    room = None if budget is None else budget - len(study.get_trials(deepcopy=False))
    added = []
    for seed in space.seeds():
        if seed.name in present:
            continue
        if room is not None and len(added) >= room:
            console.print(f"[yellow]note:[/] budget leaves no room for seed {seed.name}; raise --budget to run it")
            continue
        study.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})
        added.append(seed.name)
    return added


def run_search(args: argparse.Namespace, objectives: tuple[str, ...], *, console: Console, command: str) -> optuna.Study:
    """Set up everything once, then run trials (Optuna or Ray) and write the report."""
    study_name = args.study or f"{Path(args.space).stem}-{Path(args.task).stem}"
    location = locate(study_name, args.storage, args.out_root)
    try:
        task = get_task(args.task, seed=args.seed)
    except TaskDataError as err:
        raise SearchInputError(f"--task {args.task}: {err}") from None
    except ValueError as err:
        raise SearchInputError(f"--task: {err}") from None
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else LLAMA_TARGETS
    facts = model_facts(args.model, targets, console)
    space = build_space(args.space, facts)
    fidelity = Fidelity(steps=args.fidelity, batch_size=args.batch_size, max_eval_examples=args.eval_examples,
                        eval_every=max(1, args.fidelity // 4) if args.pruner != "none" else 0)
    attrs: dict[str, Any] = {
        "space": args.space, "task": args.task, "model": args.model, "command": command,
        "n_layers": facts.n_layers, "target_modules": list(facts.target_modules),
        "layer_alphas": list(facts.layer_alphas), "fidelity": fidelity_dict(fidelity), "seed": args.seed,
    }
    study = prepare_study(location, objectives=objectives, sampler=make_sampler(args.sampler, args.seed),
                          resume=args.resume, attrs=attrs, space=space, budget=args.budget, console=console)
    ctx = TrialContext(space=space, task=task, fidelity=fidelity, model=args.model, shapes=facts.shapes,
                       objectives=objectives, seed=args.seed,
                       constraint=trainable_constraint(args.max_trainable) if args.max_trainable else None)
    if args.pruner != "none" and args.backend == "optuna":  # Ray prunes with ASHA instead
        ctx.pruning = AccuracyPruning(study, make_pruner(args.pruner, max_steps=fidelity.steps,
                                                         eval_every=fidelity.eval_every))
    if args.backend == "ray":
        from .ray_backend import run_with_ray

        run_with_ray(study, ctx, args, console)
    else:
        run_with_optuna(study, ctx, args, console)
    console.print(front_table(study, objectives))
    if not args.no_report and study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        write_report(study, location, args, console)
    return study


def prepare_study(location: StudyLocation, *, objectives: tuple[str, ...], sampler: optuna.samplers.BaseSampler,
                  resume: bool, attrs: dict[str, Any], space: Space, budget: int | None,
                  console: Console) -> optuna.Study:
    """Create (or resume) the study, fail a stopped run's trials, queue the seeds and then the budget."""
    study = create_or_resume(location, objectives=objectives, directions=[DIRECTIONS[o] for o in objectives],
                             sampler=sampler, resume=resume, attrs=attrs)
    if resume:
        stored_fidelity = study.user_attrs.get("fidelity")
        if stored_fidelity not in (None, attrs["fidelity"]):
            raise SearchInputError(f"--fidelity/--batch-size/--eval-examples differ from the study's {stored_fidelity};"
                                   " a resumed study keeps its fidelity")
    location.out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"study [bold]{study.study_name}[/] in {location.storage}\n{space.describe()}")
    interrupted = fail_interrupted(study) if resume else []
    if interrupted:
        console.print(f"trials {interrupted} of a stopped run are marked FAIL (their heartbeat stopped)")
    added = enqueue_seeds(study, space, budget, console)
    if added:
        console.print(f"seeds enqueued first: {', '.join(added)}")
    if budget is not None:
        queue_budget(study, budget)
    mark_set_up(study)
    return study


def fidelity_dict(fidelity: Fidelity) -> dict[str, Any]:
    return asdict(fidelity)


def run_with_optuna(study: optuna.Study, ctx: TrialContext, args: argparse.Namespace, console: Console) -> None:
    """Trials in this process (and ``--workers - 1`` helper processes on the same storage) until the
    queue below the budget is empty; then wait for trials other processes still run."""
    queued = len(queued_trials(study, args.budget))
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if args.budget is not None and not queued and not running:
        console.print(f"study already has {finished_count(study)} finished trials (budget {args.budget}); nothing to run")
        return
    timeout = args.budget_hours * 3600 if args.budget_hours else None
    n_helpers = args.workers - 1 if args.budget is None else min(args.workers - 1, max(queued - 1, 0))
    helpers = [spawn_worker(args, study.study_name) for _ in range(n_helpers)]
    with SearchProgress(total=args.budget or 0, done=finished_count(study), objectives=ctx.objectives,
                        console=console) as progress:
        run_worker(study, lambda t: run_trial(t, ctx), budget=args.budget, timeout=timeout, callbacks=[progress])
    for proc in helpers:
        if proc.wait() != 0:
            console.print(f"[yellow]warning:[/] helper worker (pid {proc.pid}) exited with code {proc.returncode}")
    if args.budget is not None and timeout is None:
        wait_for_others(study, console)


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


def spawn_worker(args: argparse.Namespace, study_name: str) -> subprocess.Popen:
    """Another process running trials of the same study (same storage), without seeds or report."""
    argv = [a for a in args.argv if a not in ("--resume", "--no-report")]
    argv = _drop_option(_drop_option(argv, "--workers"), "--study")
    argv += ["--workers", "1", "--resume", "--no-report", "--study", study_name]
    return subprocess.Popen([sys.executable, "-m", "search.run", *argv], stdout=subprocess.DEVNULL)


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


def write_report(study: optuna.Study, location, args: argparse.Namespace, console: Console) -> None:
    """The reports package's full report, into the study folder."""
    from reports.build import build
    from reports.load import read_study

    start = time.perf_counter()
    paths = build(read_study(study), location.out_dir)
    console.print(f"report: {location.out_dir} ({len(paths)} files, {time.perf_counter() - start:.1f} s)")
