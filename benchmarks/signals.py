"""Which low-fidelity signal ranks configs like their high-fidelity test accuracy (issue 14, item 2)?

    python -m benchmarks.signals --tasks arc-e,csqa --seeds 2 --steps 12 --factor 4 --random-configs 5
    (on a busy CPU: --long-seeds 1,0 runs the high fidelity for seed 0 of arc-e only; --shard i/n splits the
    configs between parallel workers; --analyse-only --doc docs/benchmarks.md then writes the tables)

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

from benchmarks.doc_block import write_doc  # noqa: E402
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

    ``low`` is (seeds, configs) for training seeds 0..S-1, ``high`` (long seeds, configs) for seeds 0..L-1.
    target_s = mean of ``high`` over all its seeds, or with ``cross`` over seeds other than s only (so the low
    and the high fidelity share no training run; seeds without such a partner are left out).
    """
    corr = _correlation(kind)
    out = []
    for s in range(low.shape[0]):
        rows = [r for r in range(high.shape[0]) if not (cross and r == s)]
        if rows:
            out.append(corr(low[s], high[rows].mean(axis=0)))
    if not out:
        raise ValueError("cross-seed agreement needs a high-fidelity seed other than a low-fidelity one")
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
    if seeds < 2:
        raise ValueError(f"spread needs >= 2 seeds per config, got {seeds}")
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

    optuna.logging.set_verbosity(optuna.logging.WARNING)

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
    return spread_order(configs, shapes)


def spread_order(configs: dict[str, MoLoRAConfig], shapes: dict) -> dict[str, MoLoRAConfig]:
    """Smallest, largest, then each time the config farthest in size rank from those taken: any prefix of the
    study (one stopped early) spans the sizes."""
    names = sorted(configs, key=lambda n: config_trainable(configs[n], shapes))
    order = [0, len(names) - 1][:len(names)]
    while len(order) < len(names):
        order.append(max((i for i in range(len(names)) if i not in order),
                         key=lambda i: min(abs(i - j) for j in order)))
    return {names[i]: configs[names[i]] for i in order}


# ---------------------------------------------------------------------------------------------------- runs
def run_key(task: str, model: str, fidelity, seed: int, config: MoLoRAConfig) -> str:
    """The run cache's key: paper_table's, with the task's scored question ids in it, so a run made on other
    splits (a task whose data changed) is never reused."""
    import hashlib

    from benchmarks.paper_table import RunCache
    from objectives import get_task

    t = get_task(task)
    ids = [e.id for e in t.validation[:fidelity.max_eval_examples]]
    ids += [e.id for e in t.test[:fidelity.max_test_examples]]
    digest = hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]
    return RunCache.key(f"{task}@{digest}", model, fidelity, seed, config)


def run_one(task: str, name: str, config: MoLoRAConfig, seed: int, args, fidelity, cache) -> dict:
    """One long run (cached): validation records at every ``steps`` multiple, test records at the end."""
    from benchmarks.paper_table import RunCache
    from objectives import evaluate, get_task

    key = run_key(task, args.model, fidelity, seed, config)
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
              "test": test and {"accuracy": test.accuracy, "score": test.score, "loss": test.loss,
                                "records": test.encode()},
              "trainable": metrics.trainable_params, "active": metrics.active_params,
              "seconds": time.perf_counter() - started, "train_seconds": metrics.train_seconds,
              "eval_seconds": metrics.eval_seconds, "load": os.getloadavg()[0]}
    cache.put(key, record)
    print(f"{task:6} {name:10} seed {seed}: " + " ".join(
        f"@{s} acc {v['accuracy']:.3f} score {v['score']:.3f} loss {v['loss']:.3f}" for s, v in steps.items())
        + (f" | test {test.accuracy:.3f}" if test else "") + f" ({record['seconds']:.0f} s, load "
        f"{record['load']:.1f})", flush=True)
    return record


