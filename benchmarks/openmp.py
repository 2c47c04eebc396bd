"""OpenMP wait settings vs training-step time (issue 15): alone on the machine, and two jobs sharing it.

    python benchmarks/openmp.py [--settings passive,spin10k,spin300k,one-thread] [--modes alone,shared]
                                [--sections step,trial]

Each setting runs ``benchmarks/trial.py --versions after`` (this tree; step section: frozen base, PEFT LoRA
r8/r40, mola-5555, uniform, hilo-rule; trial section: ``make run`` trials of three seed configs) in a fresh
process with that setting in its environment, so every figure is measured under it. *alone*: one such run, nothing else started; *shared*: two identical
runs at once, as two workers of a search (or any other job) on the same cores would be. Why it matters: torch's
CPU wheel uses GNU OpenMP, whose idle threads either sleep at once (``OMP_WAIT_POLICY=PASSIVE``: every small
parallel op then waits ~100 us for a sleeping thread to wake) or spin ``GOMP_SPINCOUNT`` times first (fast when
the job has the cores, slow when another process needs them). Settings run one after the other, so compare
ratios and read the load averages recorded with each. Results: openmp.json next to this script (or --out).
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (environment, torch threads or None for torch's default)
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None),
    "spin10k": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"}, None),
    "spin300k": ({"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "300000"}, None),  # libgomp's own default
    "one-thread": ({"OMP_WAIT_POLICY": "PASSIVE"}, 1),
}
MODES = {"alone": 1, "shared": 2}


def run_setting(name: str, copies: int, repeats: int, sections: str) -> dict:
    """``copies`` simultaneous trial.py runs under setting ``name``; their step tables and load averages."""
    env_extra, threads = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    env.update(env_extra)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="hilo-openmp-"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "trial.py"), "--sections", sections, "--versions", "after",
           "--repeats", str(repeats)] + (["--threads", str(threads)] if threads else [])
    load_start = os.getloadavg()
    procs = [subprocess.Popen(cmd + ["--out", str(tmp / f"{i}.json")], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(copies)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"setting {name}: trial.py exited {p.returncode}: {err.strip().splitlines()[-1:]}")
    outs = [json.loads((tmp / f"{i}.json").read_text()) for i in range(copies)]
    return {"env": env_extra, "threads": threads, "copies": copies, "load_average_start": load_start,
            "load_average_end": os.getloadavg(), "command": " ".join(cmd[1:]),
            "rows": [o["step"]["rows"]["after"] for o in outs if "step" in o],
            "trials": [o["trial"]["after"] for o in outs if "trial" in o]}


def print_table(result: dict) -> None:
    if any(run["trials"] for run in result["runs"].values()):
        print("| setting | mode | trial s (each job) | train s | scoring s | trials/hour, all jobs "
              "| validation questions/s (each job) |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for key, run in result["runs"].items():
            name, mode = key.split("/")
            ts = run["trials"]
            cells = [" / ".join(f"{t[k]:.1f}" for t in ts) for k in ("trial_s", "train_s", "eval_s")]
            rate = " / ".join(f"{t['val_questions_per_s']:.1f}" for t in ts)
            print(f"| {name} | {mode} | {' | '.join(cells)} | {sum(t['trials_per_hour'] for t in ts):.0f} | {rate} |")
        print()
    if not any(run["rows"] for run in result["runs"].values()):
        return
    arms = list(next(iter(result["runs"].values()))["rows"][0])
    print("| setting | mode | " + " | ".join(f"{a} ms" for a in arms) + " | mola-5555 / base | mola-5555 / peft-r40 |")
    print("| --- | --- | " + " | ".join("---:" for _ in arms) + " | ---: | ---: |")
    for key, run in result["runs"].items():
        name, mode = key.split("/")
        for i, rows in enumerate(run["rows"]):
            ms = " | ".join(f"{rows[a]['median_s'] * 1e3:.0f}" for a in arms)
            mola = rows["mola-5555"]["median_s"]
            label = mode if run["copies"] == 1 else f"{mode} ({i + 1} of {run['copies']})"
            print(f"| {name} | {label} | {ms} | {mola / rows['base']['median_s']:.2f}x "
                  f"| {mola / rows['peft-r40']['median_s']:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=3, help="trial.py --repeats")
    parser.add_argument("--sections", default="step", help="trial.py --sections: step, trial or both")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    choices = (("--settings", args.settings, SETTINGS), ("--modes", args.modes, MODES),
               ("--sections", args.sections, ("step", "trial")))
    for field, given, allowed in choices:
        bad = [s for s in given.split(",") if s not in allowed]
        if bad:
            parser.exit(2, f"{field}: {bad[0]!r} is not one of {', '.join(allowed)}\n")
    result = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "command": " ".join(["python", "benchmarks/openmp.py"] + sys.argv[1:]),
                       "machine": platform.platform(), "cpus": os.cpu_count()}, "runs": {}}
    for mode in args.modes.split(","):
        for name in args.settings.split(","):
            print(f"{mode} / {name} ...", file=sys.stderr, flush=True)
            result["runs"][f"{name}/{mode}"] = run_setting(name, MODES[mode], args.repeats, args.sections)
            pathlib.Path(args.out).write_text(json.dumps(result, indent=1))  # kept if a later setting fails
    print_table(result)


if __name__ == "__main__":
    main()
