"""Which low-fidelity signal ranks configs like their high-fidelity test accuracy (issue 14, item 2)?

    python -m benchmarks.signals --tasks arc-e,csqa --seeds 2 --steps 12 --factor 4 --random-configs 5

Configs: the hilo space's rule seeds plus random samples of the space (Optuna RandomSampler) spread over
trainable-parameter sizes. Each (config, task, training seed) is ONE run of factor x steps steps: there is no LR
schedule and the batch order depends only on the seed, so its validation records at step ``steps`` are those of a
``steps``-step run (the search's low fidelity; also read at 2 x steps), and its test accuracy at the end is the
high fidelity. For every low-fidelity signal (validation accuracy, score = mean gold-choice probability,
loss = mean answer NLL) it reports Spearman and Kendall tau against the high-fidelity test accuracy (mean over
seeds), with bootstrap CIs over configs (scipy.stats.bootstrap), per task, plus the between-config vs
between-seed spread of each signal at low fidelity (how much room configs have to differ).

Finished runs go to benchmarks/results/signals_runs.jsonl (keyed like benchmarks/paper_table.py's cache), so a
killed run resumes where it stopped; results to benchmarks/signals.json and docs/benchmarks.md (--doc).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must be set before torch loads (see paper_table.py)
if not __package__:  # run as a file: its folder would shadow the search package with benchmarks/search.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from hilo_core import LLAMA_TARGETS, MoLoRAConfig, config_trainable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = ("accuracy", "score", "loss")
SECTION = "## Low-fidelity signals vs high-fidelity test accuracy (issue 14): `benchmarks/signals.py`"
START, END = "<!-- signals:start -->", "<!-- signals:end -->"


# ----------------------------------------------------------------------------------------------- statistics
def _correlation(kind: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """Spearman or Kendall (tau-b) of two vectors; 0 where one is constant (a signal that cannot rank)."""
    test = {"spearman": stats.spearmanr, "kendall": stats.kendalltau}[kind]

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            return 0.0
        return float(test(x, y).statistic)
    return corr


def seed_mean_correlation(low: np.ndarray, high: np.ndarray, *, kind: str, cross: bool = False) -> float:
    """Mean over seeds s of corr(low[s], target_s): one training run's signal, as one search trial sees it.

    ``low`` and ``high`` are (seeds, configs). target_s = mean of ``high`` over all seeds, or with ``cross``
    over the other seeds only (so the low and the high fidelity share no training run).
    """
    corr = _correlation(kind)
    out = []
    for s in range(low.shape[0]):
        rows = [r for r in range(high.shape[0]) if not (cross and r == s)]
        out.append(corr(low[s], high[rows].mean(axis=0)))
    return float(np.mean(out))


def rank_agreement(low: np.ndarray, high: np.ndarray, *, kind: str, cross: bool = False, baseline=None,
                   n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """``seed_mean_correlation`` and its percentile bootstrap CI over configs (columns resampled, paired).

    With ``baseline`` (another signal's (seeds, configs) array) the statistic is the difference
    corr(low) - corr(baseline) on the same resamples: is one signal separably better than the other?
    """
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    arrays = [low, high] + ([np.asarray(baseline, np.float64)] if baseline is not None else [])

    def statistic(index: np.ndarray) -> float:
        idx = index.astype(int)
        value = seed_mean_correlation(low[:, idx], high[:, idx], kind=kind, cross=cross)
        if baseline is not None:
            value -= seed_mean_correlation(arrays[2][:, idx], high[:, idx], kind=kind, cross=cross)
        return value

    n = low.shape[1]
    if any(a.shape[1] != n for a in arrays):
        raise ValueError(f"every array needs {n} configs (columns), got {[a.shape for a in arrays]}")
    res = stats.bootstrap((np.arange(n, dtype=np.float64),), statistic, vectorized=False, n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return {"value": statistic(np.arange(n)), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high)}


def spread(values: np.ndarray) -> dict[str, float]:
    """Between-config vs between-seed spread of a (seeds, configs) signal: one-way ANOVA with configs as groups.

    ``config_sd``: sd of the config means; ``seed_sd``: pooled within-config sd over seeds; ``f``/``p``: the
    ANOVA F test (scipy.stats.f_oneway) that configs differ at all; ``icc``: the share of one run's variance
    that is due to the config, ICC(1) = (MSB - MSW) / (MSB + (S - 1) MSW).
    """
    values = np.asarray(values, np.float64)
    seeds, configs = values.shape
    means = values.mean(axis=0)
    msw = float(values.var(axis=0, ddof=1).mean())
    msb = float(seeds * means.var(ddof=1))
    test = stats.f_oneway(*values.T)
    icc = (msb - msw) / (msb + (seeds - 1) * msw) if msb + msw > 0 else 0.0
    return {"config_sd": float(means.std(ddof=1)), "seed_sd": float(np.sqrt(msw)), "range": float(np.ptp(means)),
            "f": float(test.statistic) if np.isfinite(test.statistic) else 0.0,
            "p": float(test.pvalue) if np.isfinite(test.pvalue) else 1.0, "icc": float(icc),
            "distinct": int(np.unique(np.round(values, 9)).size)}


# ------------------------------------------------------------------------------------------------ configs
def pick_configs(space, shapes: dict, rules: Sequence[str], *, n_random: int, seed: int = 0,
                 pool: int = 200) -> dict[str, MoLoRAConfig]:
    """The space's rule seeds plus ``n_random`` RandomSampler draws at evenly spaced log-trainable quantiles."""
    import optuna
    from spaces import seed_config

    configs = {name: seed_config(name, n_layers=space.n_layers, layer_alphas=space.layer_alphas,
                                 target_modules=space.target_modules) for name in rules}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = {}
    for _ in range(pool):
        config = space.sample(study.ask())
        drawn.setdefault(config_trainable(config, shapes), config)
    sizes = sorted(drawn)
    logs = np.log(sizes)
    for i, q in enumerate(np.linspace(0, 1, n_random)):
        target = logs[0] + q * (logs[-1] - logs[0])
        size = sizes[int(np.argmin(np.abs(logs - target)))]
        configs[f"random-{i}"] = drawn.pop(size) if size in drawn else configs[f"random-{i - 1}"]
        sizes.remove(size) if size in sizes else None
        logs = np.log(sizes)
    return configs


# ---------------------------------------------------------------------------------------------------- runs
def run_one(task: str, name: str, config: MoLoRAConfig, seed: int, args, fidelity, cache) -> dict:
    """One long run (cached): validation records at every ``steps`` multiple, test records at the end."""
    from benchmarks.paper_table import RunCache
    from objectives import evaluate, get_task

    key = RunCache.key(task, args.model, fidelity, seed, config)
    record = cache.get(key)
    if record is not None:
        return record
    steps: dict[str, dict] = {}

    def keep(step: int, records) -> None:
        steps[str(step)] = {"accuracy": records.accuracy, "score": records.score, "loss": records.loss,
                            "records": records.encode(), "seconds": time.perf_counter() - started}
        print(f"  {task} {name} seed {seed} step {step}: accuracy {records.accuracy:.3f} "
              f"({steps[str(step)]['seconds']:.0f} s)", flush=True)

    started = time.perf_counter()
    metrics = evaluate(config, get_task(task), fidelity, seed=seed, model=args.model, on_records=keep)
    test = metrics.test_records
    record = {"task": task, "seed": seed, "name": name, "config": config.to_dict(), "steps": steps,
              "test": {"accuracy": test.accuracy, "score": test.score, "loss": test.loss, "records": test.encode()},
              "trainable": metrics.trainable_params, "active": metrics.active_params,
              "seconds": time.perf_counter() - started, "train_seconds": metrics.train_seconds,
              "eval_seconds": metrics.eval_seconds, "load": os.getloadavg()[0]}
    cache.put(key, record)
    print(f"{task:6} {name:10} seed {seed}: " + " ".join(
        f"@{s} acc {v['accuracy']:.3f} score {v['score']:.3f} loss {v['loss']:.3f}" for s, v in steps.items())
        + f" | test {test.accuracy:.3f} ({record['seconds']:.0f} s, load {record['load']:.1f})", flush=True)
    return record


# ------------------------------------------------------------------------------------------------ analysis
def arrays(runs: list[dict], names: Sequence[str], seeds: int, step: int | str) -> dict[str, np.ndarray]:
    """(seeds, configs) arrays of every signal at validation step ``step`` (or ``"test"``) over ``names``."""
    by = {(r["name"], r["seed"]): r for r in runs}
    out = {}
    for signal in SIGNALS:
        sign = -1.0 if signal == "loss" else 1.0  # every array reads higher = better
        rows = [[sign * (by[(n, s)]["test"] if step == "test" else by[(n, s)]["steps"][str(step)])[signal]
                 for n in names] for s in range(seeds)]
        out[signal] = np.asarray(rows, np.float64)
    return out


def analyse(runs: list[dict], names: Sequence[str], seeds: int, steps: Sequence[int], *, n_resamples: int) -> dict:
    """Per signal and step: rank agreement with the test accuracy (same-run and cross-seed), the difference to
    accuracy at the same step, and the low-fidelity spread; plus the high fidelity's own spread."""
    high = arrays(runs, names, seeds, "test")["accuracy"]
    out = {"configs": list(names), "test_accuracy": {"mean": high.mean(axis=0).tolist(), "spread": spread(high)},
           "signals": []}
    for step in steps:
        low = arrays(runs, names, seeds, step)
        for signal in SIGNALS:
            row = {"signal": signal, "step": step, "spread": spread(low[signal])}
            for kind in ("spearman", "kendall"):
                for cross in (False, True):
                    tag = f"{kind}{'_cross' if cross else ''}"
                    row[tag] = rank_agreement(low[signal], high, kind=kind, cross=cross, n_resamples=n_resamples)
                    if signal != "accuracy":
                        row[f"{tag}_vs_accuracy"] = rank_agreement(low[signal], high, kind=kind, cross=cross,
                                                                   baseline=low["accuracy"], n_resamples=n_resamples)
            out["signals"].append(row)
    return out


def _ci(cell: dict) -> str:
    return f"{cell['value']:+.2f} [{cell['low']:+.2f}, {cell['high']:+.2f}]"


def markdown(result: dict, tasks: Sequence[str]) -> list[str]:
    """Per task: the agreement table, then the spread table."""
    lines = []
    for t in tasks:
        res = result["tasks"][t]
        hs = res["test_accuracy"]["spread"]
        lines += [f"**{t}** ({len(res['configs'])} configs; high-fidelity test accuracy over configs "
                  f"{min(res['test_accuracy']['mean']):.1%}-{max(res['test_accuracy']['mean']):.1%}, config sd "
                  f"{hs['config_sd']:.1%} vs seed sd {hs['seed_sd']:.1%})", "",
                  "| signal | step | Spearman [95% CI] | Kendall [95% CI] | Spearman cross-seed | "
                  "Spearman minus accuracy's | config sd | seed sd | F (p) | ICC | distinct values |",
                  "| --- | ---: | --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: |"]
        for row in res["signals"]:
            sp, scale = row["spread"], (100.0 if row["signal"] == "accuracy" else 1.0)
            diff = _ci(row["spearman_vs_accuracy"]) if "spearman_vs_accuracy" in row else "(reference)"
            unit = " pt" if row["signal"] == "accuracy" else ""
            lines.append(f"| {row['signal']} | {row['step']} | {_ci(row['spearman'])} | {_ci(row['kendall'])} | "
                         f"{_ci(row['spearman_cross'])} | {diff} | {sp['config_sd'] * scale:.3g}{unit} | "
                         f"{sp['seed_sd'] * scale:.3g}{unit} | {sp['f']:.2f} ({sp['p']:.2g}) | {sp['icc']:.2f} | "
                         f"{sp['distinct']} |")
        lines.append("")
    return lines


def verdict(result: dict, tasks: Sequence[str], low_step: int) -> list[str]:
    """The winner signal at the search's fidelity (mean Spearman over tasks), whether it is separable from
    accuracy (the CI of its lead excludes 0 on every task), and the task with the most room between configs."""
    rows = {(t, r["signal"]): r for t in tasks for r in result["tasks"][t]["signals"] if r["step"] == low_step}
    mean = {s: float(np.mean([rows[(t, s)]["spearman"]["value"] for t in tasks])) for s in SIGNALS}
    best = max(mean, key=mean.get)
    out = [f"- Mean Spearman over {', '.join(tasks)} at step {low_step}: "
           + ", ".join(f"{s} {mean[s]:+.2f}" for s in SIGNALS) + f"; highest: **{best}**."]
    if best != "accuracy":
        leads = [rows[(t, best)]["spearman_vs_accuracy"] for t in tasks]
        separable = all(c["low"] > 0 for c in leads)
        out.append(f"- {best} minus accuracy (Spearman, paired bootstrap over configs): "
                   + "; ".join(f"{t} {_ci(c)}" for t, c in zip(tasks, leads))
                   + (": separable on every task." if separable else ": not separable (a CI includes 0)."))
    room = {t: rows[(t, best)]["spread"]["icc"] for t in tasks}
    top = max(room, key=room.get)
    out.append(f"- Room between configs at step {low_step} (ICC of {best}: share of one run's variance due to the "
               "config): " + ", ".join(f"{t} {room[t]:.2f}" for t in tasks) + f"; most headroom: **{top}**.")
    return out


def write_doc(doc: Path, block: list[str]) -> None:
    """Replace this benchmark's generated block in ``doc`` (appending its section the first time)."""
    text = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    generated = "\n".join([START, *block, END])
    if START in text and END in text:
        text = text[:text.index(START)] + generated + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{generated}\n"
    doc.write_text(text)


def main() -> None:
    from rich.console import Console

    from benchmarks.paper_table import RunCache
    from objectives import Fidelity, base_model, get_task
    from search.facts import build_space, model_facts

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default="arc-e,csqa", help="comma-separated task names")
    parser.add_argument("--steps", type=int, default=12, help="low fidelity: optimiser steps (the search's)")
    parser.add_argument("--factor", type=int, default=4, help="high fidelity = factor x steps")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2, help="training seeds 0..S-1 per config and task")
    parser.add_argument("--eval-examples", type=int, default=144, help="validation questions (low fidelity)")
    parser.add_argument("--test-examples", type=int, default=306, help="test questions (high fidelity)")
    parser.add_argument("--rules", default="mola-2468,mola-5555,mola-8642,mola-8228,alphalora,hilo-rule,uniform")
    parser.add_argument("--random-configs", type=int, default=5, help="random hilo-space samples spread over size")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--analyse-only", action="store_true", help="use only cached runs; train nothing")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "signals.json")
    parser.add_argument("--doc", type=Path, default=None, help="write the section into this markdown file")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        get_task(t)  # unknown tasks or missing data fail before any training
    started, load_before = time.perf_counter(), os.getloadavg()
    facts = model_facts(args.model, LLAMA_TARGETS, Console())
    space = build_space("hilo", facts)
    configs = pick_configs(space, facts.shapes, [r for r in args.rules.split(",") if r], n_random=args.random_configs)
    high_steps = args.factor * args.steps
    fidelity = Fidelity(steps=high_steps, batch_size=args.batch_size, eval_every=args.steps,
                        max_eval_examples=args.eval_examples, max_test_examples=args.test_examples)
    cache = RunCache(args.results / "signals_runs.jsonl")
    runs: dict[str, list[dict]] = {t: [] for t in tasks}
    for seed in range(args.seeds):  # seed-major: a stopped study still has every config once
        for name, config in configs.items():
            for t in tasks:
                if args.analyse_only:
                    record = cache.get(RunCache.key(t, args.model, fidelity, seed, config))
                else:
                    record = run_one(t, name, config, seed, args, fidelity, cache)
                if record is not None:
                    runs[t].append({**record, "name": name})
    steps = [s for s in (args.steps, 2 * args.steps) if s < high_steps]
    result = {"tasks": {}}
    for t in tasks:
        done = {n for n in configs if all(any(r["name"] == n and r["seed"] == s for r in runs[t])
                                          for s in range(args.seeds))}
        names = [n for n in configs if n in done]
        if len(names) < 4:
            raise SystemExit(f"{t}: only {len(names)} configs have all {args.seeds} seeds; need >= 4 to rank")
        result["tasks"][t] = analyse(runs[t], names, args.seeds, steps, n_resamples=args.resamples)
        result["tasks"][t]["trainable"] = {n: next(r["trainable"] for r in runs[t] if r["name"] == n) for n in names}
    per_run = [r["seconds"] for t in tasks for r in runs[t]]
    device = next(base_model(args.model)[0].parameters()).device
    command = "python -m benchmarks.signals " + shlex.join(sys.argv[1:])
    machine = (f"`{' '.join(filter(None, platform.uname()))}`, device {device}, {os.cpu_count()} CPUs, "
               f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {load_before[0]:.1f} at the start "
               f"of this invocation, {os.getloadavg()[0]:.1f} at the end, "
               f"{np.mean([r['load'] for t in tasks for r in runs[t]]):.1f} mean at the end of each run")
    sizes = sorted({n: result["tasks"][tasks[0]]["trainable"][n] for n in result["tasks"][tasks[0]]["configs"]}.items(),
                   key=lambda kv: kv[1])
    block = [f"Command: `{command}`", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine}. One run "
             f"({high_steps} steps x batch {args.batch_size}, {args.eval_examples} validation questions scored at "
             f"every {args.steps} steps, {args.test_examples} test questions at the end): "
             f"{np.median(per_run):.0f} s median ({min(per_run):.0f}-{max(per_run):.0f} s), {len(per_run)} runs, "
             f"{sum(per_run) / 60:.0f} min summed.", "",
             f"Low fidelity: validation signal after {args.steps} steps (and {2 * args.steps}) of one training run, "
             f"as one search trial sees it; high fidelity: test accuracy after {high_steps} steps, mean over "
             f"training seeds 0..{args.seeds - 1}. Spearman/Kendall = mean over seeds of corr(low signal of seed s, "
             "high); cross-seed = against the other seeds' high fidelity only (no shared run); 95% percentile "
             f"bootstrap over configs ({args.resamples} resamples, scipy.stats.bootstrap). Loss enters negated "
             "(higher is better). Spread columns: sd of the config means vs the pooled seed sd of one run, "
             "one-way ANOVA F over configs (scipy.stats.f_oneway) and ICC(1).", "",
             "Configs (trainable parameters): " + ", ".join(f"{n} {v / 1e6:.2f}M" for n, v in sizes) + ".", "",
             *markdown(result, tasks), "Verdict (computed from the tables):", "",
             *verdict(result, tasks, args.steps)]
    print("\n".join(block), flush=True)
    result.update({"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "machine": machine, "fidelity": fidelity.to_dict(), "low_steps": steps, "seeds": args.seeds,
                   "seconds_per_run": per_run, "invocation_seconds": time.perf_counter() - started,
                   "configs": {n: c.to_dict() for n, c in configs.items()}, "doc": block})
    args.json.write_text(json.dumps(result, indent=1))
    if args.doc is not None:
        write_doc(args.doc, block)


if __name__ == "__main__":
    main()
