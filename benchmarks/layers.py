"""CPU benchmark: forward+backward of a MoLoRA linear, stacked path vs per-expert loop (issue 2).

Target: stacked >= 2x the loop at 8 experts x rank 8, hidden 576 and 2048. Prints a table, writes JSON.
Usage: python benchmarks/layers.py [--tokens 2048] [--repeats 20] [--out benchmarks/layers.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from hilo_core import LayerSpec, MoLoRALinear, RouterSpec


def time_fwd_bwd(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward+backward over ``repeats`` runs after two warm-ups."""
    times = []
    for i in range(repeats + 2):
        xi = x.detach().requires_grad_(True)
        start = time.perf_counter()
        layer(xi).sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - start)
        layer.zero_grad(set_to_none=True)
    return sorted(times)[len(times) // 2]


def bench(hidden: int, tokens: int, repeats: int, n_experts: int = 8, rank: int = 8, top_k: int = 2) -> dict:
    torch.manual_seed(0)
    base = nn.Linear(hidden, hidden)
    base.requires_grad_(False)
    layer = MoLoRALinear(base, spec=LayerSpec(ranks=(rank,) * n_experts, router=RouterSpec(kind="topk", top_k=top_k)),
                         lora_alpha=16.0)
    nn.init.normal_(layer.lora_B, std=0.02)
    x = torch.randn(tokens, hidden)
    row = {"hidden": hidden, "tokens": tokens, "experts": n_experts, "rank": rank, "top_k": top_k}
    row["base_s"] = time_fwd_bwd(base, x, repeats)
    layer.use_loop = False
    row["stacked_s"] = time_fwd_bwd(layer, x, repeats)
    layer.use_loop = True
    row["loop_s"] = time_fwd_bwd(layer, x, repeats)
    row["loop_over_stacked"] = row["loop_s"] / row["stacked_s"]
    row["stacked_over_base"] = row["stacked_s"] / row["base_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).with_suffix(".json")))
    args = parser.parse_args()
    rows = [bench(h, args.tokens, args.repeats) for h in (576, 2048)]
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} {platform.processor() or platform.machine()}")
    print(f"{'hidden':>6} {'tokens':>6} {'base ms':>8} {'stacked ms':>10} {'loop ms':>8} {'loop/stacked':>12} "
          f"{'stacked/base':>12}")
    for r in rows:
        print(f"{r['hidden']:>6} {r['tokens']:>6} {r['base_s'] * 1e3:>8.2f} {r['stacked_s'] * 1e3:>10.2f} "
              f"{r['loop_s'] * 1e3:>8.2f} {r['loop_over_stacked']:>12.2f} {r['stacked_over_base']:>12.2f}")
    meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": "cpu",
            "threads": torch.get_num_threads(), "torch": torch.__version__}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
