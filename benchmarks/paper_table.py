"""Paper-style table (issue 10): every published allocation rule against the searched config, per benchmark.

    python -m benchmarks.paper_table --model default --tasks csqa,obqa,arc-e --steps 12 --seeds 3
    (or python benchmarks/paper_table.py ...)

Per task (its splits fixed by seed 0): zero-shot; a single LoRA (one rank-r expert per layer, dense, r chosen
so its trainable parameters match MoLA 2468's); uniform MoLoRA (4 x r4, top-2); MoLA 2468 / 5555 / 8642
(rank 8, top-2); AlphaLoRA (T = 5 x layers from the model's HT-SR alphas, beta 2.5, rank 8); the HiLo rule;
and the best searched config: the completed front trial with the best validation accuracy of --study
(``{task}`` in the name is replaced by the task), or else of a short search run here (study ``paper-<task>``
in --out-root: hilo space, its rule seeds first, then NSGA-II, --search-budget trials at the table's
fidelity). Every trained row runs with training seeds 0..S-1 and is scored on the same test questions:
mean and sample standard deviation over seeds, trainable parameters and measured active parameters per token.

Each finished run is appended to benchmarks/results/paper_table_runs.jsonl (keyed by task, model, fidelity,
seed and config) and a rerun skips it; the search's trials at the same fidelity and seed 0 fill it too (a
rule seed trained there is the table's seed-0 run). Writes benchmarks/results/paper_table.json, a PNG of
accuracy vs trainable parameters (--png) and the table into its section of docs/benchmarks.md (--doc).
On a GPU (when torch sees one) everything runs there in bf16; on the CPU in float32.
"""

from __future__ import annotations

import os

import sys
from pathlib import Path

# OpenMP's busy-waiting threads slow torch 5-8x on a shared CPU; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not __package__:  # run as a file: its folder would shadow the search package with benchmarks/search.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402

import optuna  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402

from benchmarks.doc_block import write_doc  # noqa: E402
from hilo_core import LLAMA_TARGETS, MoLoRAConfig, RouterSpec, config_trainable  # noqa: E402
from objectives import DIRECTIONS, Fidelity, base_model, evaluate, get_task  # noqa: E402
from objectives.paper_tasks import PAPER_DATASETS  # noqa: E402
from objectives.scoring import accuracy  # noqa: E402
from objectives.sequences import encode  # noqa: E402
from reports.load import config_cells, load, read_study  # noqa: E402
from search.facts import build_space, model_facts  # noqa: E402
from search.progress import SearchProgress  # noqa: E402
from search.sampling import make_sampler  # noqa: E402
from search.study import FINISHED  # noqa: E402
from search.trials import TrialContext, run_trial  # noqa: E402
from spaces import seed_config  # noqa: E402

OBJECTIVES = ("accuracy", "trainable", "active")

ROOT = Path(__file__).resolve().parents[1]
RULES = ("uniform", "mola-2468", "mola-5555", "mola-8642", "alphalora", "hilo-rule")
LABELS = {"zero-shot": "zero-shot", "single-lora": "single LoRA", "uniform": "uniform MoLoRA 4 x r4",
          "mola-2468": "MoLA 2468", "mola-5555": "MoLA 5555", "mola-8642": "MoLA 8642", "alphalora": "AlphaLoRA",
          "hilo-rule": "HiLo rule", "searched": "searched (best validation on the front)"}
TRAINED = ("single-lora", *RULES)  # the rule rows the searched config is compared with
SECTION = "## Paper benchmarks: every rule vs the search (issue 10): `benchmarks/paper_table.py`"
START, END = "<!-- paper_table:start -->", "<!-- paper_table:end -->"


def single_lora(target: MoLoRAConfig, shapes: dict, n_layers: int) -> MoLoRAConfig:
    """One expert of rank r in every layer (plain LoRA), r chosen to match ``target``'s trainable count."""
    want = config_trainable(target, shapes)
    candidates = [MoLoRAConfig.uniform(n_layers, 1, r, router=RouterSpec(kind="dense")) for r in range(1, 257)]
    return min(candidates, key=lambda c: abs(config_trainable(c, shapes) - want))


