"""Forward+backward time of a frozen linear with MoLoRA adapters: fused Triton vs torch paths vs PEFT.

    python benchmarks/kernels.py [--out DIR] [--tokens T] [--shapes llama7b smollm2]

Columns (ms per forward+backward): (a) the frozen base linear alone; (b) base + fused Triton MoLoRA
(the ``molora_delta`` contract, then ``out + delta``); (b+) the same with the add fused into the kernel
(``base=``); (c) base + torch stacked path; (d) base + per-expert loop (reference.loop_delta);
(e) base + one PEFT LoRA of rank sum(ranks). Ratios (b)/(a) (target <= 1.15) and (d)/(b) (target >= 3),
and the roofline floor of (b) and of the fused delta alone (bandwidth and bf16 FLOP/s measured in the
same run) over their measured times. Router weights come from a top-2 router and get gradients.
On a CPU the Triton columns are n/a: (a), (c), (d), (e) run at SmolLM2 shapes in float32, fewer tokens.
Prints a markdown table and writes it, with every timing and the run's metadata, to kernels.json in --out
(by default next to this script).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from hilo_core.kernels.reference import loop_delta, stacked_delta  # noqa: E402
from hilo_core.routers import TopKRouter  # noqa: E402

SHAPES = {"llama7b": [(4096, 4096), (4096, 11008)], "smollm2": [(576, 576), (576, 1536)]}
RANKS = (8,) * 8
TOP_K = 2
ALPHA = 16.0


def timer(device: str):
    """``fn -> ms``: triton.testing.do_bench (median, L2 flushed, grads reset) on a GPU; on a CPU a median."""
    if device == "cuda":
        from triton.testing import do_bench
        return lambda fn, grads: do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")

    def cpu_time(fn, grads, reps=5, warmup=2):
        times = []
        for _ in range(warmup + reps):
            for g in grads:
                g.grad = None
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times[warmup:])
    return cpu_time


def ceilings(device: str, dtype: torch.dtype) -> dict[str, float]:
    """Attained copy bandwidth (bytes/s) and large-matmul FLOP/s on this device, the floors' denominators."""
    from triton.testing import do_bench
    src = torch.randn(2 ** 28 // 4, device=device)
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    a = torch.randn(8192, 8192, device=device, dtype=dtype)
    b = torch.randn(8192, 8192, device=device, dtype=dtype)
    mm_ms = do_bench(lambda: a @ b, return_mode="median")
    return {"bytes_per_s": 2 * src.nbytes / (copy_ms * 1e-3), "flops": 2 * 8192 ** 3 / (mm_ms * 1e-3)}


def floor_ms(tokens: int, d_in: int, d_out: int, R: int, N: int, size: int, peak: dict, base: bool) -> float:
    """Roofline lower bound of forward+backward: the fwd reads x, writes y; the bwd reads dy, x, writes dx.

    Adapter FLOPs: six skinny GEMMs (h, y; dh, dx, dA, dB); A and B read twice and their gradients written
    once; fp32 router weights read twice, their gradient written once. With ``base`` add the frozen W's
    two GEMMs (y and dx) and its two reads.
    """
    nbytes = size * (tokens * (3 * d_in + 2 * d_out) + 3 * R * (d_in + d_out)) + 3 * 4 * tokens * N
    flops = 3 * 2 * tokens * R * (d_in + d_out)
    if base:
        nbytes += 2 * size * d_in * d_out
        flops += 2 * 2 * tokens * d_in * d_out
    return 1e3 * max(nbytes / peak["bytes_per_s"], flops / peak["flops"])


def peft_linear(weight: torch.Tensor, rank: int):
    """The base linear wrapped by PEFT's own LoRA layer of rank ``rank``; None when peft is missing."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        return None
    holder = torch.nn.Module()
    holder.proj = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, device=weight.device,
                                  dtype=weight.dtype)
    holder.proj.weight.data.copy_(weight)
    holder.proj.weight.requires_grad_(False)
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=ALPHA, lora_dropout=0.0,
                                               target_modules=["proj"]), holder)
    for name, p in model.named_parameters():
        if "lora_" in name:
            torch.nn.init.normal_(p, std=rank ** -0.5)  # LoRA zero-inits B: time it with values, as ours
    return model


def bench_shape(d_in: int, d_out: int, tokens: int, dtype: torch.dtype, device: str, fused, time_fn,
                peak: dict | None) -> dict:
    R, N = sum(RANKS), len(RANKS)
    gen = torch.Generator(device=device).manual_seed(0)
    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device=device) * scale).to(dtype)
    W = rand(d_out, d_in, scale=d_in ** -0.5)
    x = rand(tokens, d_in).requires_grad_()
    A = rand(R, d_in, scale=d_in ** -0.5).requires_grad_()
    B = rand(d_out, R, scale=R ** -0.5).requires_grad_()
    dy = rand(tokens, d_out)
    router = TopKRouter(d_in=d_in, n_experts=N, top_k=TOP_K).to(device)
    with torch.no_grad():
        weights = router(x.float()).weights.requires_grad_()
    leaves = [x, A, B, weights]

    def with_delta(delta):
        return lambda: (F.linear(x, W) + delta(x, A, B, weights, RANKS, ALPHA)).backward(dy)

    steps = {"a": lambda: F.linear(x, W).backward(dy),
             "c": with_delta(stacked_delta), "d": with_delta(loop_delta)}
    peft = peft_linear(W, R)
    if peft is not None:
        steps["e"] = lambda: peft.proj(x).backward(dy)
    if fused is not None:
        steps["b"] = with_delta(fused)
        steps["b+"] = lambda: fused(x, A, B, weights, RANKS, ALPHA, base=F.linear(x, W)).backward(dy)
        steps["delta"] = lambda: fused(x, A, B, weights, RANKS, ALPHA).backward(dy)
    grads = leaves + ([] if peft is None else [p for p in peft.parameters() if p.requires_grad])
    row = {"d_in": d_in, "d_out": d_out, "tokens": tokens}
    row.update({name: time_fn(step, grads) for name, step in steps.items()})
    if fused is not None:
        with torch.no_grad():
            want = stacked_delta(*(t.float() for t in leaves[:3]), weights, RANKS, ALPHA)
            got = fused(x, A, B, weights, RANKS, ALPHA).float()
        row["fused_rel_err"] = float((got - want).norm() / want.norm())
    if peak is not None:
        size = torch.finfo(dtype).bits // 8
        row["floor_b"] = floor_ms(tokens, d_in, d_out, R, N, size, peak, base=True) / row["b"]
        row["floor_delta"] = floor_ms(tokens, d_in, d_out, R, N, size, peak, base=False) / row["delta"]
    return row


def markdown(rows: list[dict]) -> str:
    cols = ["(a) base", "(b) +fused", "(b+) fused add", "(c) +stacked", "(d) +loop", "(e) +PEFT",
            "(b)/(a)", "(d)/(b)", "(d)/(c)", "floor/(b)", "floor/delta"]
    keys = ["a", "b", "b+", "c", "d", "e"]
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    lines = ["| shape (d_in x d_out, tokens) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        ratio = lambda p, q: r[p] / r[q] if p in r and q in r else None  # noqa: E731
        cells = [fmt(r.get(k), ".3f") for k in keys]
        cells += [fmt(ratio("b", "a"), ".2f"), fmt(ratio("d", "b"), ".2f"), fmt(ratio("d", "c"), ".2f"),
                  fmt(r.get("floor_b"), ".0%"), fmt(r.get("floor_delta"), ".0%")]
        lines.append(f"| {r['d_in']}x{r['d_out']}, {r['tokens']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent)
    parser.add_argument("--tokens", type=int, default=None, help="default 4096 on a GPU, 256 on a CPU")
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=None,
                        help="default: llama7b and smollm2 on a GPU, smollm2 on a CPU")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device, dtype = ("cuda", torch.bfloat16) if gpu else ("cpu", torch.float32)
    tokens = args.tokens or (4096 if gpu else 256)
    shapes = args.shapes or (["llama7b", "smollm2"] if gpu else ["smollm2"])
    fused = None
    if gpu:
        from hilo_core.kernels.molora_triton import molora_triton_delta as fused
    else:
        print("No CUDA device: the Triton columns (b), (b+) and the floors are n/a; CPU timings in float32 "
              f"at {tokens} tokens are for (a), (c), (d), (e) only, not for the performance targets.")
    peak = ceilings(device, dtype) if gpu else None
    time_fn = timer(device)
    rows = [bench_shape(d_in, d_out, tokens, dtype, device, fused, time_fn, peak)
            for name in shapes for d_in, d_out in SHAPES[name]]
    meta = {"device": torch.cuda.get_device_name() if gpu else platform.processor() or platform.machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", *sys.argv]), "dtype": str(dtype), "ranks": RANKS, "top_k": TOP_K,
            "torch": torch.__version__, "ceilings": peak}
    try:
        import triton
        meta["triton"] = triton.__version__
    except ImportError:
        pass
    table = markdown(rows)
    header = (f"{meta['device']}, {meta['date']}, `{meta['command']}`, {dtype}, experts {len(RANKS)} x rank "
              f"{RANKS[0]}, top-{TOP_K}; ms per forward+backward")
    print(header, table, sep="\n\n")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "rows": rows, "table": header + "\n\n" + table + "\n"}
    (args.out / "kernels.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'kernels.json'}")


if __name__ == "__main__":
    main()
