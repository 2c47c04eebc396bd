"""The search itself: task, model facts, space, study and seeds set up once, then trials on the chosen
backend until the budget is spent, then the report."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hilo_core import LLAMA_TARGETS
from objectives import Fidelity, TaskDataError, get_task
from spaces import trainable_constraint

from reports.rungs import SCHEDULE_ATTR

from .facts import build_space, model_facts
from .progress import front_table
from .pruning import AccuracyPruning, make_pruner
from .report import print_verdicts, write_report
from .sampling import make_sampler
from .seeding import prepare_study
from .study import SearchInputError, locate
from .trials import TrialContext


def run_search(args: argparse.Namespace, objectives: tuple[str, ...], *, console: Console, command: str) -> optuna.Study:
    """Set up everything once, then run trials (Optuna or Ray) and write the report."""
    study_name = args.study or f"{Path(args.space).stem}-{Path(args.task).stem}"
    location = locate(study_name, args.storage, args.out_root)
    try:
        task = get_task(args.task, seed=args.seed, columns=args.task_columns)
    except TaskDataError as err:
        raise SearchInputError(f"--task {args.task}: {err}") from None
    except ValueError as err:
        raise SearchInputError(f"--task: {err}") from None
    targets = tuple(t.strip() for t in args.targets.split(",")) if args.targets else LLAMA_TARGETS
    facts = model_facts(args.model, targets, console)
    space = build_space(args.space, facts)
    # max_test_examples=0: no search trial looks at the test split (only search.confirm does)
    fidelity = Fidelity(steps=args.fidelity, batch_size=args.batch_size, max_eval_examples=args.eval_examples,
                        max_test_examples=0, eval_every=max(1, args.fidelity // 4) if args.pruner != "none" else 0)
    attrs: dict[str, Any] = {
        "space": args.space, "task": args.task, "model": args.model, "command": command,
        "n_layers": facts.n_layers, "target_modules": list(facts.target_modules),
        "layer_alphas": list(facts.layer_alphas), "fidelity": asdict(fidelity), "seed": args.seed,
        "task_columns": args.task_columns,
        "alpha": args.alpha, "seed_repeats": args.seed_repeats,
        SCHEDULE_ATTR: args.schedule.to_dict() if getattr(args, "schedule", None) else None,
        "prior": asdict(args.prior_spec) if getattr(args, "prior_spec", None) else None,
        "evaluator": getattr(args, "evaluator", "standard"), "supernet_steps": getattr(args, "supernet_steps", None),
    }
    cluster = None
    if args.backend == "ray":  # connected first: a cluster that cannot hold one trial leaves the study untouched
        from .ray_cluster import connect

        cluster = connect(args)
    study = prepare_study(location, objectives=objectives, sampler=make_sampler(args.sampler, args.seed),
                          resume=args.resume, attrs=attrs, space=space, budget=args.budget, console=console,
                          seed_repeats=args.seed_repeats, prior=getattr(args, "prior_spec", None))
    ctx = TrialContext(space=space, task=task, fidelity=fidelity, model=args.model, shapes=facts.shapes,
                       objectives=objectives, seed=args.seed,
                       constraint=trainable_constraint(args.max_trainable) if args.max_trainable else None)
    if args.pruner != "none" and args.backend == "optuna":  # Ray prunes with ASHA instead
        ctx.pruning = AccuracyPruning(study, make_pruner(args.pruner, max_steps=fidelity.steps,
                                                         eval_every=fidelity.eval_every))
    if attrs[SCHEDULE_ATTR]:
        from .promotion import Promotions

        ctx.promotions = Promotions(study, args.schedule, location.out_dir / "checkpoints", objectives=objectives,
                                    alpha=args.alpha)
        console.print(f"scheduler {args.schedule.kind}, eta {args.schedule.eta}: rungs (steps:questions) "
                      f"{args.schedule.text()}; the front is read at the highest rung reached")
    if attrs["evaluator"] == "one-shot":
        from .one_shot import prepare_one_shot

        ctx.one_shot = prepare_one_shot(study, location, space=space, task=task, fidelity=fidelity, args=args,
                                        console=console)
    if args.backend == "ray" and ctx.promotions is not None:
        from .ray_scheduled import run_scheduled_on_ray

        run_scheduled_on_ray(study, ctx.promotions.rungs, args, console, cluster)
    elif args.backend == "ray":
        from .ray_backend import run_with_ray  # optional heavy backend: Ray is imported only when asked for

        run_with_ray(study, ctx, args, console, cluster)
    else:
        from .optuna_backend import run_with_optuna

        with ctx.one_shot.loaded() if ctx.one_shot else nullcontext():  # loaded once for all trials here
            run_with_optuna(study, ctx, args, console)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    console.print(front_table(study, objectives, alpha=args.alpha))
    if args.confirm and done:
        from .confirm import confirm

        workers = args.workers if args.backend == "optuna" else 1  # a Ray search's driver confirms alone
        confirm(study, location.storage, top=args.confirm, seeds=args.confirm_seeds, rules=args.confirm_rules,
                test_examples=args.test_examples, alpha=args.alpha, console=console, workers=workers,
                threads=args.threads)
        print_verdicts(study, location, console)
    if not args.no_report and done:
        write_report(study, location, console)
    return study