class RunCache:
    """Finished runs, one JSON line each, keyed by everything that decides their result."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.runs: dict[str, dict] = {}
        self.reload()

    def reload(self) -> None:
        """Read the file again: another process (one task per process) may have appended runs."""
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                record = json.loads(line)
                self.runs[record["key"]] = record

    @staticmethod
    def key(task: str, model: str, fidelity: Fidelity, seed: int, config: MoLoRAConfig | None) -> str:
        text = json.dumps([task, model, fidelity.to_dict(), seed, config.to_dict() if config else None],
                          sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        if key not in self.runs:
            self.reload()
        return self.runs.get(key)

    def put(self, key: str, record: dict) -> None:
        record = {"key": key, **record}
        self.runs[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


@dataclass
class Row:
    """One cell group: a method on a task, all its seeds."""

    task: str
    method: str
    config: MoLoRAConfig | None
    runs: list[dict] = field(default_factory=list)
    note: str = ""

    def accuracies(self) -> list[float]:
        return [r["metrics"]["test_accuracy"] for r in self.runs]

    def mean(self) -> float:
        return statistics.fmean(self.accuracies())

    def spread(self) -> float:
        accs = self.accuracies()
        return statistics.stdev(accs) if len(accs) > 1 else 0.0

    def trainable(self) -> int:
        return int(self.runs[0]["metrics"]["trainable_params"])

    def active(self) -> float:
        return statistics.fmean(r["metrics"]["active_params"] for r in self.runs)


def short_search(task_name: str, args: argparse.Namespace, facts, fidelity: Fidelity, console: Console) -> str:
    """A search.run-style study ``paper-<task>`` (seeds first, then NSGA-II) at the table's fidelity; resumable."""
    name = f"paper-{task_name}"
    folder = Path(args.out_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}",
                                directions=[DIRECTIONS[o] for o in OBJECTIVES], sampler=make_sampler("nsga2", 0),
                                load_if_exists=True)
    study.set_metric_names(list(OBJECTIVES))
    space = build_space("hilo", facts)
    if not study.get_trials(deepcopy=False):
        for key, value in {"space": "hilo", "task": task_name, "model": args.model, "fidelity": fidelity.to_dict(),
                           "seed": 0, "n_layers": facts.n_layers, "target_modules": list(facts.target_modules),
                           "layer_alphas": list(facts.layer_alphas),
                           "command": "python -m benchmarks.paper_table " + shlex.join(sys.argv[1:])}.items():
            study.set_user_attr(key, value)
        for seed in space.seeds()[:args.search_budget]:
            study.enqueue_trial(seed.params, user_attrs={"seed_name": seed.name})
    ctx = TrialContext(space=space, task=get_task(task_name), fidelity=fidelity, model=args.model,
                       shapes=facts.shapes, objectives=OBJECTIVES, seed=0)
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    if done < args.search_budget:
        console.print(f"[bold]{task_name}[/]: short search {name} ({args.search_budget} trials, seeds first)")
        with SearchProgress(total=args.search_budget, done=done, objectives=OBJECTIVES, console=console) as bar:
            study.optimize(lambda t: run_trial(t, ctx), n_trials=args.search_budget - done, catch=(Exception,),
                           callbacks=[bar])
    return name


def searched(task_name: str, args, facts, fidelity: Fidelity, cache: RunCache, console: Console) -> tuple:
    """The searched config for a task, a note on where it came from and the study's summed trial seconds;
    the study's seed-0 runs at the table's fidelity fill the cache."""
    if args.study:
        name = args.study.format(task=task_name)
        data = load(name, out_root=args.out_root)
        if data.attrs.get("task") not in (None, task_name):
            raise SystemExit(f"--study {name} searched task {data.attrs['task']!r}, not {task_name!r}")
    else:
        name = short_search(task_name, args, facts, fidelity, console)
        data = load(name, out_root=args.out_root)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{Path(args.out_root) / name / 'study.db'}")
    if data.attrs.get("fidelity") == fidelity.to_dict() and data.attrs.get("seed", 0) == 0:
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            config = MoLoRAConfig.from_json(t.user_attrs["config"])
            key = RunCache.key(task_name, args.model, fidelity, 0, config)
            if cache.get(key) is None and t.user_attrs.get("metrics", {}).get("test_accuracy") is not None:
                cache.put(key, {"task": task_name, "seed": 0, "config": config.to_dict(),
                                "metrics": t.user_attrs["metrics"], "seconds": t.user_attrs.get("seconds"),
                                "from": f"{name}#{t.number}"})
    front = [r for r in read_study(study).front if r.state == "COMPLETE" and r.config is not None]
    best = max(front, key=lambda r: (r.value("accuracy"), -r.value("trainable")))
    seconds = sum(t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False))
    return best.config, f"{name} #{best.number}" + (f" (= seed {best.seed_name})" if best.seed_name else ""), seconds