def zero_shot(task: str, args, fidelity, cache) -> dict:
    """The bare model's validation and test records on the study's questions (cached): how far training moved."""
    from objectives import base_model, get_task
    from objectives.evaluation import question_set_fingerprint
    from objectives.records import QuestionRecords
    from objectives.scoring import choice_scores
    from objectives.sequences import encode

    key = run_key(task, args.model, fidelity, -1, None)
    record = cache.get(key)
    if record is None:
        model, tokenizer = base_model(args.model)
        t, record = get_task(task), {"task": task, "seed": None, "name": "zero-shot"}
        for split, rows in (("validation", t.validation[:fidelity.max_eval_examples]),
                            ("test", t.test[:fidelity.max_test_examples])):
            encoded = encode(tokenizer, rows, max_length=fidelity.max_length)
            scores = choice_scores(model, encoded, pad_id=tokenizer.pad_token_id,
                                   device=next(model.parameters()).device, batch_rows=fidelity.eval_batch_size)
            r = QuestionRecords.from_scores(scores, [e.answer for e in encoded], question_set_fingerprint(encoded))
            record[split] = {"accuracy": r.accuracy, "score": r.score, "loss": r.loss}
        cache.put(key, record)
    return record


# ------------------------------------------------------------------------------------------------ analysis
def arrays(runs: list[dict], names: Sequence[str], seeds: Sequence[int], step: int | str) -> dict[str, np.ndarray]:
    """(seeds, configs) arrays of every signal at validation step ``step`` (or ``"test"``) over ``names``."""
    by = {(r["name"], r["seed"]): r for r in runs}
    out = {}
    for signal in SIGNALS:
        sign = -1.0 if signal == "loss" else 1.0  # every array reads higher = better
        rows = [[sign * (by[(n, s)]["test"] if step == "test" else by[(n, s)]["steps"][str(step)])[signal]
                 for n in names] for s in seeds]
        out[signal] = np.asarray(rows, np.float64)
    return out


def extremes(by: dict, names: Sequence[str]) -> dict:
    """Seed 0's best and worst config on the test split, and whether they differ at all (exact McNemar on the
    same questions): is the high fidelity itself able to rank?"""
    from objectives.paired import mcnemar_exact
    from objectives.records import QuestionRecords

    recs = {n: QuestionRecords.decode(by[(n, 0)]["test"]["records"]) for n in names}
    best, worst = max(names, key=lambda n: recs[n].accuracy), min(names, key=lambda n: recs[n].accuracy)
    return {"best": best, "worst": worst, "delta": recs[best].accuracy - recs[worst].accuracy,
            "questions": len(recs[best]), "mcnemar_p": mcnemar_exact(recs[best].correct, recs[worst].correct),
            "disagree": int((recs[best].correct != recs[worst].correct).sum())}


def analyse(runs: list[dict], names: Sequence[str], seeds: int, long_seeds: int, steps: Sequence[int], *,
            n_resamples: int) -> dict:
    """Per signal and step: the low-fidelity spread over the seeds that have the step and, when some seeds ran
    long, rank agreement with their test accuracy (all-seed and cross-seed) and the lead over accuracy."""
    by = {(r["name"], r["seed"]): r for r in runs}
    high = arrays(runs, names, range(long_seeds), "test")["accuracy"] if long_seeds else None
    out = {"configs": list(names), "seeds": seeds, "long_seeds": long_seeds, "signals": []}
    if high is not None:
        out["test_accuracy"] = {"mean": high.mean(axis=0).tolist(),
                                "spread": spread(high) if long_seeds > 1 else None, "extremes": extremes(by, names)}
    for step in steps:
        have = [s for s in range(seeds) if all(str(step) in by[(n, s)]["steps"] for n in names)]
        if not have:
            continue
        low = arrays(runs, names, have, step)
        for signal in SIGNALS:
            row = {"signal": signal, "step": step, "seeds": len(have),
                   "spread": spread(low[signal]) if len(have) > 1 else None}
            for kind in ("spearman", "kendall") if high is not None else ():
                for cross in (False, True) if len(have) > 1 or long_seeds > 1 else (False,):
                    tag = f"{kind}{'_cross' if cross else ''}"
                    row[tag] = rank_agreement(low[signal], high, kind=kind, cross=cross, n_resamples=n_resamples)
                    if signal != "accuracy":
                        row[f"{tag}_vs_accuracy"] = rank_agreement(low[signal], high, kind=kind, cross=cross,
                                                                   baseline=low["accuracy"], n_resamples=n_resamples)
            out["signals"].append(row)
    return out


