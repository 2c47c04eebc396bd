"""Does successive halving find a better confirmed front for the same compute? Three arms, equal time each:

- ``nsga2``: NSGA-II, every trial at full fidelity, no pruning;
- ``pruner``: the same with today's median pruner (on accuracy, in a shadow study);
- ``asha``: NSGA-II proposals under ``--scheduler asha`` (noise-aware promotion, continued training);
- ``asha-prior``: the same with ``--prior rules`` (the first trials drawn near the seed rules; off by default
  in search.run until this arm says it helps);
- ``one-shot``: NSGA-II under ``--evaluator one-shot`` (one super-adapter trained first, its seconds charged to the
  arm's time (as search.run records it: a super-adapter killed and continued is charged its last part only);
  trials score their config inside it).

Per task and repetition (search seed), each arm searches for ``--minutes`` of trial time (the sum of its trials'
seconds; a resumed arm gets only what it has left), then its front is confirmed (``search.confirm``: the top
candidates and rules retrained with fresh seeds, scored on the test split). Reported per arm: hypervolume of the
confirmed configs (test accuracy, trainable, active) in one normalisation box per task shared by every arm and
repetition, and configs evaluated per CPU-hour of trial time. Resumable: every study lives under ``--out``.

    python -m benchmarks.scheduler --tasks arc-e,csqa --reps 3 --minutes 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from objectives.front import hypervolume, normalise, plain_front  # noqa: E402
from reports.confirmed import Confirmation, read_confirmation  # noqa: E402
from objectives.paired import compare, pooled_seed_variance  # noqa: E402
from reports.rungs import rung_table, rungs_study_name  # noqa: E402
from search.confirm import main as confirm_main  # noqa: E402
from search.one_shot import SUPERNET_ATTR  # noqa: E402
from search.run import main as search_main  # noqa: E402

ARMS = ("nsga2", "pruner", "asha", "asha-prior", "one-shot")
DIRS = ["maximize", "minimize", "minimize"]
MAX_TRIALS = 500  # queued per arm; the time limit ends the search long before


def storage(out: Path, study: str) -> str:
    return f"sqlite:///{out / study / 'study.db'}"


def spent_seconds(url: str, study: str) -> float:
    """Trial time an arm has used so far: its trials, its rungs' runs and a one-shot arm's super-adapter training
    (confirmation excluded)."""
    names = set(optuna.get_all_study_names(storage=url)) if Path(url[len("sqlite:///"):]).is_file() else set()
    studies = {name: optuna.load_study(study_name=name, storage=url)
               for name in (study, rungs_study_name(study)) if name in names}
    supernet = (studies[study].user_attrs.get(SUPERNET_ATTR) or {}) if study in studies else {}
    return supernet.get("seconds", 0.0) + sum(t.user_attrs.get("seconds", 0.0) for s in studies.values()
                                              for t in s.get_trials(deepcopy=False))


def configs_evaluated(url: str, study: str) -> int:
    s = optuna.load_study(study_name=study, storage=url)
    return len({t.user_attrs["config"] for t in s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                                                       TrialState.PRUNED))
                if "config" in t.user_attrs})


def search_argv(study: str, arm: str, task: str, rep: int, args, *, budget: int, left: float) -> list[str]:
    argv = ["--space", args.space, "--task", task, "--model", args.model, "--budget", str(budget),
            "--budget-hours", str(left / 3600), "--fidelity", str(args.fidelity), "--batch-size",
            str(args.batch_size), "--eval-examples", str(args.eval_examples), "--study", study, "--out-root",
            str(args.out), "--seed", str(rep), "--seed-repeats", str(args.seed_repeats), "--resume", "--no-report"]
    asha = ["--scheduler", "asha", "--eta", str(args.eta)]
    one_shot = ["--evaluator", "one-shot"] + ([] if args.supernet_steps is None else
                                              ["--supernet-steps", str(args.supernet_steps)])
    return argv + {"nsga2": [], "pruner": ["--pruner", "median"], "asha": asha, "one-shot": one_shot,
                   "asha-prior": [*asha, "--prior", "rules", "--prior-decay", str(args.prior_decay)]}[arm]


def run_arm(out: Path, study: str, arm: str, task: str, rep: int, args) -> None:
    url = storage(out, study)
    if arm == "one-shot" and spent_seconds(url, study) == 0:
        # train the super-adapter (and score one trial) first, so the search's time limit is what it leaves
        if search_main(search_argv(study, arm, task, rep, args, budget=1, left=args.minutes * 60)) not in (0, 1):
            raise SystemExit(f"search {study} failed")
    left = args.minutes * 60 - spent_seconds(url, study)
    if left > 0:
        if search_main(search_argv(study, arm, task, rep, args, budget=MAX_TRIALS, left=left)) not in (0, 1):
            raise SystemExit(f"search {study} failed")
    if confirm_main(["--study", study, "--out-root", str(out), "--top", str(args.confirm), "--seeds",
                     str(args.confirm_seeds), "--rules", str(args.confirm_rules), "--test-examples",
                     str(args.test_examples)]) != 0:
        raise SystemExit(f"confirmation of {study} failed")


def confirmed_points(conf: Confirmation | None) -> list[tuple[float, float, float]]:
    """(test accuracy mean, trainable, active) of every config the arm's confirmation retrained."""
    return [] if conf is None else [(conf.test_interval(c).estimate, c.trainable, c.active) for c in conf.configs]


