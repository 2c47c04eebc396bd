"""`python -m hilo_core`: inject a heterogeneous MoLoRA config into a model, run forward+backward, print params.

A smoke run of the components on a real model (default: the embedded SmolLM2-135M-Instruct).
"""

from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table

from . import (LayerSpec, MoLoRAConfig, RouterSpec, aux_loss, count_active, count_trainable, find_decoder_layers,
               inject, parameter_table)
from .cli import OneLineParser, print_error, quiet_hub_logs
from .models import load_model


def rule_config(n_layers: int) -> MoLoRAConfig:
    """HiLo-style rule: experts and ranks 2-4-6-8 by quarter of depth, top-p dynamic activation."""
    layers = []
    for i in range(n_layers):
        q = min(4 * i // n_layers, 3)
        n, r = 2 * (q + 1), 2 * (q + 1)
        layers.append(LayerSpec(ranks=(r,) * n, router=RouterSpec(kind="topp", top_p=0.75)))
    return MoLoRAConfig(layers=tuple(layers))


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m hilo_core", description=__doc__)
    parser.add_argument("--model", default="default", help="'default' (embedded SmolLM2-135M), a local folder or an HF id")
    args = parser.parse_args(argv)
    quiet_hub_logs()
    console = Console()
    start = time.perf_counter()
    try:  # an unloadable model or one without Llama-named linears: one line and exit code 2
        with console.status(f"loading {args.model} ..."):
            model, tokenizer = load_model(args.model)
        _, blocks = find_decoder_layers(model)
        config = rule_config(len(blocks))
        inject(model, config)
    except (OSError, ValueError) as err:
        print_error("hilo_core", err)
        return 2
    batch = tokenizer(["Athens is to Greece as Baghdad is to Iraq."], return_tensors="pt")
    model.train()
    out = model(**batch, labels=batch["input_ids"])
    loss = out.loss + 0.01 * aux_loss(model)
    loss.backward()
    grads = sum(int(p.grad is not None) for p in model.parameters() if p.requires_grad)
    table = Table(title=f"MoLoRA on {args.model}: {len(blocks)} layers, {len(config.target_modules)} modules each")
    for col in ("layer", "experts", "ranks", "router", "modules", "trainable"):
        table.add_column(col, justify="right" if col != "router" else "left")
    for row in parameter_table(model):
        table.add_row(str(row.layer), str(row.n_experts), ",".join(map(str, row.ranks)), row.router,
                      str(row.modules), f"{row.trainable:,}")
    console.print(table)
    base = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    console.print(f"loss {out.loss.item():.4f} (aux {aux_loss(model).item():.4f}); gradients on {grads} tensors")
    console.print(f"base params {base:,}; trainable {count_trainable(model):,}; "
                  f"active per token {count_active(model, batch):,.0f}; {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    torch.manual_seed(0)
    raise SystemExit(main())
