"""Search throughput by workers and torch threads (issue 15): a real ``search.run`` at the ``make run``
settings, one arm after another on the same machine.

    python benchmarks/search_workers.py [--budget 12] [--arms one-default,one-1t,two-auto,two-oversub]

Arms (all with ``OMP_WAIT_POLICY=PASSIVE`` as ``make run`` sets it, ``OMP_NUM_THREADS`` unset):
*one-default* ``--workers 1`` (torch's default: a thread per core); *one-1t* ``--workers 1 --threads 1``;
*two-auto* ``--workers 2`` (the default now: the cores divided between the two processes);
*two-oversub* ``--workers 2 --threads <cores>`` (what ``--workers 2`` did before: every process all cores).
Each arm is a fresh study of ``--budget`` trials (seeds first, then NSGA-II), no confirmation, no report.
Trials per hour count from the first trial's start to the last one's end (model loading excluded; wall s
includes it). Finished arms are kept in the output JSON and skipped on a rerun (delete it to measure anew).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import optuna

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAKE_RUN = ["--space", "hilo", "--task", "csqa", "--model", "default", "--seed", "0", "--fidelity", "12",
            "--eval-examples", "100", "--objectives", "accuracy,trainable,active", "--seed-repeats", "2",
            "--confirm", "0", "--no-report"]


def arms(cores: int) -> dict[str, list[str]]:
    return {"one-default": ["--workers", "1"], "one-1t": ["--workers", "1", "--threads", "1"],
            "two-auto": ["--workers", "2"], "two-oversub": ["--workers", "2", "--threads", str(cores)]}


def run_arm(flags: list[str], budget: int) -> dict:
    """One fresh search with ``flags``; its wall time, trial span and per-trial figures from its storage."""
    out_root = pathlib.Path(tempfile.mkdtemp(prefix="hilo-workers-"))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, "-m", "search.run", *MAKE_RUN, "--budget", str(budget), *flags,
           "--out-root", str(out_root), "--study", "s"]
    load_start, start = os.getloadavg(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(flags)}: search.run exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{out_root}/s/study.db").get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    return {"flags": flags, "wall_s": wall, "span_s": span, "completed": len(done), "trials": len(trials),
            "trials_per_hour": 3600 * len(done) / span, "workers": len({t.user_attrs["worker"] for t in done}),
            "threads": sorted({t.user_attrs["threads"] for t in done}),
            "mean_trial_s": sum(t.user_attrs["seconds"] for t in done) / len(done),
            "seed_accuracies": {f"{t.user_attrs['seed_name']}#{t.number}": t.values[0] for t in done
                                if "seed_name" in t.user_attrs},
            "load_average_start": load_start, "load_average_end": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--budget", type=int, default=12)
    parser.add_argument("--arms", default=",".join(arms(cores)))
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    known = arms(cores)
    bad = [a for a in args.arms.split(",") if a not in known]
    if bad:
        parser.exit(2, f"--arms: {bad[0]!r} is not one of {', '.join(known)}\n")
    if args.budget <= 0:
        parser.exit(2, f"--budget: {args.budget} is not a positive number of trials\n")
    out = pathlib.Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    result["meta"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "command": " ".join(["python", "benchmarks/search_workers.py"] + sys.argv[1:]),
                      "machine": platform.platform(), "cores": cores, "budget": args.budget}
    for name in args.arms.split(","):
        if name in result["runs"] and result["runs"][name]["completed"] == args.budget:
            continue
        print(f"{name}: {' '.join(known[name])} ...", file=sys.stderr, flush=True)
        result["runs"][name] = run_arm(known[name], args.budget)
        out.write_text(json.dumps(result, indent=1))  # kept if a later arm fails or the run is killed
    base = result["runs"].get("one-default", {}).get("trials_per_hour")
    print("| arm | flags | threads per worker | wall s | trials/hour | vs one-default | mean trial s"
          " | load start-end |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | --- |")
    for name, r in result["runs"].items():
        ratio = f"{r['trials_per_hour'] / base:.2f}x" if base else "-"
        load = f"{r['load_average_start'][0]:.1f}-{r['load_average_end'][0]:.1f}"
        print(f"| {name} | `{' '.join(r['flags'])}` | {r['threads']} | {r['wall_s']:.0f} | {r['trials_per_hour']:.0f}"
              f" | {ratio} | {r['mean_trial_s']:.1f} | {load} |")


if __name__ == "__main__":
    main()
