"""Do a search's claimed wins survive? Point-estimate NSGA-II vs the noise-aware search with confirmation.

Per task, two arms at the same number of training runs:
- ``point``: NSGA-II, one training seed per trial, claims from the plain front on validation point estimates
  (front trial X dominates seed rule R), as hilo's summary did before the trust work;
- ``noise``: NSGA-II with every seed rule trained twice (seed variance), then the confirmation stage (K
  searched configs of the noise-aware front + the best rules, N fresh seeds, test split); its claims are the
  confirmed verdicts (X non-inferior to R, within 2 points at 95%, with no more trainable and active params).
Every claimed (X, R) pair of both arms is then re-trained with fresh seeds (never used by either arm) and
scored on the test split: a claim survives when X is non-inferior to R there. Resumable: each study is an
Optuna study under ``--out``, rerunning continues it.

    python -m benchmarks.trust --tasks arc-e,csqa
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from rich.console import Console  # noqa: E402

from objectives.front import dominated_by  # noqa: E402
from objectives.paired import compare, pooled_seed_variance  # noqa: E402
from objectives.records import RECORDS_ATTR, TEST_RECORDS_ATTR, QuestionRecords  # noqa: E402
from reports.confirmed import MARGIN, read_confirmation  # noqa: E402
from search.confirm import Pick, make_objective, queue  # noqa: E402
from search.run import main as search_main  # noqa: E402
from search.study import open_storage  # noqa: E402
from search.worker import run_worker  # noqa: E402

RECHECK_OFFSET = 2000  # recheck seeds: base + 2000 + i, used by neither arm
DIRS = ["maximize", "minimize", "minimize"]


def storage(out: Path, study: str) -> str:
    return f"sqlite:///{out / study / 'study.db'}"


def run_search(out: Path, study: str, task: str, args, *, budget: int, repeats: int, confirm: int) -> None:
    argv = ["--space", args.space, "--task", task, "--model", args.model, "--budget", str(budget),
            "--fidelity", str(args.fidelity), "--eval-examples", str(args.eval_examples), "--study", study,
            "--out-root", str(out), "--seed", str(args.seed), "--seed-repeats", str(repeats), "--resume",
            "--objectives", "accuracy,trainable,active", "--no-report"]
    if confirm:
        argv += ["--confirm", str(confirm), "--confirm-seeds", str(args.confirm_seeds),
                 "--confirm-rules", str(args.confirm_rules), "--test-examples", str(args.test_examples)]
    if search_main(argv) != 0:
        raise SystemExit(f"search {study} failed")


def cpu_seconds(url: str, names: list[str]) -> float:
    total = 0.0
    for name in names:
        if name in optuna.get_all_study_names(storage=url):
            total += sum(t.user_attrs.get("seconds", 0.0) for t in optuna.load_study(study_name=name, storage=url)
                         .get_trials(deepcopy=False))
    return total


def point_claims(url: str, study: str) -> list[tuple[dict, dict]]:
    """(X, R): for each seed rule, the smallest plain-front trial that dominates it on validation."""
    done = [t for t in optuna.load_study(study_name=study, storage=url).get_trials(states=(TrialState.COMPLETE,))]
    searched = [t for t in done if "seed_name" not in t.user_attrs]
    claims = []
    for rule in (t for t in done if "seed_name" in t.user_attrs):
        by = [t for t in searched if dominated_by([rule.values], [t.values], DIRS)[0]]
        if by:
            x = min(by, key=lambda t: t.values[1])
            claims.append(({"config": x.user_attrs["config"], "label": f"trial {x.number}", "trainable": x.values[1],
                            "active": x.values[2]},
                           {"config": rule.user_attrs["config"], "label": rule.user_attrs["seed_name"],
                            "trainable": rule.values[1], "active": rule.values[2]}))
    return claims


def noise_claims(url: str, study: str) -> tuple[list[tuple[dict, dict]], dict]:
    conf = read_confirmation(study, url)
    claims, facts = [], {"confirmed_configs": 0, "beats_every_rule": [], "half_size_non_inferior": None}
    if conf is None:
        return claims, facts
    facts["confirmed_configs"] = len(conf.configs)
    facts["beats_every_rule"] = conf.beats_every_rule()
    for v in conf.verdicts():
        if v.best is not None:
            claims.append(({"config": v.best.key, "label": f"trial {v.best.of_trial}", "trainable": v.best.trainable,
                            "active": v.best.active},
                           {"config": v.rule.key, "label": v.rule.label, "trainable": v.rule.trainable,
                            "active": v.rule.active}))
    if conf.rules:  # does the confirmed front reach the best rule at <= half its trainable and active params?
        best_rule = max(conf.rules, key=lambda r: conf.test_interval(r).estimate)
        half = [c for c in conf.candidates if c.trainable <= best_rule.trainable / 2 and c.active <= best_rule.active / 2]
        facts["best_rule"] = best_rule.label
        facts["half_size_non_inferior"] = [c.of_trial for c in half if conf.versus(c, best_rule).non_inferior(MARGIN)]
    return claims, facts


def recheck(out: Path, task: str, source_url: str, source_study: str, claims: list[tuple[dict, dict]], args,
            console: Console) -> dict[str, np.ndarray]:
    """Train every claimed config with fresh seeds on the source study's settings; test records per config."""
    name = f"trust-recheck-{task}"
    url = storage(out, name)
    (out / name).mkdir(parents=True, exist_ok=True)
    # heartbeats on: a recheck killed mid-run leaves a RUNNING trial that the rerun must recognise as stale
    study = optuna.create_study(study_name=name, storage=open_storage(url), directions=["maximize"],
                                load_if_exists=True)
    source = optuna.load_study(study_name=source_study, storage=source_url)
    for key, value in source.user_attrs.items():
        study.set_user_attr(key, value)
    picks, seen = [], set()
    for pair in claims:
        for c in pair:
            if c["config"] not in seen:
                seen.add(c["config"])
                picks.append(Pick(role="recheck", of_trial=-1, config=c["config"], label=c["label"]))
    queue(study, picks, seeds=args.recheck_seeds, base_seed=args.seed, seed_offset=RECHECK_OFFSET)
    run_worker(study, make_objective(study, test_examples=args.test_examples), budget=len(study.get_trials()),
               timeout=None, callbacks=[lambda s, t: console.print(f"  recheck {t.user_attrs['label']} seed "
                                                                   f"{t.user_attrs['train_seed']}: {t.state.name}")])
    tests: dict[str, list[np.ndarray]] = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        tests.setdefault(t.user_attrs["config"], []).append(
            QuestionRecords.decode(t.user_attrs[TEST_RECORDS_ATTR]).values("accuracy"))
    return {k: np.stack(v) for k, v in tests.items()}


