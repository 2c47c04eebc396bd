"""Search benchmark (issue 7): hypervolume of the seeds alone vs random search vs NSGA-II / TPE, one run.

Every arm starts from the same seed trials (evaluated once and copied into each arm's study: evaluation is
deterministic for a config and seed), then spends the rest of the budget with its sampler. Hypervolume is
measured in one normalised box shared by all arms (each objective scaled to [0, 1] over every trial of
every arm, 0 best; reference point 1.1), so the arms compare. Also says whether each arm's front dominates
every seed config (a seed that is itself on the front counts as not dominated).

Usage: python -m benchmarks.search [--budget 20] [--fidelity 12] [--eval-examples 100]
       [--arms random,nsga2,tpe]   (run from the repo root; as a script its name would hide the search package) [--out reports/out/bench-search]
Each arm is a SQLite study in --out; a rerun reuses finished arms (resumes unfinished ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import optuna  # noqa: E402
from optuna.trial import TrialState, create_trial  # noqa: E402

from hilo_core import LLAMA_TARGETS  # noqa: E402
from objectives import DIRECTIONS, Fidelity, get_task  # noqa: E402
from objectives.front import dominated_by, hypervolume, normalise, plain_front  # noqa: E402
from search.facts import build_space, model_facts  # noqa: E402
from search.progress import SearchProgress  # noqa: E402
from search.sampling import make_sampler  # noqa: E402
from search.study import FINISHED  # noqa: E402
from search.trials import TrialContext, run_trial  # noqa: E402

OBJECTIVES = ("accuracy", "trainable", "active")
MINIMISE = ["minimize"] * len(OBJECTIVES)  # normalised points: 0 best in every objective


def open_arm(out: Path, name: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    storage = f"sqlite:///{out / 'bench.db'}"
    study = optuna.create_study(study_name=name, storage=storage, directions=[DIRECTIONS[o] for o in OBJECTIVES],
                                sampler=sampler, load_if_exists=True)
    study.set_metric_names(list(OBJECTIVES))
    return study


def run_arm(study: optuna.Study, ctx: TrialContext, n_trials: int, console) -> None:
    missing = n_trials - len(study.get_trials(deepcopy=False, states=FINISHED))
    if missing <= 0:
        return
    with SearchProgress(total=n_trials, done=n_trials - missing, objectives=OBJECTIVES, console=console) as bar:
        study.optimize(lambda t: run_trial(t, ctx), n_trials=missing, catch=(Exception,), callbacks=[bar])


def copy_trials(source: list[optuna.trial.FrozenTrial], target: optuna.Study) -> None:
    if target.get_trials(deepcopy=False):
        return
    target.add_trials([create_trial(params=t.params, distributions=t.distributions, values=t.values,
                                    user_attrs=t.user_attrs, state=t.state) for t in source])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="hilo")
    parser.add_argument("--task", default="analogy")
    parser.add_argument("--model", default="default")
    parser.add_argument("--budget", type=int, default=20, help="trials per arm, seeds included")
    parser.add_argument("--fidelity", type=int, default=12)
    parser.add_argument("--eval-examples", type=int, default=100)
    parser.add_argument("--arms", default="random,nsga2", help="samplers to compare with the seeds alone")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/out/bench-search")
    args = parser.parse_args()
    from rich.console import Console

    console = Console()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    facts = model_facts(args.model, LLAMA_TARGETS, console)
    space = build_space(args.space, facts)
    ctx = TrialContext(space=space, task=get_task(args.task, seed=args.seed), objectives=OBJECTIVES,
                       fidelity=Fidelity(steps=args.fidelity, max_eval_examples=args.eval_examples),
                       model=args.model, shapes=facts.shapes, seed=args.seed)
    seeds = space.seeds()
    seed_study = open_arm(out, "seeds", optuna.samplers.RandomSampler(seed=args.seed))
    if not seed_study.get_trials(deepcopy=False):
        for s in seeds:
            seed_study.enqueue_trial(s.params, user_attrs={"seed_name": s.name})
    console.print(f"[bold]seeds[/] ({len(seeds)} trials)")
    run_arm(seed_study, ctx, len(seeds), console)
    arms = {"seeds": seed_study}
    for name in args.arms.split(","):
        arm = open_arm(out, name, make_sampler(name, args.seed))
        copy_trials(seed_study.get_trials(), arm)
        console.print(f"[bold]{name}[/] ({args.budget} trials, the first {len(seeds)} copied from the seeds arm)")
        run_arm(arm, ctx, args.budget, console)
        arms[name] = arm

    done = {n: [t for t in s.get_trials() if t.state == TrialState.COMPLETE] for n, s in arms.items()}
    # one box for every arm: normalised together, then handed back to each arm in order
    box = iter(normalise([t.values for ts in done.values() for t in ts],
                         [DIRECTIONS[o] for o in OBJECTIVES]).tolist())
    arm_points = {name: [next(box) for _ in trials] for name, trials in done.items()}
    seed_points = arm_points["seeds"]
    rows = []
    for name, trials in done.items():
        points = arm_points[name]
        front = [points[i] for i in plain_front(points, MINIMISE)]
        seed_beaten = dominated_by(seed_points, front, MINIMISE)
        beaten = sum(seed_beaten)
        best = max(trials, key=lambda t: (t.values[0], -t.values[1]))  # ties: the smaller config
        kept = [t.user_attrs.get("seed_name", str(t.number)) for t, b in zip(done["seeds"], seed_beaten) if not b]
        rows.append({"arm": name, "trials": len(trials), "front": len(front),
                     "hypervolume": hypervolume(points), "seeds_dominated": beaten,
                     "seeds": len(seed_points), "best_accuracy": best.values[0],
                     "best_accuracy_trainable": best.values[1], "seeds_not_dominated": kept})
    base = rows[0]["hypervolume"]
    print(f"\nspace={args.space} task={args.task} model={args.model} budget={args.budget} fidelity={args.fidelity}"
          f" eval={args.eval_examples} seed={args.seed} cpus={os.cpu_count()} "
          f"{platform.machine()} ({time.perf_counter() - start:.0f} s)")
    print(f"{'arm':<8} {'trials':>6} {'front':>5} {'hypervolume':>11} {'vs seeds':>8} {'seeds dominated':>15}"
          f" {'best acc':>8} {'its trainable':>13}")
    for r in rows:
        print(f"{r['arm']:<8} {r['trials']:>6} {r['front']:>5} {r['hypervolume']:>11.4f} "
              f"{r['hypervolume'] / base:>8.3f} {r['seeds_dominated']:>8}/{r['seeds']:<6} "
              f"{r['best_accuracy']:>8.3f} {r['best_accuracy_trainable']:>13,.0f}")
    for r in rows:
        if r["seeds_not_dominated"]:
            print(f"{r['arm']}: seeds not dominated by its front: {', '.join(r['seeds_not_dominated'])}")
    # seconds: this invocation only; arms already finished in --out are reused, not rerun.
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": vars(args),
            "seconds": time.perf_counter() - start, "machine": platform.machine()}
    (out / "search_benchmark.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    Path(__file__).with_name(f"search_budget{args.budget}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