def arm_details(url: str, study: str, conf: Confirmation | None) -> dict:
    """What an arm's run left: its confirmed configs (test accuracy with interval, sizes), its trials by state and,
    for a scheduled arm, its rungs (configs, runs, promotions, seconds)."""
    s = optuna.load_study(study_name=study, storage=url)
    return {"confirmed": conf.table() if conf else [], "covers": conf.covers() if conf else "",
            "trials": dict(Counter(t.state.name for t in s.get_trials(deepcopy=False))),
            "rungs": [r.to_dict() for r in rung_table(s)]}


def best_versus(conf: Confirmation | None, base: Confirmation | None) -> dict | None:
    """The arm's pick (its best confirmed candidate, chosen on validation) against the base arm's pick, paired on
    the same test questions; the seed variance pooled over both confirmations' configs."""
    a, b = (conf.best_candidate() if conf else None), (base.best_candidate() if base else None)
    if a is None or b is None:
        return None
    c = compare(a.test, b.test, seed_variance=pooled_seed_variance([x.test for x in conf.configs + base.configs]))
    return {"pick": a.label, "base_pick": b.label, "delta": c.delta, "low": c.low, "high": c.high,
            "questions": c.n_questions, "separable": not (c.low <= 0.0 <= c.high)}


def shared_box(points: list[tuple[float, float, float]]) -> tuple[list[float], list[float]]:
    pts = np.asarray(points, dtype=float)
    return [pts[:, 0].max(), pts[:, 1].min(), pts[:, 2].min()], [pts[:, 0].min(), pts[:, 1].max(), pts[:, 2].max()]


