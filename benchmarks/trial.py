"""Trial throughput (issue 15): a training step against the frozen base, and a `make run` trial, before/after.

    python benchmarks/trial.py [--before-commit 19d7c66] [--repeats 3] [--sections step,trial]
                               [--versions before,after]

*Before* is the landed commit, checked out as a git worktree and imported in a subprocess; *after* is this
tree, in another. Both are worker processes that the parent drives in alternation (one request at a time),
so both see the same machine load. Step section: forward + backward of one training batch (8 analogy
questions, answer-token loss + 0.01 x the routers' aux loss) on the embedded SmolLM2-135M for the frozen
base (input grads only), PEFT LoRA r=8 and r=40 (MoLA 5555's total rank per module) and the hilo seeds
mola-5555, uniform (4 x r4) and hilo-rule, all with dropout 0.05 on the 7 targets; medians over repeats,
ratios against the same version's frozen base; a torch.profiler table of where mola-5555's step spends
its time beyond the base's. Trial section: ``objectives.evaluate`` at the ``make run`` settings (12 steps,
batch 8, 100 validation questions; *before* also scores the 200 test questions it scored in every trial,
*after* none, as the search no longer does), trials per hour and validation questions scored per second.
Prints markdown tables; writes every figure to trial.json next to this script (or --out).
``--versions after`` times this tree alone (a GPU check: no worktree of the old commit needed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEP_ARMS = ("base", "peft-r8", "peft-r40", "mola-5555", "uniform", "hilo-rule")
TRIAL_CONFIGS = ("mola-5555", "hilo-rule", "uniform")
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DROPOUT = 0.05
PROTOCOL = "@@trial "  # worker replies start with this, so library prints on stdout cannot be misread


class Worker:
    """Serves step / trial / score / profile requests on one code version (``--serve`` in a subprocess)."""

    def __init__(self, threads: int | None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)

        # Every project module is imported before the model loads: loading it puts the editable install's
        # folder on sys.path, which would shadow the old commit's modules imported later.
        import hilo_core
        import objectives.scoring
        import spaces
        from objectives import get_task
        from objectives.evaluation import base_model
        from objectives.sequences import encode

        self.sources = {m.__name__: m.__file__ for m in (hilo_core, objectives.scoring, spaces)}

        self.torch = torch
        self.model, self.tokenizer = base_model("default")
        self.device = next(self.model.parameters()).device
        self.task = get_task("analogy")
        self.batch = encode(self.tokenizer, self.task.train[:8], max_length=128)
        self.peft: dict[str, Any] = {}

    def _arm(self, arm: str):
        """``(model, undo)``: the model to step for ``arm`` and how to restore the shared base afterwards."""
        from hilo_core import eject, inject
        from spaces import seed_config

        model = self.model
        if arm == "base":
            flags = {n: p.requires_grad for n, p in model.named_parameters()}
            model.requires_grad_(False)
            hook = model.get_input_embeddings().register_forward_hook(lambda m, i, out: out.requires_grad_(True))

            def undo() -> None:
                hook.remove()
                for n, p in model.named_parameters():
                    p.requires_grad_(flags[n])
            return model, undo
        if arm.startswith("peft-r"):
            if arm not in self.peft:
                import copy

                from peft import LoraConfig, get_peft_model
                config = LoraConfig(r=int(arm[6:]), lora_alpha=16, lora_dropout=DROPOUT, target_modules=list(TARGETS))
                self.peft[arm] = get_peft_model(copy.deepcopy(model), config)
            return self.peft[arm], lambda: None
        config = seed_config(arm, n_layers=len(model.model.layers))
        assert config.lora_dropout == DROPOUT, config.lora_dropout
        inject(model, config)
        return model, lambda: eject(model)

    def _step(self, model) -> None:
        from hilo_core import aux_loss
        from objectives.sequences import answer_loss

        loss, _ = answer_loss(model, self.batch, pad_id=self.tokenizer.pad_token_id, device=self.device)
        (loss + 0.01 * aux_loss(model).to(loss.device)).backward()
        for p in model.parameters():
            p.grad = None
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)  # the step is done when the GPU is

    def step(self, arm: str, steps: int) -> dict:
        model, undo = self._arm(arm)
        model.train()
        try:
            self._step(model)  # warm-up
            times, cpu = [], []
            for _ in range(steps):
                started, cpu_started = time.perf_counter(), time.process_time()
                self._step(model)
                times.append(time.perf_counter() - started)
                cpu.append(time.process_time() - cpu_started)
        finally:
            undo()
        tokens = sum(len(e.sequence(e.answer)) for e in self.batch)
        return {"seconds": times, "cpu_seconds": cpu, "tokens": tokens}

    def profile(self, arm: str) -> dict:
        """Self CPU microseconds per operator over two steps."""
        from torch.profiler import ProfilerActivity, profile

        model, undo = self._arm(arm)
        model.train()
        try:
            self._step(model)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                self._step(model)
                self._step(model)
        finally:
            undo()
        return {e.key: e.self_cpu_time_total / 2 for e in prof.key_averages()}

    def trial(self, config: str, test: bool, steps: int = 12) -> dict:
        from objectives import Fidelity, evaluate
        from spaces import seed_config

        fidelity = Fidelity(steps=steps, batch_size=8, max_eval_examples=100, max_test_examples=200 if test else 0)
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics = evaluate(seed_config(config, n_layers=len(self.model.model.layers)), self.task, fidelity, seed=0)
        return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu_started,
                "train": metrics.train_seconds,
                "eval": metrics.eval_seconds, "accuracy": metrics.accuracy, "test_accuracy": metrics.test_accuracy,
                "scored": 100 + (200 if test else 0)}

    def score(self, n: int) -> dict:
        """Seconds to score ``n`` validation questions with mola-5555 adapters in place (untrained)."""
        from objectives.scoring import choice_scores
        from objectives.sequences import encode

        encoded = encode(self.tokenizer, self.task.validation[:n], max_length=128)
        model, undo = self._arm("mola-5555")
        try:
            started, cpu_started = time.perf_counter(), time.process_time()
            scores = choice_scores(model, encoded, pad_id=self.tokenizer.pad_token_id, device=self.device)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        finally:
            undo()
        return {"seconds": seconds, "cpu_seconds": cpu, "questions": n, "scores": scores}

    def describe(self) -> str:
        if self.device.type == "cuda":
            return self.torch.cuda.get_device_name(self.device)
        return (f"cpu ({self.torch.get_num_threads()} threads, torch {self.torch.__version__}); code from "
                + ", ".join(f"{name} {path}" for name, path in self.sources.items()))

    def serve(self) -> None:
        print(PROTOCOL + json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            kind = request.pop("cmd")
            print(PROTOCOL + json.dumps(getattr(self, kind)(**request)), flush=True)


class Client:
    """A worker subprocess importing the code under ``root``."""

    def __init__(self, root: pathlib.Path, threads: int | None) -> None:
        env = dict(os.environ, HILO_TRIAL_THREADS=str(threads or ""), PYTHONPATH=str(root), OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                   TQDM_DISABLE="1")
        self.proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "--serve"], cwd=root,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._read()

    def _read(self) -> Any:
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL):
                return json.loads(line[len(PROTOCOL):])
        raise RuntimeError(f"worker exited with code {self.proc.wait()}")

    def __call__(self, cmd: str, **kwargs: Any) -> Any:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def before_tree(commit: str) -> pathlib.Path:
    """A detached worktree of ``commit`` under /tmp (created once, reused)."""
    path = pathlib.Path("/tmp") / f"hilo-before-{commit[:12]}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    return path


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def step_section(workers: dict[str, Client], repeats: int, steps: int) -> dict:
    wall: dict[str, dict[str, list[float]]] = {v: {a: [] for a in STEP_ARMS} for v in workers}
    cpu: dict[str, dict[str, list[float]]] = {v: {a: [] for a in STEP_ARMS} for v in workers}
    tokens = {}
    for rep in range(repeats):
        for arm in STEP_ARMS:
            for version in (list(workers) if rep % 2 == 0 else list(workers)[::-1]):
                reply = workers[version]("step", arm=arm, steps=steps)
                wall[version][arm] += reply["seconds"]
                cpu[version][arm] += reply["cpu_seconds"]
                tokens[version] = reply["tokens"]
    rows = {}
    for version in workers:
        base, base_cpu = median(wall[version]["base"]), median(cpu[version]["base"])
        rows[version] = {a: {"median_s": median(wall[version][a]), "runs_s": wall[version][a],
                             "vs_base": median(wall[version][a]) / base, "cpu_median_s": median(cpu[version][a]),
                             "cpu_runs_s": cpu[version][a], "cpu_vs_base": median(cpu[version][a]) / base_cpu}
                         for a in STEP_ARMS}
    profiles = {v: {a: w("profile", arm=a) for a in ("base", "mola-5555")} for v, w in workers.items()}
    extra = {}
    for version, p in profiles.items():
        diff = {k: p["mola-5555"].get(k, 0.0) - p["base"].get(k, 0.0) for k in p["mola-5555"]}
        top = sorted(diff.items(), key=lambda kv: -kv[1])[:8]
        extra[version] = {"base_total_ms": sum(p["base"].values()) / 1e3,
                          "mola_total_ms": sum(p["mola-5555"].values()) / 1e3,
                          "top_extra_ms": {k: v / 1e3 for k, v in top}}
    return {"rows": rows, "tokens": tokens, "profile": extra}


def trial_section(workers: dict[str, Client], configs: tuple[str, ...]) -> dict:
    runs: dict[str, list[dict]] = {v: [] for v in workers}
    for version, worker in workers.items():
        worker("trial", config=configs[0], test=False, steps=1)  # warm-up: lazy imports, allocator, encodings
    for i, config in enumerate(configs):
        for version in (list(workers) if i % 2 == 0 else list(workers)[::-1]):
            runs[version].append(dict(workers[version]("trial", config=config, test=version == "before"),
                                      config=config))
    scoring = {v: [w("score", n=100) for _ in range(2)] for v, w in workers.items()}
    summary = {}
    for version, rs in runs.items():
        wall = statistics.mean(r["wall"] for r in rs)
        summary[version] = {
            "trial_s": wall, "trials_per_hour": 3600 / wall,
            "train_s": statistics.mean(r["train"] for r in rs), "eval_s": statistics.mean(r["eval"] for r in rs),
            "other_s": statistics.mean(r["wall"] - r["train"] - r["eval"] for r in rs),
            "questions_scored": rs[0]["scored"],
            "trial_cpu_s": statistics.mean(r["cpu"] for r in rs),
            "val_questions_per_s": 100 / median([s["seconds"] for s in scoring[version]]),
            "val_questions_per_cpu_s": 100 / median([s["cpu_seconds"] for s in scoring[version]]),
            "runs": rs}
    if len(scoring) == 2:
        old, new = scoring["before"][0]["scores"], scoring["after"][0]["scores"]
        summary["score_max_abs_diff"] = max(abs(a - b) for o, n in zip(old, new) for a, b in zip(o, n))
    return summary


def print_tables(result: dict) -> None:
    versions = [v for v in ("before", "after") if v in result["meta"]["versions"]]
    if "step" in result:
        rows = result["step"]["rows"]
        print("\n| model | " + " | ".join(f"{v} ms | {v} vs base | {v} CPU ms | {v} CPU vs base" for v in versions)
              + (" | after / before (CPU) |" if len(versions) == 2 else " |"))
        print("| --- |" + " ---: | ---: | ---: | ---: |" * len(versions) + (" ---: |" if len(versions) == 2 else ""))
        for arm in STEP_ARMS:
            cells = [f"{rows[v][arm]['median_s'] * 1e3:.0f} | {rows[v][arm]['vs_base']:.2f}x | "
                     f"{rows[v][arm]['cpu_median_s'] * 1e3:.0f} | {rows[v][arm]['cpu_vs_base']:.2f}x" for v in versions]
            if len(versions) == 2:
                cells.append(f"{rows['after'][arm]['cpu_median_s'] / rows['before'][arm]['cpu_median_s']:.2f}")
            print(f"| {arm} | " + " | ".join(cells) + " |")
        for version, p in result["step"]["profile"].items():
            print(f"\n{version}: profiler self CPU per step, base {p['base_total_ms']:.0f} ms, mola-5555 "
                  f"{p['mola_total_ms']:.0f} ms; largest extra ops: "
                  + ", ".join(f"{k} {v:.0f} ms" for k, v in p["top_extra_ms"].items()))
    if "trial" in result:
        t = result["trial"]
        print("\n| version | questions scored | trial s | train s | scoring s | other s | trial CPU s | trials/hour | "
              "validation questions/s | per CPU s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for version in versions:
            s = t[version]
            print(f"| {version} | {s['questions_scored']} | {s['trial_s']:.1f} | {s['train_s']:.1f} | "
                  f"{s['eval_s']:.1f} | {s['other_s']:.1f} | {s['trial_cpu_s']:.1f} | {s['trials_per_hour']:.0f} | "
                  f"{s['val_questions_per_s']:.1f} | {s['val_questions_per_cpu_s']:.1f} |")
        if len(versions) == 2:
            print(f"\ntrials/hour after/before: "
                  f"{t['after']['trials_per_hour'] / t['before']['trials_per_hour']:.2f}x; validation questions/s "
                  f"after/before: {t['after']['val_questions_per_s'] / t['before']['val_questions_per_s']:.2f}x; "
                  f"max |score difference| on the 100 questions: {t['score_max_abs_diff']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--before-commit", default="19d7c66")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the step section (medians over them)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per arm and round (after one warm-up)")
    parser.add_argument("--sections", default="step,trial")
    parser.add_argument("--versions", default="before,after", help="before, after or both (this tree is after)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the workers (default: torch's)")
    parser.add_argument("--trials", default=",".join(TRIAL_CONFIGS), help="seed configs timed as trials")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    if args.serve:
        Worker(int(os.environ["HILO_TRIAL_THREADS"] or 0)).serve()
        return
    sections = set(args.sections.split(","))
    versions = [v for v in ("before", "after") if v in args.versions.split(",")]
    started = time.time()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "python benchmarks/trial.py " + " ".join(sys.argv[1:]), "machine": platform.platform(),
            "cpus": os.cpu_count(), "load_average_start": os.getloadavg(), "before_commit": args.before_commit,
            "versions": versions,
            "after_commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() + " + working tree"}
    roots = {"before": lambda: before_tree(args.before_commit), "after": lambda: ROOT}
    workers = {v: Client(roots[v](), args.threads) for v in versions}
    result: dict[str, Any] = {"meta": meta}
    try:
        meta["device"] = workers[versions[-1]]("describe")
        if "step" in sections:
            result["step"] = step_section(workers, args.repeats, args.steps)
            pathlib.Path(args.out).write_text(json.dumps(result, indent=1))  # kept if a later section fails
        if "trial" in sections:
            result["trial"] = trial_section(workers, tuple(args.trials.split(",")))
    finally:
        for w in workers.values():
            w.close()
    meta["load_average_end"] = os.getloadavg()
    meta["minutes"] = (time.time() - started) / 60
    print(f"{meta['date']}  {meta['device']}  {meta['machine']}  {meta['cpus']} CPUs  load average {meta['load_average_start'][0]:.1f}"
          f" -> {meta['load_average_end'][0]:.1f}  ({meta['minutes']:.1f} min)")
    print_tables(result)
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