def _separation(c: dict, signal: str) -> str:
    """Per task: whether the paired CI of (signal's Spearman - accuracy's) excludes 0, and which way."""
    if c["low"] > 0:
        return f"{signal} ranks better"
    if c["high"] < 0:
        return "accuracy ranks better"
    return "not separable"


def _ci(cell: dict) -> str:
    return f"{cell['value']:+.2f} [{cell['low']:+.2f}, {cell['high']:+.2f}]"


def _spread_cells(sp: dict | None, signal: str) -> str:
    if sp is None:
        return "n/a | n/a | n/a | n/a | n/a"
    scale, unit = (100.0, " pt") if signal == "accuracy" else (1.0, "")
    return (f"{sp['config_sd'] * scale:.3g}{unit} | {sp['seed_sd'] * scale:.3g}{unit} | {sp['f']:.2f} "
            f"({sp['p']:.2g}) | {sp['icc']:.2f} | {sp['distinct']}")


def markdown(result: dict, tasks: Sequence[str]) -> list[str]:
    """Per task: agreement with the high fidelity (where it ran) and the spread of each signal."""
    lines = []
    for t in tasks:
        res = result["tasks"][t]
        head = f"**{t}** ({len(res['configs'])} configs, {res['seeds']} seeds at low fidelity"
        if "test_accuracy" in res:
            acc, hs = res["test_accuracy"]["mean"], res["test_accuracy"]["spread"]
            head += (f", {res['long_seeds']} at high fidelity: test accuracy over configs {min(acc):.1%}-"
                     f"{max(acc):.1%}" + (f", config sd {hs['config_sd']:.1%} vs seed sd {hs['seed_sd']:.1%}"
                                          if hs else "") + ")")
            ex = res["test_accuracy"]["extremes"]
            head += (f"; seed 0's best vs worst on test, {ex['best']} vs {ex['worst']}: {ex['delta'] * 100:+.1f} pt "
                     f"on {ex['questions']} questions ({ex['disagree']} answered differently), exact McNemar "
                     f"p = {ex['mcnemar_p']:.2f}")
        else:
            head += "; no high-fidelity runs: spread only)"
        if "zero_shot" in res:
            zs = res["zero_shot"]
            head += (f"; zero-shot (no adapters): validation accuracy {zs['validation']['accuracy']:.1%}, score "
                     f"{zs['validation']['score']:.3f}, test accuracy {zs['test']['accuracy']:.1%}")
        lines += [head, "", "| signal | step | seeds | Spearman [95% CI] | Kendall [95% CI] | Spearman cross-seed | "
                  "Spearman minus accuracy's | config sd | seed sd | F (p) | ICC | distinct values |",
                  "| --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- | ---: | ---: |"]
        for row in res["signals"]:
            cell = {k: _ci(row[k]) if k in row else "n/a" for k in ("spearman", "kendall", "spearman_cross")}
            diff = _ci(row["spearman_vs_accuracy"]) if "spearman_vs_accuracy" in row else \
                ("(reference)" if "spearman" in row else "n/a")
            lines.append(f"| {row['signal']} | {row['step']} | {row['seeds']} | {cell['spearman']} | "
                         f"{cell['kendall']} | {cell['spearman_cross']} | {diff} | "
                         f"{_spread_cells(row['spread'], row['signal'])} |")
        lines.append("")
    return lines