def front_hypervolume(points, box) -> float:
    if not points:
        return 0.0
    front = [points[i] for i in plain_front(points, DIRS)]
    return hypervolume(normalise(front, DIRS, box))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="arc-e,csqa")
    p.add_argument("--reps", type=int, default=3, help="repetitions (search seeds 0..reps-1)")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--minutes", type=float, default=20.0, help="trial time per arm and repetition")
    p.add_argument("--space", default="hilo")
    p.add_argument("--model", default="default")
    p.add_argument("--fidelity", type=int, default=36, help="full fidelity: steps of nsga2's trials, asha's top rung")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-examples", type=int, default=150)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--seed-repeats", type=int, default=2, help="training seeds per seed-rule config")
    p.add_argument("--supernet-steps", type=int, default=None,
                   help="one-shot: super-adapter steps (default search.run's: 5 x --fidelity)")
    p.add_argument("--prior-decay", type=int, default=12, help="asha-prior: trials over which the prior fades")
    p.add_argument("--confirm", type=int, default=2)
    p.add_argument("--confirm-seeds", type=int, default=2)
    p.add_argument("--confirm-rules", type=int, default=1)
    p.add_argument("--test-examples", type=int, default=500)
    p.add_argument("--analyse-only", action="store_true",
                   help="search and confirm nothing: report the arms already under --out (e.g. arms run side by side"
                        " as separate processes, each with --arms ARM)")
    p.add_argument("--out", default="reports/out/bench-scheduler")
    p.add_argument("--json", type=Path, default=Path(__file__).with_name("scheduler.json"))
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out, arms = Path(args.out), args.arms.split(",")
    start, load_before = time.perf_counter(), os.getloadavg()
    results: dict = {}
    for task in args.tasks.split(","):
        tag = Path(task).stem
        if not args.analyse_only:
            for rep in range(args.reps):
                for arm in arms:
                    run_arm(out, f"sched-{arm}-{tag}-r{rep}", arm, task, rep, args)
        runs = {(arm, rep): f"sched-{arm}-{tag}-r{rep}" for arm in arms for rep in range(args.reps)}
        urls = {k: storage(out, s) for k, s in runs.items()}
        confs = {k: read_confirmation(s, urls[k]) for k, s in runs.items()}  # each read once
        points = {k: confirmed_points(conf) for k, conf in confs.items()}
        box = shared_box([pt for pts in points.values() for pt in pts])
        results[tag] = {arm: [{"rep": rep, "hypervolume": front_hypervolume(points[(arm, rep)], box),
                               "confirmed_configs": len(points[(arm, rep)]),
                               "configs": configs_evaluated(urls[(arm, rep)], runs[(arm, rep)]),
                               "trial_seconds": spent_seconds(urls[(arm, rep)], runs[(arm, rep)]),
                               **arm_details(urls[(arm, rep)], runs[(arm, rep)], confs[(arm, rep)]),
                               "pick_vs_nsga2": None if arm == "nsga2" or "nsga2" not in arms else best_versus(
                                   confs[(arm, rep)], confs[("nsga2", rep)])}
                              for rep in range(args.reps)] for arm in arms}
        results[tag]["box"] = box
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": {k: str(v) for k, v in vars(args).items()},
            "seconds": time.perf_counter() - start, "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "command": "python -m benchmarks.scheduler " + " ".join(sys.argv[1:])}
    print(f"\n{'task':<7} {'arm':<10} {'rep':>3} {'HV':>7} {'HV / nsga2':>10} {'configs/CPU-h':>13} {'ratio':>6}"
          f"  pick vs nsga2's pick (test, paired)")
    for tag, per_arm in results.items():
        base = {r["rep"]: r for r in per_arm.get("nsga2", [])}
        for arm in arms:
            for r in per_arm[arm]:
                rate = r["configs"] / max(r["trial_seconds"] / 3600, 1e-9)
                r["configs_per_cpu_hour"] = rate
                b = base.get(r["rep"])
                hv_ratio = r["hypervolume"] / b["hypervolume"] if b and b["hypervolume"] > 0 else float("nan")
                rate_ratio = rate / (b["configs"] / max(b["trial_seconds"] / 3600, 1e-9)) if b else float("nan")
                v = r["pick_vs_nsga2"]
                versus = "" if v is None else (f"  {v['pick']} vs {v['base_pick']}: {v['delta'] * 100:+.1f} points "
                                               f"[{v['low'] * 100:+.1f}, {v['high'] * 100:+.1f}], n={v['questions']}")
                print(f"{tag:<7} {arm:<10} {r['rep']:>3} {r['hypervolume']:>7.4f} {hv_ratio:>10.2f} {rate:>13.1f} "
                      f"{rate_ratio:>6.2f}{versus}")
    args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
