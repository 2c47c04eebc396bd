"""Does a config's score inside a trained super-adapter rank configs as their standalone score does (issue 20)?

    python -m benchmarks.one_shot_rank --tasks arc-e,csqa --batch-size 4 --steps 8 --factor 4 \
        --eval-examples 64 --test-examples 300 --doc docs/benchmarks.md
    (the flags that decide the standalone runs must be those benchmarks/signals.py ran with: its runs are reused)

Standalone side: nothing is trained here by default. The finished high-fidelity runs of benchmarks/signals.py
(benchmarks/results/signals_runs.jsonl: ``factor x steps`` steps, test accuracy at the end) are read back by
their own cache key (``signals.run_key``: task, scored question ids, model, fidelity, seed, config), so only runs
of exactly this fidelity count. Per task the configs with high-fidelity runs for training seeds 0..S-1 are taken
(``--seeds``; where fewer than 4 configs have all S, the largest S' < S that gives 4 is used and reported), and
the standalone score is the mean over those seeds of the test accuracy (also of the validation accuracy at the
last step, on the same validation questions the one-shot side scores). signals.py's configs are the hilo
space's rule seeds plus random draws spread over trainable size: 12 in its cache, below the 16 the issue asks
for; ``--extra-configs N`` adds N more random draws of the space (another RandomSampler seed) trained by
signals.py's own ``run_one`` into the same cache, and ``--fill-seeds`` trains the missing seeds of cached
configs the same way (both cost standalone runs; the count used is always reported).

One-shot side: per task one elastic super-adapter (objectives.supernet) whose layout covers every study config,
trained with the runs' batch size, learning rate and sequence length for ``--supernet-steps`` steps (default
4 x the high fidelity) with the sandwich rule; ``--draw`` picks its 2 random sub-configs per step: ``space``
(default) as ``--evaluator one-shot`` trains it (the space's largest and smallest configs plus 2 of 256 seeded
draws of the space, search.one_shot.plan_supernet; the study configs are not trained explicitly), ``configs``
(the layout's largest config, the smallest study config and 2 study configs), ``both`` (the space's largest and
smallest, one space draw and one study config). ``--seed`` is 1 by default, not 0: signals.py's random configs
are RandomSampler(seed=0) draws of the same space, so seed 0's pool of space draws would hold them. Every config
is then scored inside it with ``score_subconfig`` on the same validation questions and the same test questions
as the standalone runs (records checked by fingerprint). The checkpoint lives in
benchmarks/results/one_shot_rank/<task>-<id>/ (a killed training resumes bit for bit, a finished one is reused,
one of fewer steps is continued; the folder gets a ``*`` .gitignore); scores go to
benchmarks/results/one_shot_rank_runs.jsonl, keyed like signals.py's cache plus the super-adapter's identity.

Reported per task: Spearman and Kendall tau-b between each one-shot signal (validation accuracy, validation
score = mean gold-choice probability, test accuracy) and the standalone score, with 95% percentile bootstrap CIs
over configs (paired resampling, signals.rank_agreement), the same for one standalone seed against another (what
a second standalone run would agree), and the between-config spread of both sides. Results to
benchmarks/one_shot_rank.json and, with --doc, a generated block of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must be set before torch loads (see paper_table.py)
if not __package__:  # run as a file: its folder would shadow the search package with benchmarks/search.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Sequence  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.doc_block import write_doc  # noqa: E402
from benchmarks.signals import rank_agreement, run_key, spread  # noqa: E402
from hilo_core import LLAMA_TARGETS, MoLoRAConfig, config_trainable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SECTION = ("## One-shot score vs standalone score (issue 20, ranking study): `benchmarks/one_shot_rank.py`")
START, END = "<!-- one-shot-rank:start -->", "<!-- one-shot-rank:end -->"
ONE_SHOT = ("val_accuracy", "val_score", "test_accuracy")  # signals read inside the super-adapter
TARGETS = ("test_accuracy", "val_accuracy")  # standalone scores (mean over seeds), the first one the issue's
DRAWS = ("space", "configs", "both")
MIN_CONFIGS = 4
KINDS = ("spearman", "kendall")


# ----------------------------------------------------------------------------------------------- statistics
def rank_study(one_shot: dict[str, Sequence[float]], standalone: dict[str, np.ndarray], *, n_resamples: int = 2000,
               seed: int = 0) -> dict:
    """Rank agreement of every one-shot signal (configs,) with every standalone target (seeds, configs).

    Per (signal, target, kind): corr(one-shot, mean of the target over seeds) with its 95% percentile bootstrap
    CI over configs (paired: one resample of configs for both sides; ``signals.rank_agreement``). With 2 or more
    standalone seeds, ``reference`` holds the same for seed 0's target against seed 1's (how well one more
    standalone run agrees: the noise ceiling of a single run). ``spread``: per one-shot signal the sd and range
    over configs; per target the ANOVA spread of ``signals.spread`` (configs vs seeds) or, with one seed, the sd
    and range over configs.
    """
    out: dict = {"agreement": [], "reference": [], "spread": {"one_shot": {}, "standalone": {}}}
    for target, values in standalone.items():
        high = np.asarray(values, np.float64)
        if high.ndim != 2:
            raise ValueError(f"standalone {target}: expected (seeds, configs), got shape {high.shape}")
        for signal, scores in one_shot.items():
            low = np.asarray(scores, np.float64)[None, :]
            for kind in KINDS:
                out["agreement"].append({"signal": signal, "target": target, "kind": kind,
                                         **rank_agreement(low, high, kind=kind, n_resamples=n_resamples, seed=seed)})
        if high.shape[0] >= 2:
            for kind in KINDS:
                out["reference"].append({"signal": f"standalone seed 0 {target}", "target": f"seed 1 {target}",
                                         "kind": kind, **rank_agreement(high[:1], high[1:2], kind=kind,
                                                                         n_resamples=n_resamples, seed=seed)})
        means = high.mean(axis=0)
        out["spread"]["standalone"][target] = (spread(high) if high.shape[0] >= 2 else
                                               {"config_sd": float(means.std(ddof=1)), "range": float(np.ptp(means))})
        out["spread"]["standalone"][target].update(min=float(means.min()), max=float(means.max()))
    for signal, scores in one_shot.items():
        x = np.asarray(scores, np.float64)
        out["spread"]["one_shot"][signal] = {"config_sd": float(x.std(ddof=1)), "range": float(np.ptp(x)),
                                             "min": float(x.min()), "max": float(x.max()),
                                             "distinct": int(np.unique(np.round(x, 9)).size)}
    return out


# --------------------------------------------------------------------------------------------- standalone
def standalone_fidelity(args):
    """The high fidelity of benchmarks/signals.py with these flags (the key its long runs are cached under)."""
    from objectives import Fidelity

    return Fidelity(steps=args.factor * args.steps, batch_size=args.batch_size, eval_every=args.steps,
                    max_eval_examples=args.eval_examples, max_test_examples=args.test_examples)


def standalone_runs(cache, task: str, model: str, fidelity) -> dict[str, dict]:
    """Cached high-fidelity runs of ``task`` at exactly ``fidelity``: config JSON -> {name, config, seeds}."""
    out: dict[str, dict] = {}
    for key, record in list(cache.runs.items()):
        if record.get("task") != task or not isinstance(record.get("seed"), int) or not record.get("test"):
            continue
        config = MoLoRAConfig.from_dict(record["config"])
        if run_key(task, model, fidelity, record["seed"], config) != key:
            continue  # another fidelity, model or question set
        entry = out.setdefault(config.to_json(), {"name": record["name"], "config": config, "seeds": {}})
        entry["seeds"][record["seed"]] = record
    names = [e["name"] for e in out.values()]
    for e in out.values():  # one name per config (two picks of signals.py may reuse a random-i name)
        if names.count(e["name"]) > 1:
            e["name"] += "#" + hashlib.sha1(e["config"].to_json().encode()).hexdigest()[:6]
    return out


def choose(runs: dict[str, dict], seeds: int, min_configs: int = MIN_CONFIGS) -> tuple[list[dict], int]:
    """The configs with high-fidelity runs for seeds 0..k-1, k the largest <= ``seeds`` that gives at least
    ``min_configs`` configs (in cache order); raises SystemExit when even one seed does not."""
    for k in range(seeds, 0, -1):
        chosen = [e for e in runs.values() if all(s in e["seeds"] for s in range(k))]
        if len(chosen) >= min_configs:
            return chosen, k
    raise SystemExit(f"fewer than {min_configs} configs have a cached high-fidelity standalone run (seed 0) at this "
                     f"fidelity: {len(runs)} configs found; check --steps/--factor/--batch-size/--eval-examples/"
                     f"--test-examples against the signals.py run, or add --extra-configs")


def standalone_arrays(chosen: Sequence[dict], k: int, last_step: int) -> dict[str, np.ndarray]:
    """(seeds, configs) arrays of the standalone targets."""
    test = [[e["seeds"][s]["test"]["accuracy"] for e in chosen] for s in range(k)]
    val = [[e["seeds"][s]["steps"][str(last_step)]["accuracy"] if str(last_step) in e["seeds"][s].get("steps", {})
            else np.nan for e in chosen] for s in range(k)]
    out = {"test_accuracy": np.asarray(test, np.float64)}
    if not np.isnan(val).any():
        out["val_accuracy"] = np.asarray(val, np.float64)
    return out


# -------------------------------------------------------------------------------------------- super-adapter
def question_digest(task: str, fidelity) -> str:
    """signals.run_key's digest of the scored question ids (validation, then test)."""
    from objectives import get_task

    t = get_task(task)
    ids = [e.id for e in t.validation[:fidelity.max_eval_examples]]
    ids += [e.id for e in t.test[:fidelity.max_test_examples]]
    return hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]


