"""Zero-shot and briefly fine-tuned accuracy of the embedded SmolLM2-135M on a built-in task.

    python benchmarks/zero_shot.py [--task analogy] [--steps 40] [--seed 0] [--out DIR]

Row (a): the bare model, no adapters, scored on the task's test split (length-normalised log-likelihood
of each choice; chance is 1/choices). Row (b): ``objectives.evaluate`` with a uniform MoLoRA of 4 experts
x rank 4, top-2 router, in all 30 layers, trained for --steps on the train split, then scored on the same
test questions. Prints a markdown table with (b) against (a) and chance, and writes it with the run's
settings to zero_shot.json in --out (by default next to this script).
"""

from __future__ import annotations

import os

# OpenMP's busy-waiting threads slow torch 5-8x on a shared CPU; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from hilo_core import MoLoRAConfig, find_decoder_layers  # noqa: E402
from objectives import Fidelity, base_model, evaluate, get_task  # noqa: E402
from objectives.scoring import accuracy  # noqa: E402
from objectives.sequences import encode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="analogy")
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the task's splits use seed 0)")
    parser.add_argument("--test-examples", type=int, default=200)
    parser.add_argument("--val-examples", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=0, help="print validation accuracy every N steps")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    args = parser.parse_args()

    task = get_task(args.task)
    model, tokenizer = base_model(args.model)
    device = next(model.parameters()).device
    test = task.test[:args.test_examples]
    n_layers = len(find_decoder_layers(model)[1])
    chance = sum(1 / len(e.choices) for e in test) / len(test)

    started = time.perf_counter()
    zero_shot = accuracy(model, encode(tokenizer, test, max_length=128), pad_id=tokenizer.pad_token_id,
                         device=device)
    zero_seconds = time.perf_counter() - started
    print(f"zero-shot: {zero_shot:.1%} on {len(test)} test questions in {zero_seconds:.0f} s", flush=True)

    config = MoLoRAConfig.uniform(n_layers, 4, 4)
    fidelity = Fidelity(steps=args.steps, batch_size=args.batch_size, lr=args.lr, router_lr=args.lr,
                        eval_every=args.eval_every, max_eval_examples=args.val_examples,
                        max_test_examples=args.test_examples)
    started = time.perf_counter()
    tuned = evaluate(config, task, fidelity, seed=args.seed, model=args.model,
                     on_eval=lambda step, acc: print(f"step {step}: validation {acc:.1%}", flush=True))
    tuned_seconds = time.perf_counter() - started

    rows = [
        ("(a) zero-shot, no adapters", zero_shot, 0, 0.0, zero_seconds),
        (f"(b) uniform 4 experts x r4, {args.steps} steps", tuned.test_accuracy, args.steps, tuned.train_seconds,
         tuned.eval_seconds),
    ]
    header = (f"{args.task} test split, {len(test)} questions, chance {chance:.1%}; model {args.model}; "
              f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
              f"{datetime.date.today()}")
    lines = [header, "", "| run | test accuracy | steps | train s | eval s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {acc:.1%} | {steps} | {train:.0f} | {ev:.0f} |" for name, acc, steps, train, ev in rows]
    lines += ["", f"(b) - (a): {tuned.test_accuracy - zero_shot:+.1%}; (a) / chance: {zero_shot / chance:.2f}x; "
              f"(b) trainable params {tuned.trainable_params:,}, active/token {tuned.active_params:,.0f}; "
              f"validation accuracy {tuned.accuracy:.1%} on {args.val_examples}; final train loss "
              f"{tuned.final_loss:.3f}; {tuned.tokens_per_second:.0f} train tokens/s; whole fine-tune "
              f"call {tuned_seconds:.0f} s"]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(sys.argv), "date": str(datetime.date.today()), "device": str(device),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "task": args.task, "test_examples": len(test), "chance": chance, "zero_shot_accuracy": zero_shot,
              "zero_shot_seconds": zero_seconds, "config": config.to_dict(), "fidelity": fidelity.to_dict(),
              "seed": args.seed, "fine_tuned": tuned.to_dict(), "table": lines}
    (args.out / "zero_shot.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
