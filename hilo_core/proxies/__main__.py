"""``python -m hilo_core.proxies``: per-layer HT-SR alphas and the AlphaLoRA expert allocation of a model.

Prints a table, and writes ``alphas.json`` and ``alphas.png`` into one output folder (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from ..cli import OneLineParser, print_error, quiet_hub_logs
from ..config import LLAMA_TARGETS
from ..models import DEFAULT_MODEL, load_model
from .alphas import layer_alphas
from .allocation import ROUNDINGS, alphalora_allocation
from .hill import DEFAULT_XMIN_SEARCH, XMIN_SEARCHES

# AlphaLoRA's budget: T = 160 experts for 32 layers, i.e. 5 per layer on average.
_EXPERTS_PER_LAYER = 5


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m hilo_core.proxies", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_MODEL, help="'default' (embedded SmolLM2-135M), a folder or an HF id")
    p.add_argument("--targets", default=",".join(LLAMA_TARGETS), help="comma-separated target module names")
    p.add_argument("--total-experts", type=int, default=None,
                   help=f"AlphaLoRA's T; default {_EXPERTS_PER_LAYER} x number of layers (160 for 32)")
    p.add_argument("--beta", type=float, default=2.5, help="AlphaLoRA's exponent beta")
    p.add_argument("--xmin-search", choices=XMIN_SEARCHES, default=DEFAULT_XMIN_SEARCH,
                   help="xmin candidates: fix_finger (AlphaLoRA's released code, default), peak ([0.95, 1.5] x the"
                   " log-ESD peak, as stated) or all eigenvalues (weightwatcher)")
    p.add_argument("--rounding", choices=ROUNDINGS, default="released",
                   help="expert counts: released (AlphaLoRA's expert_number.py, default) or nearest (hilo's)")
    p.add_argument("--device", default="cpu", help="where the SVDs run, e.g. cuda")
    p.add_argument("--out", type=Path, default=None, help="output folder; default reports/out/proxies-<model>")
    p.add_argument("--no-cache", action="store_true", help="recompute even when a cached result exists")
    return p


def check_device(name: str) -> None:
    """``--device`` must name a torch device this machine has (cuda needs a visible GPU)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be a torch device such as cpu or cuda, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is visible here; use --device cpu")


def _plot(path: Path, alphas: tuple[float, ...], experts: tuple[int, ...], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = range(len(alphas))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.3 * len(alphas)), 5.5), sharex=True)
    top.bar(layers, alphas, color="tab:blue")
    top.set_ylabel("mean HT-SR alpha")
    top.set_title(title)
    bottom.bar(layers, experts, color="tab:orange")
    bottom.set_ylabel("AlphaLoRA experts")
    bottom.set_xlabel("layer")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    quiet_hub_logs()  # retries and loading bars would split a one-line error
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    start = time.perf_counter()
    try:  # bad input (model, targets, T, beta, device): one line and exit code 2, as every CLI of the project
        check_device(args.device)
        with console.status(f"loading {args.model}"):
            model, _ = load_model(args.model, device=args.device)
        with console.status("fitting power laws to every target linear's ESD"):
            alphas = layer_alphas(model, targets, xmin_search=args.xmin_search, cache=not args.no_cache)
        total = args.total_experts if args.total_experts is not None else _EXPERTS_PER_LAYER * len(alphas)
        experts = alphalora_allocation(alphas.layers, total, beta=args.beta, rounding=args.rounding)
    except (OSError, ValueError) as err:
        print_error("hilo_core.proxies", err)  # one line, whatever HF said
        return 2

    table = Table(title=f"{args.model}: HT-SR alpha and AlphaLoRA experts (T={total}, beta={args.beta})")
    for column in ("layer", "alpha", "min module", "max module", "experts"):
        table.add_column(column, justify="right")
    for i, (alpha, modules, n) in enumerate(zip(alphas.layers, alphas.modules, experts)):
        values = modules.values()
        table.add_row(str(i), f"{alpha:.3f}", f"{min(values):.3f}", f"{max(values):.3f}", str(n))
    console.print(table)

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(args.model).name or args.model).strip("-")
    out = args.out if args.out is not None else Path("reports") / "out" / f"proxies-{slug}"
    out.mkdir(parents=True, exist_ok=True)
    result = {"model": args.model, "targets": list(targets), "xmin_search": args.xmin_search, "rounding": args.rounding,
              "total_experts": total, "beta": args.beta, "experts": list(experts), **alphas.to_json()}
    (out / "alphas.json").write_text(json.dumps(result, indent=1))
    _plot(out / "alphas.png", alphas.layers, experts, f"{args.model} (T={total}, beta={args.beta})")
    console.print(f"wrote {out / 'alphas.json'} and {out / 'alphas.png'} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