def hull(configs: Sequence[MoLoRAConfig], *, like: MoLoRAConfig) -> MoLoRAConfig:
    """The smallest super-adapter layout holding every config: per layer the most experts and largest rank."""
    from hilo_core.elastic import maxima_config

    n_layers = len(like.layers)
    if any(len(c.layers) != n_layers for c in configs):
        raise ValueError(f"every config needs {n_layers} layers")
    n_max = tuple(max(c.layers[i].n_experts for c in configs) for i in range(n_layers))
    r_max = tuple(max(max(c.layers[i].ranks) for c in configs) for i in range(n_layers))
    return maxima_config(n_layers, n_max=n_max, r_max=r_max, target_modules=like.target_modules,
                         lora_alpha=like.lora_alpha, lora_dropout=like.lora_dropout)


def supernet_plan(draw: str, space, configs: Sequence[MoLoRAConfig], seed: int, shapes: dict):
    """(maxima, sampler, description) of the super-adapter for ``draw`` (see the module doc)."""
    from objectives.supernet import sandwich
    from search.one_shot import N_RANDOM, plan_supernet

    if draw not in DRAWS:
        raise ValueError(f"draw must be one of {DRAWS}, got {draw!r}")
    smallest_config = min(configs, key=lambda c: config_trainable(c, shapes))
    if draw == "configs":
        maxima = hull(configs, like=configs[0])
        return (maxima, sandwich(maxima, smallest_config, list(configs), n_random=N_RANDOM),
                f"sandwich: the layout's largest config, the smallest study config and {N_RANDOM} of the "
                f"{len(configs)} study configs per step")
    plan = plan_supernet(space, seed)
    maxima = hull([plan.maxima, *configs], like=plan.maxima)
    largest = plan.largest if maxima.to_json() == plan.maxima.to_json() else maxima
    if draw == "space":
        return (maxima, sandwich(largest, plan.smallest, plan.pool, n_random=N_RANDOM),
                f"sandwich: the space's largest and smallest configs and {N_RANDOM} of {len(plan.pool)} seeded draws "
                "of the space per step (as --evaluator one-shot)")
    pool, study = list(plan.pool), list(configs)

    def both(rng: random.Random) -> list[MoLoRAConfig]:
        return [largest, plan.smallest, rng.choice(pool), rng.choice(study)]
    return (maxima, both, f"sandwich: the space's largest and smallest configs, one of {len(pool)} seeded draws of "
                          f"the space and one of the {len(study)} study configs per step")


