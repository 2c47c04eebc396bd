"""`python -m search.train --study S --trial best|N|front [--steps K] [--out DIR]`: train a study's config, keep it.

The chosen trial's config is fine-tuned on the study's task, model and fine-tune settings (``--steps`` sets
the length), validation accuracy is printed along the way and the test accuracy at the end. The adapters are
saved with ``save_adapters`` (config beside them), then loaded into a freshly loaded base model, which must
give the same logits and the same test accuracy. Output: <out-root>/<study>/train/trial<N>/.
``--trial front`` does this for every member of the front (the noise-aware one when the study has records):
the search keeps no weights, and retraining with the study's settings and seed gives its trials' adapters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Sequence

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads spin on shared CPUs otherwise

import torch
from rich.console import Console

from hilo_core import load_adapters, save_adapters
from hilo_core.cli import OneLineParser, print_error, quiet_hub_logs
from objectives import Fidelity, TaskDataError, TrialFailed, base_model, evaluate, get_task

ADAPTERS = "adapters"
REPORT = "train.json"


class TrainInputError(ValueError):
    """Bad input to search.train: reported as one line, exit code 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from reports.load import DEFAULT_OUT_ROOT

    p = OneLineParser(prog="python -m search.train", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="study name, as given to search.run --study")
    p.add_argument("--trial", default="best", help="'best' (see reports.choice.choose_trial), a trial number, or"
                   " 'front' (every front member)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the study's --fidelity)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: the study's --seed)")
    p.add_argument("--test-examples", type=int, default=0, help="test questions scored (default 0: the whole split)")
    p.add_argument("--max-trainable", type=float, default=None, help="with --trial best: a trainable-parameter cap")
    p.add_argument("--out", type=Path, default=None, help="output folder (default <out-root>/<study>/train/trial<N>;"
                   " with --trial front, trial<N> folders inside it)")
    p.add_argument("--no-verify", action="store_true", help="skip reloading the saved adapters into a fresh model")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///<out-root>/<study>/study.db)")
    p.add_argument("--out-root", default=DEFAULT_OUT_ROOT, help=f"per-study folders (default: {DEFAULT_OUT_ROOT})")
    return p.parse_args(argv)