def survival(claims, tests) -> dict:
    sv = pooled_seed_variance(list(tests.values()))
    rows = []
    for x, r in claims:
        if x["config"] not in tests or r["config"] not in tests:
            continue
        c = compare(tests[x["config"]], tests[r["config"]], seed_variance=sv)
        rows.append({"x": x["label"], "rule": r["label"], "delta": c.delta, "low": c.low, "high": c.high,
                     "non_inferior": c.non_inferior(MARGIN), "better": c.significantly_greater(0.05),
                     "trainable_ratio": x["trainable"] / r["trainable"], "active_ratio": x["active"] / max(r["active"], 1)})
    return {"claims": len(claims), "checked": len(rows), "survive_non_inferior": sum(r["non_inferior"] for r in rows),
            "survive_better": sum(r["better"] for r in rows), "pairs": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="arc-e,csqa")
    p.add_argument("--space", default="mola", help="mola: 5 seed rules, so the repeated seeds leave room to search")
    p.add_argument("--model", default="default")
    p.add_argument("--budget", type=int, default=16, help="trials of the noise arm (seed rules twice included)")
    p.add_argument("--fidelity", type=int, default=8)
    p.add_argument("--eval-examples", type=int, default=100)
    p.add_argument("--test-examples", type=int, default=500)
    p.add_argument("--confirm", type=int, default=2)
    p.add_argument("--confirm-seeds", type=int, default=2)
    p.add_argument("--confirm-rules", type=int, default=2)
    p.add_argument("--recheck-seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="reports/out/bench-trust")
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(soft_wrap=True)
    out = Path(args.out)
    start = time.perf_counter()
    results = {}
    for task in args.tasks.split(","):
        tag = Path(task).stem
        noise, point = f"trust-noise-{tag}", f"trust-point-{tag}"
        confirm_runs = (args.confirm + args.confirm_rules) * args.confirm_seeds
        console.rule(f"{task}: noise-aware arm ({args.budget} trials + up to {confirm_runs} confirmation runs)")
        run_search(out, noise, task, args, budget=args.budget, repeats=2, confirm=args.confirm)
        console.rule(f"{task}: point-estimate arm ({args.budget + confirm_runs} trials)")
        run_search(out, point, task, args, budget=args.budget + confirm_runs, repeats=1, confirm=0)
        n_url, p_url = storage(out, noise), storage(out, point)
        n_claims, facts = noise_claims(n_url, noise)
        p_claims = point_claims(p_url, point)
        console.rule(f"{task}: recheck of {len(n_claims) + len(p_claims)} claims with fresh seeds")
        tests = recheck(out, tag, n_url, noise, n_claims + p_claims, args, console)
        results[tag] = {
            "noise": {**survival(n_claims, tests), **facts,
                      "cpu_seconds": cpu_seconds(n_url, [noise, noise + ".confirm"])},
            "point": {**survival(p_claims, tests), "cpu_seconds": cpu_seconds(p_url, [point])},
        }
    load = os.getloadavg()
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "args": vars(args),
            "seconds": time.perf_counter() - start, "machine": platform.machine(), "cpus": os.cpu_count(),
            "loadavg": load, "command": "python -m benchmarks.trust " + " ".join(sys.argv[1:])}
    print(f"\n{'task':<7} {'arm':<6} {'cpu s':>7} {'claims':>6} {'checked':>7} {'non-inf':>7} {'better':>6}")
    for task, arms in results.items():
        for arm, r in arms.items():
            print(f"{task:<7} {arm:<6} {r['cpu_seconds']:>7.0f} {r['claims']:>6} {r['checked']:>7} "
                  f"{r['survive_non_inferior']:>7} {r['survive_better']:>6}")
        f = arms["noise"]
        print(f"{task}: best confirmed rule {f.get('best_rule')}; non-inferior at <= half its params: "
              f"{f.get('half_size_non_inferior') or 'none'}; beats every rule: {f['beats_every_rule'] or 'none'}")
    Path(__file__).with_name("trust.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