def supernet_id(task: str, model: str, fidelity, *, seed: int, draw: str, space: str, maxima: MoLoRAConfig,
                configs: Sequence[MoLoRAConfig]) -> str:
    """Everything that decides the super-adapter's weights at a given step (steps excluded: a longer training
    continues a shorter one, there is no LR schedule)."""
    train = {k: v for k, v in fidelity.to_dict().items()
             if k not in ("steps", "eval_every", "max_eval_examples", "max_test_examples", "eval_batch_size")}
    identity = {"task": task, "model": model, "train": train, "seed": seed, "draw": draw, "maxima": maxima.to_dict(),
                "space": space if draw != "configs" else None,
                "configs": sorted(c.to_json() for c in configs) if draw != "space" else None}
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def score_key(task: str, model: str, fidelity, *, supernet: str, supernet_steps: int, seed: int,
              config: MoLoRAConfig) -> str:
    """The one-shot score cache's key: signals.run_key's (task and its scored question ids, model, fidelity,
    seed, config) with the super-adapter's identity and steps in it."""
    from benchmarks.paper_table import RunCache

    return RunCache.key(f"{task}@{question_digest(task, fidelity)}|supernet:{supernet}", model,
                        replace(fidelity, steps=supernet_steps), seed, config)


def ensure_supernet(folder: Path, maxima: MoLoRAConfig, sampler, task: str, fidelity, *, steps: int, seed: int,
                    model: str, description: str, train: bool) -> dict:
    """Train the super-adapter to ``steps`` (or continue a shorter / killed training, or reuse a finished one);
    returns its info (also in ``folder/supernet.json``)."""
    from objectives.checkpoint import read_checkpoint
    from objectives.supernet import train_supernet
    from search.one_shot import CHECKPOINTS

    path, info_path = folder / "supernet.pt", folder / "supernet.json"
    done = read_checkpoint(path)[3].step if path.is_file() else 0
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    if done > steps:
        raise SystemExit(f"--supernet-steps {steps}: the super-adapter at {path} has {done} steps already")
    if done == steps and info.get("steps") == steps:
        print(f"{task}: super-adapter reused ({path}, {steps} steps)", flush=True)
        return info
    if not train:
        raise SystemExit(f"{task}: --analyse-only but the super-adapter at {path} has {done} of {steps} steps")
    folder.mkdir(parents=True, exist_ok=True)
    (folder.parent / ".gitignore").write_text("*\n")  # checkpoints are large: never committed by accident
    print(f"{task}: super-adapter {'continuing from step ' + str(done) if done else 'training'} to {steps} steps "
          f"({description}); up to {max(maxima.experts_per_layer)} experts of rank "
          f"{max(max(s.ranks) for s in maxima.layers)} per layer; checkpoint {path}", flush=True)
    result = train_supernet(maxima, task, replace(fidelity, steps=steps, max_test_examples=0), sampler=sampler,
                            save_to=path, seed=seed, model=model, checkpoint_every=max(1, steps // CHECKPOINTS),
                            resume_from=path if done else None, progress=True)
    info = {"steps": steps, "seconds": result.seconds, "final_loss": result.final_loss, "tokens": result.tokens,
            "sampler": description, "n_max": [s.n_experts for s in maxima.layers],
            "r_max": [max(s.ranks) for s in maxima.layers], "checkpoint": str(path), "load": os.getloadavg()[0]}
    info_path.write_text(json.dumps(info, indent=1))
    print(f"{task}: super-adapter {steps} steps in {result.seconds:.0f} s, final loss {result.final_loss:.3f}",
          flush=True)
    return info


def swapped(task):
    """``task`` with validation and test exchanged: score_subconfig (validation only) then scores its test
    questions through the same path (ids stay unique across splits)."""
    from objectives import get_task

    t = get_task(task)
    return replace(t, validation=t.test, test=t.validation)


def score_configs(chosen: Sequence[dict], task: str, fidelity, checkpoint: Path, *, model: str, keys: Sequence[str],
                  cache, supernet: str, train: bool) -> list[dict]:
    """Every config's one-shot validation and test records (cached by ``keys``), scored inside one load."""
    from contextlib import ExitStack

    from objectives.evaluation import validation_fingerprint
    from objectives.supernet import loaded_supernet, score_subconfig

    test_fidelity = replace(fidelity, max_eval_examples=max(1, fidelity.max_test_examples))
    prints = {"val": validation_fingerprint(task, fidelity, model)}
    if fidelity.max_test_examples:
        prints["test"] = validation_fingerprint(swapped(task), test_fidelity, model)
    out, loaded = [], False
    with ExitStack() as stack:
        for entry, key in zip(chosen, keys):
            record = cache.get(key)
            if record is None:
                if not train:
                    raise SystemExit(f"{task}: --analyse-only but {entry['name']} has no one-shot score cached")
                if not loaded:  # loaded once, and only when something is left to score
                    stack.enter_context(loaded_supernet(checkpoint, model=model))
                    loaded = True
                started = time.perf_counter()
                val = score_subconfig(entry["config"], task, fidelity, checkpoint=checkpoint, model=model)
                test = (score_subconfig(entry["config"], swapped(task), test_fidelity, checkpoint=checkpoint,
                                        model=model) if fidelity.max_test_examples else None)
                record = {"task": task, "name": entry["name"], "config": entry["config"].to_dict(),
                          "supernet": supernet,
                          "validation": {"accuracy": val.accuracy, "score": val.score, "loss": val.loss,
                                         "records": val.records.encode()},
                          "test": test and {"accuracy": test.accuracy, "score": test.score, "loss": test.loss,
                                            "records": test.records.encode()},
                          "trainable": val.trainable_params, "active": val.active_params,
                          "seconds": time.perf_counter() - started, "load": os.getloadavg()[0]}
                cache.put(key, record)
                print(f"  {task} {entry['name']:12} one-shot: validation accuracy {val.accuracy:.3f} score "
                      f"{val.score:.3f}" + (f", test accuracy {test.accuracy:.3f}" if test else "")
                      + f" ({record['seconds']:.0f} s)", flush=True)
            check_questions(entry, record, prints, fidelity)
            out.append(record)
    return out


def check_questions(entry: dict, record: dict, prints: dict, fidelity) -> None:
    """One-shot and standalone records must be of the same question sets (fingerprints), or nothing pairs."""
    from objectives.records import QuestionRecords

    last = str(fidelity.steps)
    for split, mine, theirs in (("validation", record["validation"], entry["seeds"][0].get("steps", {}).get(last)),
                                ("test", record["test"], entry["seeds"][0]["test"])):
        if not mine:
            continue
        got = QuestionRecords.decode(mine["records"]).fingerprint
        want = prints["val" if split == "validation" else "test"]
        stored = QuestionRecords.decode(theirs["records"]).fingerprint if theirs and theirs.get("records") else want
        if not got == want == stored:
            raise SystemExit(f"{entry['name']}: {split} questions differ between the one-shot score ({got}), this "
                             f"task ({want}) and the standalone run ({stored})")


# ------------------------------------------------------------------------------------------------ reporting
def _ci(cell: dict) -> str:
    return f"{cell['value']:+.2f} [{cell['low']:+.2f}, {cell['high']:+.2f}]"


def _excludes_zero(cell: dict) -> bool:
    return cell["low"] > 0 or cell["high"] < 0


def markdown(result: dict, tasks: Sequence[str]) -> list[str]:
    lines = []
    for t in tasks:
        res = result["tasks"][t]
        sp, sn = res["spread"]["standalone"], res["spread"]["one_shot"]
        test = sp["test_accuracy"]
        head = (f"**{t}** ({len(res['configs'])} configs, {res['seeds']} standalone seed"
                f"{'s' if res['seeds'] > 1 else ''} of {res['seeds_asked']} asked; standalone test accuracy "
                f"{test['min']:.1%}-{test['max']:.1%} over configs, config sd {test['config_sd'] * 100:.2g} pt"
                + (f" vs seed sd {test['seed_sd'] * 100:.2g} pt, ANOVA F {test['f']:.2f} (p {test['p']:.2g}), ICC "
                   f"{test['icc']:.2f}" if "seed_sd" in test else "")
                + "; one-shot " + ", ".join(f"{s.replace('_', ' ')} {v['min']:.3g}-{v['max']:.3g} (sd "
                                            f"{v['config_sd']:.2g}, {v['distinct']} distinct)" for s, v in sn.items())
                + f"; super-adapter {res['supernet']['steps']} steps, {res['supernet'].get('seconds', 0):.0f} s, "
                  f"final loss {res['supernet'].get('final_loss', float('nan')):.3f})")
        lines += [head, "", "| one-shot signal | standalone target (mean over seeds) | Spearman [95% CI] | "
                  "Kendall [95% CI] |", "| --- | --- | --- | --- |"]
        cells = {(r["signal"], r["target"], r["kind"]): r for r in res["agreement"] + res["reference"]}
        for signal, target in dict.fromkeys((r["signal"], r["target"]) for r in res["agreement"] + res["reference"]):
            lines.append(f"| {signal.replace('_', ' ')} | {target.replace('_', ' ')} | "
                         f"{_ci(cells[(signal, target, 'spearman')])} | {_ci(cells[(signal, target, 'kendall')])} |")
        lines += ["", "| config | trainable | standalone test accuracy (per seed) | one-shot validation accuracy | "
                  "one-shot validation score | one-shot test accuracy |", "| --- | ---: | --- | ---: | ---: | ---: |"]
        for row in res["per_config"]:
            lines.append(f"| {row['name']} | {row['trainable'] / 1e6:.2f}M | "
                         + " / ".join(f"{v:.1%}" for v in row["standalone_test_accuracy"])
                         + f" | {row['val_accuracy']:.1%} | {row['val_score']:.3f} | "
                         + (f"{row['test_accuracy']:.1%}" if row["test_accuracy"] is not None else "n/a") + " |")
        lines.append("")
    return lines


def verdict(result: dict, tasks: Sequence[str]) -> list[str]:
    """Per task: the issue's number (one-shot test accuracy vs standalone test accuracy, Kendall), whether its CI
    excludes 0, and next to it what one more standalone seed agrees."""
    out = []
    for t in tasks:
        res = result["tasks"][t]
        cells = {(r["signal"], r["target"], r["kind"]): r for r in res["agreement"] + res["reference"]}
        signal = "test_accuracy" if ("test_accuracy", "test_accuracy", "kendall") in cells else "val_accuracy"
        main = cells[(signal, "test_accuracy", "kendall")]
        line = (f"- {t}: one-shot {signal.replace('_', ' ')} vs standalone test accuracy, Kendall {_ci(main)} "
                f"over {len(res['configs'])} configs: " + ("the CI excludes 0." if _excludes_zero(main) else
                                                           "the CI includes 0 (no ranking shown)."))
        ref = cells.get(("standalone seed 0 test_accuracy", "seed 1 test_accuracy", "kendall"))
        if ref:
            line += f" One standalone seed against the other: Kendall {_ci(ref)}."
        out.append(line)
    return out


# ---------------------------------------------------------------------------------------------------- main
def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default="arc-e,csqa", help="comma-separated task names")
    parser.add_argument("--space", default="hilo", help="the space of --draw space/both (and of --extra-configs)")
    group = parser.add_argument_group("the standalone runs of benchmarks/signals.py (must match them)")
    group.add_argument("--steps", type=int, default=8, help="signals.py --steps (its low fidelity)")
    group.add_argument("--factor", type=int, default=4, help="signals.py --factor: high fidelity = factor x steps")
    group.add_argument("--batch-size", type=int, default=4)
    group.add_argument("--eval-examples", type=int, default=64, help="validation questions")
    group.add_argument("--test-examples", type=int, default=300, help="test questions")
    parser.add_argument("--seeds", type=int, default=2, help="standalone training seeds 0..S-1 per config")
    parser.add_argument("--extra-configs", type=int, default=0, help="train N more random configs of --space "
                        "standalone (signals.run_one, S seeds, into the signals cache) before the study")
    parser.add_argument("--fill-seeds", action="store_true", help="train the missing standalone seeds 0..S-1 of "
                        "cached configs (signals.run_one)")
    parser.add_argument("--supernet-steps", type=int, default=None, help="default 4 x factor x steps")
    parser.add_argument("--draw", choices=DRAWS, default="space", help="the sandwich's random sub-configs")
    parser.add_argument("--seed", type=int, default=1, help="super-adapter seed (also of --draw space's 256 draws; "
                        "not 0: signals.py's random configs are RandomSampler(seed=0) draws of the same space, so "
                        "seed 0's pool would hold them and train them more often than the rule configs)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--analyse-only", action="store_true", help="train and score nothing: cached results only")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--signals-cache", type=Path, default=None,
                        help="default <results>/signals_runs.jsonl")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "one_shot_rank.json")
    parser.add_argument("--doc", type=Path, default=None, help="write the section into this markdown file")
    args = parser.parse_args(argv)
    args.supernet_steps = args.supernet_steps or 4 * args.factor * args.steps
    if args.supernet_steps <= 0 or args.seeds < 1 or args.extra_configs < 0:
        parser.error("--supernet-steps and --seeds must be positive, --extra-configs >= 0")
    args.signals_cache = args.signals_cache or args.results / "signals_runs.jsonl"
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    return args