def run_one(task_name: str, config: MoLoRAConfig | None, seed: int, args, fidelity: Fidelity, cache: RunCache,
            progress: Progress, bar, console: Console, label: str) -> dict:
    key = RunCache.key(task_name, args.model, fidelity, seed, config)
    record = cache.get(key)
    if record is None:
        started = time.perf_counter()
        if config is None:  # zero-shot: the bare model on the same test questions
            model, tokenizer = base_model(args.model)
            test = encode(tokenizer, get_task(task_name).test[:fidelity.max_test_examples],
                          max_length=fidelity.max_length)
            acc = accuracy(model, test, pad_id=tokenizer.pad_token_id, device=next(model.parameters()).device,
                           batch_rows=fidelity.eval_batch_size)
            metrics = {"test_accuracy": acc, "accuracy": None, "trainable_params": 0, "active_params": 0.0}
        else:
            metrics = evaluate(config, get_task(task_name), fidelity, seed=seed, model=args.model).to_dict()
        record = {"task": task_name, "seed": seed, "config": config.to_dict() if config else None,
                  "metrics": metrics, "seconds": time.perf_counter() - started}
        cache.put(key, record)
        console.print(f"{task_name:6} {label:22} seed {seed}: test {metrics['test_accuracy']:.1%}"
                      f" ({record['seconds']:.0f} s)", highlight=False)
    progress.advance(bar)
    return record


def markdown(rows: dict[tuple[str, str], Row], tasks: list[str], chance: dict[str, float]) -> list[str]:
    head = "| method | " + " | ".join(f"{t} test acc." for t in tasks) + " | mean | trainable | active/token |"
    lines = [head, "|" + " --- |" + " ---: |" * (len(tasks) + 3)]
    lines.append("| chance | " + " | ".join(f"{chance[t]:.1%}" for t in tasks) + " | | | |")
    for method in LABELS:
        cells = [rows[(t, method)] for t in tasks]
        acc = [f"{c.mean():.1%} ± {c.spread():.1%}" if method != "zero-shot" else f"{c.mean():.1%}" for c in cells]
        mean = statistics.fmean(c.mean() for c in cells)
        trainable = sorted({c.trainable() for c in cells})
        label = LABELS[method] + (f" (r={cells[0].config.layers[0].ranks[0]})" if method == "single-lora" else "")
        lines.append(f"| {label} | " + " | ".join(acc) + f" | {mean:.1%} | "
                     + " / ".join(f"{n / 1e6:.2f}M" for n in ([c.trainable() for c in cells]
                                                            if len(trainable) > 1 else trainable))
                     + " | " + " / ".join(f"{c.active() / 1e6:.2f}M" for c in
                                          (cells if method == "searched" else cells[:1])) + " |")
    return lines


def verdict(rows: dict[tuple[str, str], Row], tasks: list[str]) -> list[str]:
    """Which rule won each task (ties named), and whether the searched config beat every rule, against the spread."""
    out = []
    for t in tasks:
        top = max(rows[(t, m)].mean() for m in TRAINED)
        winners = [m for m in TRAINED if rows[(t, m)].mean() >= top - 1e-9]
        best, s = rows[(t, winners[0])], rows[(t, "searched")]
        diff = s.mean() - top
        beats = all(s.mean() > rows[(t, m)].mean() for m in TRAINED)
        margin = max(rows[(t, m)].spread() for m in (*winners, "searched"))
        rules = ", ".join(LABELS[m] for m in winners)
        out.append(f"- **{t}**: best rule{' (tied)' if len(winners) > 1 else ''} {rules}: {top:.1%} ± "
                   f"{best.spread():.1%}; searched {s.mean():.1%} ± {s.spread():.1%}, {diff:+.1%} vs the best rule: "
                   + ("beats every rule" if beats else "does not beat every rule")
                   + (", within the seed spread" if abs(diff) <= margin else ", beyond the seed spread")
                   + f"; worst rule {min(rows[(t, m)].mean() for m in TRAINED):.1%}; zero-shot "
                   f"{rows[(t, 'zero-shot')].mean():.1%}.")
    return out