def eval_interval(steps: int, reports: int = 4) -> int:
    """The divisor of ``steps`` giving closest to ``reports`` progress lines (the last step always reports)."""
    return min((d for d in range(1, steps + 1) if steps % d == 0), key=lambda d: (abs(steps // d - reports), -d))


def study_fidelity(attrs: dict, steps: int | None, test_examples: int, n_test: int) -> Fidelity:
    """The study's fine-tune settings, with ``steps`` and the test split scored."""
    stored = attrs.get("fidelity")
    if not isinstance(stored, dict):
        if steps is None:
            raise TrainInputError("the study records no fine-tune settings: pass --steps")
        stored = {}
    known = {f.name for f in fields(Fidelity)}
    base = Fidelity(**{k: v for k, v in stored.items() if k in known})
    steps = base.steps if steps is None else steps
    if steps <= 0:
        raise TrainInputError(f"--steps must be a positive integer, got {steps}")
    if test_examples < 0:
        raise TrainInputError(f"--test-examples must be >= 0, got {test_examples}")
    return replace(base, steps=steps, eval_every=eval_interval(steps), max_test_examples=test_examples or max(n_test, 1))


@torch.no_grad()
def probe_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    was = model.training
    model.eval()
    try:
        return model(ids).logits.float().cpu()
    finally:
        model.train(was)


def probe_ids(tokenizer, task, device) -> torch.Tensor:
    """A few test prompts, left as one padded batch, whose logits the reloaded model must reproduce."""
    texts = [e.prompt for e in task.test[:4]] or ["hello"]
    return tokenizer(texts, return_tensors="pt", padding=True).input_ids.to(device)


def front_choices(data, max_trainable: float | None) -> list:
    """Every front member with a config (the noise-aware front when the study has one), within the cap."""
    from reports.choice import Choice

    rows = [r for r in (data.noise_front or data.front) if r.config is not None and (
        max_trainable is None or (r.value("trainable") or 0.0) <= max_trainable)]
    which = "noise-aware front" if data.noise_front else "front"
    return [Choice(r, f"{which} member {i + 1} of {len(rows)} (--trial front)") for i, r in enumerate(rows)]


def train_study(args: argparse.Namespace, console: Console) -> list[dict]:
    """Choose the trial(s), then train, save and (unless ``--no-verify``) reload each; returns the reports."""
    from reports.choice import choose_trial
    from reports.load import StudyError, load, study_folder

    try:
        data = load(args.study, args.storage, args.out_root)
        choices = front_choices(data, args.max_trainable) if args.trial == "front" else \
            [choose_trial(data, args.trial, max_trainable=args.max_trainable)]
    except StudyError as err:
        raise TrainInputError(str(err)) from None
    if not choices:
        raise TrainInputError(f"study {args.study!r} has no front member with a config")
    attrs = data.attrs
    for key in ("task", "model"):
        if key not in attrs:
            raise TrainInputError(f"study {args.study!r} records no {key!r}; it was not written by search.run")
    try:
        task = get_task(attrs["task"], seed=int(attrs.get("seed", 0)), columns=attrs.get("task_columns"))
    except (TaskDataError, ValueError) as err:
        raise TrainInputError(f"the study's task {attrs['task']!r}: {err}") from None
    fidelity = study_fidelity(attrs, args.steps, args.test_examples, len(task.test))
    root = args.out or study_folder(args.study, args.out_root) / "train"
    if args.out is not None and args.trial != "front":
        return [train_trial(args, choices[0], attrs, task, fidelity, args.out, console)]
    return [train_trial(args, c, attrs, task, fidelity, root / f"trial{c.row.number}", console) for c in choices]


def train_trial(args: argparse.Namespace, choice, attrs: dict, task, fidelity: Fidelity, out: Path,
                console: Console) -> dict:
    """Train one chosen trial, save its adapters into ``out`` and check them; returns what ``train.json`` records."""
    row = choice.row
    console.print(f"trial {row.number}{f' ({row.seed_name})' if row.seed_name else ''}: {choice.why}")
    seed = int(attrs.get("seed", 0)) if args.seed is None else args.seed
    model, tokenizer = base_model(attrs["model"])
    device = next(model.parameters()).device
    ids = probe_ids(tokenizer, task, device)
    saved: dict = {}

    def on_eval(step: int, accuracy: float) -> None:
        console.print(f"  step {step}/{fidelity.steps}: validation accuracy {accuracy:.4f}")
        if step == fidelity.steps:  # still injected: evaluate ejects the adapters only after its last scoring
            save_adapters(model, out / ADAPTERS)
            saved["logits"] = probe_logits(model, ids)

    console.print(f"training {fidelity.steps} steps (batch {fidelity.batch_size}, lr {fidelity.lr:g}, seed {seed}) "
                  f"on {attrs['task']} with {attrs['model']}")
    metrics = evaluate(row.config, task, fidelity, seed=seed, model=attrs["model"], on_eval=on_eval)
    if metrics.test_accuracy is None:
        raise TrainInputError(f"the study's task {attrs['task']!r} has no test split to score")
    console.print(f"validation accuracy {metrics.accuracy:.4f}, test accuracy {metrics.test_accuracy:.4f} "
                  f"({min(fidelity.max_test_examples, len(task.test))} questions); adapters: {out / ADAPTERS}")
    report = {"study": args.study, "trial": row.number, "why": choice.why, "seed": seed,
              "fidelity": fidelity.to_dict(), "metrics": metrics.to_dict(), "trial_metrics": row.metrics,
              "adapters": str(out / ADAPTERS)}
    if not args.no_verify:
        report["reload"] = verify(out / ADAPTERS, attrs["model"], task, fidelity, ids, saved["logits"], metrics)
        check = report["reload"]
        console.print(f"reloaded into a fresh {attrs['model']}: test accuracy {check['test_accuracy']:.4f} "
                      f"({'same' if check['same_test_accuracy'] else 'DIFFERENT'}), max |logit difference| "
                      f"{check['max_logit_difference']:.3g}")
    (out / REPORT).write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def verify(folder: Path, model_name: str, task, fidelity: Fidelity, ids: torch.Tensor, logits: torch.Tensor,
           metrics) -> dict:
    """Load the saved adapters into a freshly loaded base model; its logits and test accuracy must match."""
    from hilo_core.models import load_model
    from objectives.scoring import accuracy
    from objectives.sequences import encode

    device = ids.device
    fresh, tokenizer = load_model(model_name, device=device)
    load_adapters(fresh, folder)
    test = encode(tokenizer, task.test[:fidelity.max_test_examples], max_length=fidelity.max_length)
    test_accuracy = accuracy(fresh, test, pad_id=tokenizer.pad_token_id, device=device,
                             batch_rows=fidelity.eval_batch_size)
    difference = float((probe_logits(fresh, ids) - logits).abs().max())
    return {"test_accuracy": test_accuracy, "same_test_accuracy": test_accuracy == metrics.test_accuracy,
            "max_logit_difference": difference}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_hub_logs()  # our own progress lines; HF's bars would split one-line errors
    console = Console(soft_wrap=True)
    try:
        reports = train_study(args, console)
    except TrainInputError as err:
        print_error("search.train", err)
        return 2
    except TrialFailed as err:
        print_error("search.train", f"training failed: {err}")
        return 1
    for report in reports:
        check = report.get("reload")
        if check is not None and not (check["same_test_accuracy"] and check["max_logit_difference"] <= 1e-5):
            print_error("search.train", f"trial {report['trial']}: the reloaded adapters differ: {check}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