def train_standalone(args, tasks, space, facts, fidelity, cache) -> None:
    """--extra-configs / --fill-seeds: the missing standalone runs of seeds 0..S-1, by signals.py's own run_one
    (cached there: a run already in the cache is read back, not trained)."""
    from benchmarks.signals import pick_configs, run_one

    extra = {}
    if args.extra_configs:
        drawn = pick_configs(space, facts.shapes, [], n_random=args.extra_configs, seed=1000 + args.seed)
        extra = {c.to_json(): (f"extra-{i}", c) for i, c in enumerate(drawn.values())}
    for t in tasks:
        todo = {j: (e["name"], e["config"]) for j, e in standalone_runs(cache, t, args.model, fidelity).items()
                if args.fill_seeds}
        todo.update({j: v for j, v in extra.items() if j not in todo})
        for name, config in todo.values():
            for seed in range(args.seeds):
                run_one(t, name, config, seed, args, fidelity, cache)


def main(argv: Sequence[str] | None = None) -> dict:
    from rich.console import Console

    from benchmarks.paper_table import RunCache
    from objectives import base_model, get_task
    from search.facts import build_space, model_facts

    args = parse(argv)
    for t in args.tasks:
        get_task(t)  # unknown tasks or missing data fail before any training
    started, load_before = time.perf_counter(), os.getloadavg()
    facts = model_facts(args.model, LLAMA_TARGETS, Console())
    space = build_space(args.space, facts)
    fidelity = standalone_fidelity(args)
    cache = RunCache(args.signals_cache)
    if (args.extra_configs or args.fill_seeds) and not args.analyse_only:
        train_standalone(args, args.tasks, space, facts, fidelity, cache)
    scores = RunCache(args.results / "one_shot_rank_runs.jsonl")
    result: dict = {"tasks": {}}
    for t in args.tasks:
        chosen, k = choose(standalone_runs(cache, t, args.model, fidelity), args.seeds)
        configs = [e["config"] for e in chosen]
        maxima, sampler, description = supernet_plan(args.draw, space, configs, args.seed, facts.shapes)
        sid = supernet_id(f"{t}@{question_digest(t, fidelity)}", args.model, fidelity, seed=args.seed, draw=args.draw,
                          space=args.space, maxima=maxima, configs=configs)
        folder = args.results / "one_shot_rank" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', Path(t).stem)}-{sid[:12]}"
        info = ensure_supernet(folder, maxima, sampler, t, fidelity, steps=args.supernet_steps, seed=args.seed,
                               model=args.model, description=description, train=not args.analyse_only)
        keys = [score_key(t, args.model, fidelity, supernet=sid, supernet_steps=args.supernet_steps, seed=args.seed,
                          config=c) for c in configs]
        records = score_configs(chosen, t, fidelity, folder / "supernet.pt", model=args.model, keys=keys,
                                cache=scores, supernet=sid, train=not args.analyse_only)
        one_shot = {"val_accuracy": [r["validation"]["accuracy"] for r in records],
                    "val_score": [r["validation"]["score"] for r in records]}
        if all(r["test"] for r in records):
            one_shot["test_accuracy"] = [r["test"]["accuracy"] for r in records]
        standalone = standalone_arrays(chosen, k, fidelity.steps)
        res = rank_study(one_shot, standalone, n_resamples=args.resamples, seed=args.seed)
        res.update(configs=[e["name"] for e in chosen], seeds=k, seeds_asked=args.seeds,
                   supernet={**info, "id": sid, "steps": args.supernet_steps},
                   scoring_seconds=[r["seconds"] for r in records],
                   standalone_seconds=[e["seeds"][s]["seconds"] for e in chosen for s in range(k)],
                   per_config=[{"name": e["name"], "trainable": r["trainable"],
                                "standalone_test_accuracy": [e["seeds"][s]["test"]["accuracy"] for s in range(k)],
                                **{s: (one_shot[s][i] if s in one_shot else None) for s in ONE_SHOT}}
                               for i, (e, r) in enumerate(zip(chosen, records))])
        result["tasks"][t] = res
    device = next(base_model(args.model)[0].parameters()).device
    command = "python -m benchmarks.one_shot_rank " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = (f"`{' '.join(filter(None, platform.uname()))}`, device {device}, {os.cpu_count()} CPUs, "
               f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; load average {load_before[0]:.1f} at the start "
               f"of this invocation, {os.getloadavg()[0]:.1f} at the end")
    per_task = []
    for t in args.tasks:
        res = result["tasks"][t]
        sa, sc = res["standalone_seconds"], res["scoring_seconds"]
        per_task.append(f"{t}: {len(res['configs'])} configs x {res['seeds']} standalone seeds "
                        f"({np.median(sa):.0f} s median per run, {sum(sa) / 60:.0f} min summed, from the cache); "
                        f"super-adapter {res['supernet'].get('seconds', 0) / 60:.1f} min of training steps; one-shot "
                        f"scoring {np.median(sc):.0f} s median per config, {sum(sc) / 60:.1f} min summed")
    first = result["tasks"][args.tasks[0]]
    block = [f"Command: `{command}`", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine}.", "",
             f"Standalone: benchmarks/signals.py's cached runs of {fidelity.steps} steps x batch {args.batch_size} "
             f"(score = test accuracy on {args.test_examples} test questions, mean over seeds; validation accuracy "
             f"at step {fidelity.steps} on {args.eval_examples} validation questions), nothing retrained here. "
             f"One-shot: one super-adapter per task, {args.supernet_steps} steps x batch {args.batch_size} (seed "
             f"{args.seed}, {first['supernet'].get('sampler', args.draw)}; layout n_max "
             f"{max(first['supernet'].get('n_max', [0]))}, r_max {max(first['supernet'].get('r_max', [0]))} at most), "
             "every config scored inside it (score_subconfig) on the same validation and test questions. Spearman / "
             "Kendall tau-b with 95% percentile bootstrap CIs over configs (paired, "
             f"{args.resamples} resamples, scipy.stats.bootstrap); the 'standalone seed 0' rows are one standalone "
             "run against another seed's (the agreement a second standalone run reaches). The issue asks for >= 16 "
             "configs and 2 seeds; the counts used are in each task's line.", "",
             "Cost: " + "; ".join(per_task) + ".", "",
             *markdown(result, args.tasks), "Verdict (computed from the tables):", "", *verdict(result, args.tasks)]
    print("\n".join(block), flush=True)
    result.update({"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "machine": machine, "fidelity": fidelity.to_dict(), "supernet_steps": args.supernet_steps,
                   "draw": args.draw, "seed": args.seed, "invocation_seconds": time.perf_counter() - started,
                   "doc": block})
    args.json.write_text(json.dumps(result, indent=1))
    if args.doc is not None:
        write_doc(args.doc, block, section=SECTION, start=START, end=END)
    return result


if __name__ == "__main__":
    main()
