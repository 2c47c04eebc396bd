"""Benchmark: the full HT-SR proxy pass (ESD + power-law fit of every target linear) on a model.

Target (issue 4): SmolLM2-135M's 210 linears in under 60 s on 2 CPU cores. Baselines measured in the same
run: the per-candidate Python loop that weightwatcher and AlphaLoRA use for the fit, and, with
``--weightwatcher``, weightwatcher 0.7.7's own ``analyze`` on the same linears.

    python benchmarks/proxies.py [--model default] [--threads 2] [--weightwatcher]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hilo_core.config import LLAMA_TARGETS
from hilo_core.models import load_model
from hilo_core.proxies import esd, esd_many, hill_alpha, layer_alphas, target_weights

TARGET_SECONDS = 60.0


def loop_hill_alpha(eigs: np.ndarray) -> float:
    """weightwatcher's fit_power_law_standard: one numpy pass per candidate xmin (all eigenvalues)."""
    x = np.sort(eigs[eigs > 1e-10 * eigs.max()])
    logs, best = np.log(x), (math.inf, math.nan)
    for i in range(len(x) - 1):
        n = len(x) - i
        alpha = 1 + n / (logs[i:].sum() - n * logs[i])
        d = np.max(np.abs(1 - (x[i:] / x[i]) ** (1 - alpha) - np.arange(n) / n))
        best = min(best, (d, alpha))
    return best[1]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def weightwatcher_seconds(model: torch.nn.Module, names: set[str]) -> float:
    import weightwatcher

    watcher = weightwatcher.WeightWatcher(model=model)
    ids = [int(row.layer_id) for row in watcher.describe().itertuples() if row.longname in names]
    return timed(lambda: watcher.analyze(layers=ids))[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    p.add_argument("--weightwatcher", action="store_true", help="also time weightwatcher.analyze (slow)")
    p.add_argument("--json", type=Path, default=Path(__file__).with_name("results") / "proxies.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (model, _), load_s = timed(lambda: load_model(args.model))
    found = target_weights(model, LLAMA_TARGETS)
    weights = [w for _, _, w in found]

    alphas, pass_s = timed(lambda: layer_alphas(model, cache=False))
    eigs, esd_s = timed(lambda: esd_many(weights))
    _, esd_loop_s = timed(lambda: [esd(w) for w in weights])
    _, fit_peak_s = timed(lambda: [hill_alpha(e) for e in eigs])
    fits_all, fit_all_s = timed(lambda: [hill_alpha(e, xmin_search="all") for e in eigs])
    loop, loop_s = timed(lambda: [loop_hill_alpha(e.double().numpy()) for e in eigs])
    agree = float(np.max(np.abs(np.array(fits_all) - np.array(loop)) / np.array(loop)))
    rows = [
        ("full pass: layer_alphas", pass_s, None),
        ("esd, svdvals batched by shape", esd_s, esd_loop_s),
        ("esd, one svdvals per linear (baseline)", esd_loop_s, esd_loop_s),
        ("fit, xmin near log-ESD peak (default)", fit_peak_s, None),
        ("fit, all xmin, vectorised", fit_all_s, loop_s),
        ("fit, all xmin, python loop (baseline)", loop_s, loop_s),
    ]
    if args.weightwatcher:
        ww_s = weightwatcher_seconds(model, {name for _, name, _ in found})
        rows.append(("weightwatcher 0.7.7 analyze (baseline)", ww_s, None))
        rows[0] = (rows[0][0], pass_s, ww_s)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"HT-SR proxy pass: {args.model}, {len(found)} linears, {args.threads} torch threads")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("speed-up vs baseline", justify="right")
    for name, seconds, baseline in rows:
        table.add_row(name, f"{seconds:.2f}", f"{baseline / seconds:.1f}x" if baseline else "")
    console = Console(width=110)
    console.print(table)
    verdict = "PASS" if pass_s < TARGET_SECONDS else "FAIL"
    console.print(f"target < {TARGET_SECONDS:.0f} s: {verdict} ({pass_s:.1f} s); model load {load_s:.1f} s; "
                  f"vectorised vs loop fit max relative difference {agree:.1e}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "torch": torch.__version__, "threads": args.threads},
        "model": args.model, "n_linears": len(found), "n_layers": len(alphas), "load_seconds": load_s,
        "stages": [{"stage": name, "seconds": s} for name, s, _ in rows],
        "target_seconds": TARGET_SECONDS, "pass": pass_s < TARGET_SECONDS, "loop_vs_vectorised_max_rel": agree,
    }
    args.json.write_text(json.dumps(record, indent=1))
    console.print(f"wrote {args.json}")
    return 0 if pass_s < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