def plot(rows: dict[tuple[str, str], Row], tasks: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        for method in LABELS:
            if method == "zero-shot":
                ax.axhline(rows[(t, method)].mean(), color="grey", ls="--", lw=1, label="zero-shot")
                continue
            r = rows[(t, method)]
            ax.errorbar(r.trainable(), r.mean(), yerr=r.spread(), fmt="*" if method == "searched" else "o",
                        ms=12 if method == "searched" else 6, capsize=3, label=LABELS[method])
        ax.set_xscale("log")
        ax.set_title(t)
        ax.set_xlabel("trainable adapter parameters")
        ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default="csqa,obqa,arc-e",
                        help="comma-separated: " + ", ".join(f"{n} ({d.licence})" for n, d in PAPER_DATASETS.items()))
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per training run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..S-1 per trained row")
    parser.add_argument("--eval-examples", type=int, default=20, help="validation questions (the search's signal)")
    parser.add_argument("--test-examples", type=int, default=50, help="test questions every row is scored on")
    parser.add_argument("--study", default=None, help="searched configs from this search.run study ({task} is "
                        "replaced); default: a short search per task, study paper-<task>")
    parser.add_argument("--search-budget", type=int, default=8, help="trials of the short search, seeds included")
    parser.add_argument("--reverse", action="store_true", help="run the rows last to first: a second process on "
                        "the same tasks, started once their searches are done, shares the work through the run cache")
    parser.add_argument("--out-root", default="reports/out")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "paper_table.png")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        get_task(t)  # a missing data package or an unknown task fails here, before any model loads
    console = Console(soft_wrap=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started, load_before = time.perf_counter(), os.getloadavg()
    fidelity = Fidelity(steps=args.steps, batch_size=args.batch_size, max_eval_examples=args.eval_examples,
                        max_test_examples=args.test_examples)
    facts = model_facts(args.model, LLAMA_TARGETS, console)
    configs = {name: seed_config(name, n_layers=facts.n_layers, layer_alphas=facts.layer_alphas) for name in RULES}
    configs = {"zero-shot": None, "single-lora": single_lora(configs["mola-2468"], facts.shapes, facts.n_layers),
               **configs}
    cache = RunCache(args.results / "paper_table_runs.jsonl")
    rows: dict[tuple[str, str], Row] = {}
    notes, search_seconds = {}, 0.0
    for t in tasks:
        config, notes[t], spent = searched(t, args, facts, fidelity, cache, console)
        search_seconds += spent
        per_task = {**configs, "searched": config}
        with Progress(TextColumn(f"[bold]{t}[/] table runs"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task(t, total=1 + (len(per_task) - 1) * args.seeds)
            order = list(per_task.items())
            for method, cfg in reversed(order) if args.reverse else order:
                row = rows[(t, method)] = Row(task=t, method=method, config=cfg)
                seeds = range(1 if cfg is None else args.seeds)
                for seed in reversed(seeds) if args.reverse else seeds:
                    row.runs.append(run_one(t, cfg, seed, args, fidelity, cache, progress, bar, console,
                                            LABELS[method][:22]))
                row.runs.sort(key=lambda r: r["seed"])

    chance = {t: statistics.fmean(1 / len(e.choices) for e in get_task(t).test[:args.test_examples]) for t in tasks}
    device = next(base_model(args.model)[0].parameters()).device
    seconds = time.perf_counter() - started
    table_seconds = sum(r.get("seconds") or 0.0 for row in rows.values() for r in row.runs if "from" not in r)
    command = "python -m benchmarks.paper_table " + shlex.join(sys.argv[1:])
    machine = (f"`{' '.join(filter(None, platform.uname()))}`; torch {torch.__version__}, device {device}, "
               f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, OMP_WAIT_POLICY="
               f"{os.environ.get('OMP_WAIT_POLICY')}; load average {load_before[0]:.1f} at the start, "
               f"{os.getloadavg()[0]:.1f} at the end")
    table = markdown(rows, tasks, chance)
    searched_lines = [f"- {t}: {notes[t]}; experts per layer {config_cells(rows[(t, 'searched')].config)['experts']}"
                      f"; ranks {config_cells(rows[(t, 'searched')].config, grouped=True)['ranks']}" for t in tasks]
    block = [f"Command: `{command}`", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Run time, summed over runs: search trials "
             f"{search_seconds / 60:.1f} min + other table runs {table_seconds / 60:.1f} min = "
             f"{(search_seconds + table_seconds) / 60:.1f} min (this invocation: {seconds / 60:.0f} min; cached runs "
             f"are not rerun). Machine: {machine}.", "",
             f"Fidelity: {args.steps} steps x batch {args.batch_size}, lr {fidelity.lr}, "
             f"{args.eval_examples} validation / {args.test_examples} test questions per task (splits seed 0); "
             f"training seeds 0..{args.seeds - 1}; accuracy = mean ± sample sd over seeds; active/token is "
             f"measured on validation tokens (shown for the first task; it varies by task only for top-p rows).",
             "", *table, "", "Searched configs:", "", *searched_lines, "", "Per task (computed from the table):", "",
             *verdict(rows, tasks), "",
             f"![accuracy vs trainable parameters]({os.path.relpath(args.png, args.doc.parent)})"]
    console.print("\n".join(block), highlight=False)
    plot(rows, tasks, args.png)
    write_doc(args.doc, block, section=SECTION, start=START, end=END)
    args.results.mkdir(parents=True, exist_ok=True)
    record = {"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine, "seconds": seconds, "search_seconds": search_seconds,
              "table_run_seconds": table_seconds, "fidelity": fidelity.to_dict(), "tasks": tasks,
              "searched": notes, "table": table,
              "rows": [{"task": r.task, "method": r.method, "config": r.config.to_dict() if r.config else None,
                        "test_accuracy": r.accuracies(), "mean": r.mean(), "sd": r.spread(),
                        "trainable": r.trainable(), "active": r.active()} for r in rows.values()]}
    (args.results / "paper_table.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