def verdict(result: dict, tasks: Sequence[str], low_step: int) -> list[str]:
    """The winner signal at the search's fidelity (mean Spearman over the tasks with a high fidelity), whether
    it is separable from accuracy (the CI of its lead excludes 0 on every such task), and the task with the most
    room between configs (ICC at low fidelity)."""
    rows = {(t, r["signal"]): r for t in tasks for r in result["tasks"][t]["signals"] if r["step"] == low_step}
    ranked = [t for t in tasks if "spearman" in rows[(t, "accuracy")]]
    out, best = [], "accuracy"
    if ranked:
        mean = {s: float(np.mean([rows[(t, s)]["spearman"]["value"] for t in ranked])) for s in SIGNALS}
        best = max(mean, key=mean.get)
        out.append(f"- Mean Spearman over {', '.join(ranked)} at step {low_step}: "
                   + ", ".join(f"{s} {mean[s]:+.2f}" for s in SIGNALS) + f"; highest: **{best}**.")
        for s in SIGNALS[1:]:
            leads = [rows[(t, s)]["spearman_vs_accuracy"] for t in ranked]
            out.append(f"- {s} minus accuracy (Spearman, paired bootstrap over configs): " + "; ".join(
                f"{t} {_ci(c)} ({_separation(c, s)})" for t, c in zip(ranked, leads)) + ".")
    room = {t: {s: rows[(t, s)]["spread"]["icc"] for s in SIGNALS} for t in tasks if rows[(t, "accuracy")]["spread"]}
    if room:
        out.append(f"- Room between configs at step {low_step} (ICC(1): share of one run's variance due to the "
                   "config; accuracy / score / loss): "
                   + "; ".join(f"{t} " + " / ".join(f"{room[t][s]:.2f}" for s in SIGNALS) for t in room)
                   + f"; most headroom by {best}: **{max(room, key=lambda t: room[t][best])}**.")
    return out


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
    parser.add_argument("--long-seeds", default=None, help="per task (comma-separated, in --tasks order): how "
                        "many of the seeds run the high fidelity (default: all); the others run the low fidelity "
                        "only (a budget cut: their cross-seed agreement still counts)")
    parser.add_argument("--eval-examples", type=int, default=144, help="validation questions (low fidelity)")
    parser.add_argument("--test-examples", type=int, default=306, help="test questions (high fidelity)")
    parser.add_argument("--rules", default="mola-2468,mola-5555,mola-8642,mola-8228,alphalora,hilo-rule,uniform")
    parser.add_argument("--random-configs", type=int, default=5, help="random hilo-space samples spread over size")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--shard", default="0/1", help="i/n: train only configs i, i+n, ... (parallel workers "
                        "share the run cache; the analysis reads every config)")
    parser.add_argument("--reverse", action="store_true", help="train the configs last to first (a late worker "
                        "meets the others in the middle; finished runs are read back from the cache)")
    parser.add_argument("--analyse-only", action="store_true", help="use only cached runs; train nothing")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "signals.json")
    parser.add_argument("--doc", type=Path, default=None, help="write the section into this markdown file")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        get_task(t)  # unknown tasks or missing data fail before any training
    long_seeds = dict(zip(tasks, [int(v) for v in args.long_seeds.split(",")] if args.long_seeds
                          else [args.seeds] * len(tasks)))
    if len(long_seeds) != len(tasks) or not all(0 <= v <= args.seeds for v in long_seeds.values()):
        raise SystemExit(f"--long-seeds: one count in 0..{args.seeds} per task ({len(tasks)}), got {args.long_seeds}")
    started, load_before = time.perf_counter(), os.getloadavg()
    facts = model_facts(args.model, LLAMA_TARGETS, Console())
    space = build_space("hilo", facts)
    configs = pick_configs(space, facts.shapes, [r for r in args.rules.split(",") if r], n_random=args.random_configs)
    high_steps = args.factor * args.steps
    print("configs (trainable):", ", ".join(f"{n} {config_trainable(c, facts.shapes) / 1e6:.2f}M"
                                            for n, c in configs.items()), flush=True)
    fidelity = Fidelity(steps=high_steps, batch_size=args.batch_size, eval_every=args.steps,
                        max_eval_examples=args.eval_examples, max_test_examples=args.test_examples)
    short = Fidelity(steps=args.steps, batch_size=args.batch_size, eval_every=args.steps,
                     max_eval_examples=args.eval_examples, max_test_examples=0)
    cache = RunCache(args.results / "signals_runs.jsonl")
    runs: dict[str, list[dict]] = {t: [] for t in tasks}
    shard, shards = (int(v) for v in args.shard.split("/"))
    mine = set(list(configs)[shard::shards])
    for t in tasks:  # task by task, every seed of a config before the next: a stopped study has whole configs
        for name, config in (reversed(configs.items()) if args.reverse else configs.items()):
            for seed in sorted(range(args.seeds), key=lambda s: s < long_seeds[t]):  # the cheap short runs first
                fid = fidelity if seed < long_seeds[t] else short
                if args.analyse_only or name not in mine:
                    record = cache.get(run_key(t, args.model, fid, seed, config))
                else:
                    record = run_one(t, name, config, seed, args, fid, cache)
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
        result["tasks"][t] = analyse(runs[t], names, args.seeds, long_seeds[t], steps, n_resamples=args.resamples)
        result["tasks"][t]["trainable"] = {n: next(r["trainable"] for r in runs[t] if r["name"] == n) for n in names}
        result["tasks"][t]["zero_shot"] = zero_shot(t, args, fidelity, cache)
    per_run = [r["seconds"] for t in tasks for r in runs[t] if r["test"]] or [0.0]
    per_short = [r["seconds"] for t in tasks for r in runs[t] if not r["test"]] or [0.0]
    device = next(base_model(args.model)[0].parameters()).device
    command = "python -m benchmarks.signals " + shlex.join(sys.argv[1:])
    machine = (f"`{' '.join(filter(None, platform.uname()))}`, device {device}, {os.cpu_count()} CPUs, "
               f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {load_before[0]:.1f} at the start "
               f"of this invocation, {os.getloadavg()[0]:.1f} at the end, "
               f"{np.mean([r['load'] for t in tasks for r in runs[t]]):.1f} mean at the end of each run")
    sizes = sorted({n: result["tasks"][tasks[0]]["trainable"][n] for n in result["tasks"][tasks[0]]["configs"]}.items(),
                   key=lambda kv: kv[1])
    block = [f"Command: `{command}`", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine}. One long run "
             f"({high_steps} steps x batch {args.batch_size}, {args.eval_examples} validation questions scored every "
             f"{args.steps} steps, {args.test_examples} test questions at the end): {np.median(per_run):.0f} s "
             f"median ({min(per_run):.0f}-{max(per_run):.0f} s, {len(per_run)} runs); one low-fidelity-only run "
             f"({args.steps} steps): {np.median(per_short):.0f} s median ({len(per_short)} runs); "
             f"{(sum(per_run) + sum(per_short)) / 60:.0f} min summed.", "",
             f"Low fidelity: validation signal after {args.steps} steps (and {2 * args.steps}) of one training run, "
             f"as one search trial sees it; high fidelity: test accuracy after {high_steps} steps, mean over the "
             "seeds that ran it (per task: " + ", ".join(f"{t} {long_seeds[t]} of {args.seeds}" for t in tasks)
             + "; a seed's validation records at step k of its long run equal a k-step run's, so the other seeds "
             "ran k steps only). Spearman/Kendall = mean over seeds s of corr(low signal of seed s, high); "
             "cross-seed = against high-fidelity seeds other than s only (no shared run); 95% percentile "
             f"bootstrap over configs ({args.resamples} resamples, scipy.stats.bootstrap); 'minus accuracy's' = "
             "the paired bootstrap of the difference to validation accuracy's Spearman at the same step. Loss "
             "enters negated (higher is better). Spread: sd of the config means vs the pooled seed sd of one run, "
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
        write_doc(args.doc, block, section=SECTION, start=START, end=END)


if __name__ == "__main__":
    main()
