"""Fused Triton MoLoRA kernels against the per-expert torch reference: the forward and every gradient.

Without a GPU the kernels run in Triton's interpreter on CPU tensors. ``TRITON_INTERPRET`` must be set
before the kernel module defines its ``@triton.jit`` functions: tests/conftest.py sets it for the whole run
(another test module may import the kernels first) and the lines below when this file runs alone; on a GPU
machine the same tests launch the compiled kernels on CUDA tensors.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import types  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("triton")

from hilo_core.kernels import dispatch, molora_triton  # noqa: E402
from hilo_core.kernels.reference import loop_delta, stacked_delta  # noqa: E402
from hilo_core.routers import (DenseRouter, SingleExpert, ThresholdRouter, TopKRouter,  # noqa: E402
                               TopPRouter)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
ALPHA = 16.0
HETERO = (2, 8, 4, 16, 1)
TOLERANCE = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(autouse=True)
def poisoned_buffers(monkeypatch):
    """Every buffer the launchers allocate starts as NaN: an element no kernel writes fails the test."""
    def nan_empty(shape, dtype, device):
        return torch.full(shape, float("nan"), dtype=dtype, device=device)
    monkeypatch.setattr(molora_triton, "_empty", nan_empty)


def make_router(kind: str, d_in: int, n: int) -> torch.nn.Module:
    if n == 1:
        return SingleExpert()
    return {"dense": lambda: DenseRouter(d_in=d_in, n_experts=n),
            "topk": lambda: TopKRouter(d_in=d_in, n_experts=n, top_k=min(2, n)),
            "threshold": lambda: ThresholdRouter(d_in=d_in, n_experts=n),
            "topp": lambda: TopPRouter(d_in=d_in, n_experts=n, top_p=0.6)}[kind]()


def rel_err(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> float:
    """fp32: worst element over the largest reference value. fp16/bf16: Frobenius-norm ratio (rounding)."""
    got, want = got.detach(), want.detach()
    diff = got.double() - want
    if dtype == torch.float32:
        return float(diff.abs().max() / want.abs().max().clamp_min(1e-30))
    return float(diff.norm() / want.norm().clamp_min(1e-30))


def inputs(tokens, d_in, d_out, ranks, kind, dtype, seed=0):
    """Random x, A, B (B non-zero, unlike the LoRA init), router weights from a real router, and dy."""
    gen = torch.Generator().manual_seed(seed)
    R = sum(ranks)
    x = torch.randn(tokens, d_in, generator=gen)
    A = torch.randn(R, d_in, generator=gen) / d_in ** 0.5
    B = torch.randn(d_out, R, generator=gen) / R ** 0.5
    dy = torch.randn(tokens, d_out, generator=gen)
    torch.manual_seed(seed)
    with torch.no_grad():
        weights = make_router(kind, d_in, len(ranks))(x).weights
    cast = lambda t: t.to(device=DEVICE, dtype=dtype)  # noqa: E731
    return cast(x), cast(A), cast(B), weights.to(DEVICE), cast(dy)


def check(x, A, B, weights, dy, ranks, dtype, needs=(True, True, True, True)):
    """Kernel forward and gradients (of the inputs flagged in ``needs``) vs the per-expert loop in fp64."""
    leaves = [t.detach().clone().requires_grad_(n) for t, n in zip((x, A, B, weights), needs)]
    y = molora_triton.molora_triton_delta(*leaves, ranks, ALPHA)
    wanted = [t for t, n in zip(leaves, needs) if n]
    grads = torch.autograd.grad(y, wanted, dy)
    oracle = [t.detach().double().requires_grad_(n) for t, n in zip((x, A, B, weights), needs)]
    y_ref = loop_delta(*oracle, ranks, ALPHA)
    grads_ref = torch.autograd.grad(y_ref, [t for t in oracle if t.requires_grad], dy.double())
    assert y.dtype == x.dtype and y.shape == y_ref.shape
    names = [n for n, need in zip(("dx", "dA", "dB", "dweights"), needs) if need]
    for name, got, want in [("y", y, y_ref), *zip(names, grads, grads_ref)]:
        assert got.shape == want.shape, name
        assert got.isfinite().all(), f"{name}: non-finite values (an unwritten element of a poisoned buffer)"
        err = rel_err(got, want, dtype)
        assert err < TOLERANCE[dtype], f"{name}: relative error {err:.2e}"


slow = pytest.mark.slow
CASES = [  # tokens, d_in, d_out, ranks, router kind: shapes off every block size, 1..300 tokens
    (1, 70, 90, (4,), "dense"),
    (37, 70, 90, HETERO, "dense"),
    (37, 70, 90, HETERO, "topk"),
    (37, 70, 90, HETERO, "threshold"),
    (37, 70, 90, HETERO, "topp"),
    (300, 70, 90, HETERO, "topk"),  # > 128 tokens: the dA/dB reduction is split over token ranges
    (129, 33, 17, (3, 5), "threshold"),  # dims below one tile
    (61, 100, 33, (1, 2, 3, 4) * 4, "topk"),  # 16 experts, R = 40 spans two rank chunks of dw
    pytest.param(300, 100, 33, (16,) * 16, "topp", marks=slow),  # R = 256: two rank tiles in shrink
    pytest.param(200, 130, 70, (8,) * 8, "topk", marks=slow),  # MoLA shape: 8 experts x rank 8, top-2
    pytest.param(300, 70, 90, (7, 1, 3), "dense", marks=slow),
]


@pytest.mark.parametrize("tokens,d_in,d_out,ranks,kind", CASES)
def test_float32_matches_reference(tokens, d_in, d_out, ranks, kind):
    x, A, B, weights, dy = inputs(tokens, d_in, d_out, ranks, kind, torch.float32)
    if kind == "topk" and len(ranks) > 2:
        assert (weights == 0).any(), "top-k routing should leave inactive experts at weight 0"
    check(x, A, B, weights, dy, ranks, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_reference(dtype):
    """bf16 ``tl.dot`` is wrong in the interpreter, so there the kernels upcast bf16 tiles before the dot."""
    x, A, B, weights, dy = inputs(45, 70, 90, HETERO, "topk", dtype)
    check(x, A, B, weights, dy, HETERO, dtype)


@pytest.mark.parametrize("needs", [(False, True, False, True), (False, False, True, False),
                                   (True, False, False, False)])
def test_only_requested_gradients(needs):
    x, A, B, weights, dy = inputs(50, 70, 90, HETERO, "topp", torch.float32)
    check(x, A, B, weights, dy, HETERO, torch.float32, needs=needs)


def test_strided_inputs():
    """Transposed and sliced views go in as they are: the launchers read every operand by its strides."""
    x, A, B, weights, dy = inputs(40, 70, 90, HETERO, "topk", torch.float32)
    x_t = x.t().contiguous().t()
    A_s = torch.cat([A, A], dim=1)[:, ::2]
    B_t = B.t().contiguous().t()
    w_t = weights.t().contiguous().t()
    dy_t = dy.t().contiguous().t()
    assert not (x_t.is_contiguous() or A_s.is_contiguous() or B_t.is_contiguous() or dy_t.is_contiguous())
    check(x_t, A_s, B_t, w_t, dy_t, HETERO, torch.float32)


def test_base_output_added_in_the_epilogue():
    """``base=`` returns base + delta in base's dtype; base's gradient is dy, the others are unchanged."""
    x, A, B, weights, dy = inputs(45, 70, 90, HETERO, "topk", torch.float16)
    base = torch.randn(45, 90, device=DEVICE).t().contiguous().t().requires_grad_()
    leaves = [t.detach().clone().requires_grad_() for t in (x, A, B, weights)]
    out = molora_triton.molora_triton_delta(*leaves, HETERO, ALPHA, base=base)
    assert out.dtype == torch.float32
    grads = torch.autograd.grad(out, [base, *leaves], dy.float())
    alone = molora_triton.molora_triton_delta(*leaves, HETERO, ALPHA)
    assert torch.allclose(out, base + alone.float(), atol=1e-2, rtol=0)  # alone is rounded to fp16
    assert torch.equal(grads[0], dy.float())
    for got, want in zip(grads[1:], torch.autograd.grad(alone, leaves, dy)):
        assert torch.equal(got, want)


def test_router_parameters_get_their_gradient():
    """Weights carry the router's gradient: the gate and threshold parameters match the loop path."""
    x, A, B, _, dy = inputs(33, 70, 90, HETERO, "threshold", torch.float32)
    torch.manual_seed(1)
    router = ThresholdRouter(d_in=70, n_experts=len(HETERO)).to(DEVICE)
    grads = []
    for delta in (molora_triton.molora_triton_delta, loop_delta):
        y = delta(x, A, B, router(x).weights, HETERO, ALPHA)
        grads.append(torch.autograd.grad(y, list(router.parameters()), dy))
    for got, want in zip(*grads):
        assert float((got - want).abs().max() / want.abs().max()) < 1e-5


@pytest.mark.parametrize("kind", ["topk", "threshold"])
def test_layer_on_the_triton_path_matches_the_loop(monkeypatch, kind):
    """MoLoRALinear through dispatch onto the fused kernels (base output added in the epilogue): output and
    every gradient (x, A, B, router) against the same layer's per-expert loop in float64."""
    from hilo_core import LayerSpec, MoLoRALinear, RouterSpec
    monkeypatch.setattr(dispatch, "DISPATCH", [(lambda x: True, dispatch.triton_delta)])
    torch.manual_seed(0)
    base = torch.nn.Linear(70, 90).to(DEVICE)
    spec = LayerSpec(ranks=HETERO, router=RouterSpec(kind=kind, top_k=2))
    layer = MoLoRALinear(base, spec=spec, lora_alpha=ALPHA).to(DEVICE)
    torch.nn.init.normal_(layer.lora_B, std=0.1)
    x = torch.randn(3, 13, 70, device=DEVICE, requires_grad=True)
    wrt = [x, layer.lora_A, layer.lora_B, *layer.router.parameters()]
    y = layer(x)
    grads = torch.autograd.grad(y.square().sum(), wrt)
    reference = MoLoRALinear(torch.nn.Linear(70, 90).double(), spec=spec, lora_alpha=ALPHA).to(DEVICE)
    reference.load_state_dict(layer.state_dict())
    reference.double()
    reference.use_loop = True
    x64 = x.detach().double().requires_grad_(True)
    y_ref = reference(x64)
    grads_ref = torch.autograd.grad(y_ref.square().sum(),
                                    [x64, reference.lora_A, reference.lora_B, *reference.router.parameters()])
    for name, got, want in [("y", y, y_ref), *zip(("dx", "dA", "dB", "router"), grads, grads_ref)]:
        err = rel_err(got, want, torch.float32)
        assert err < 1e-5, f"{name}: relative error {err:.2e}"


def test_poison_reaches_the_launchers():
    assert molora_triton._empty((2, 3), torch.float32, DEVICE).isnan().all()


def test_dispatch_keeps_cpu_tensors_off_triton(monkeypatch):
    def no_triton(*args):
        raise AssertionError("a CPU tensor reached the Triton path")
    monkeypatch.setattr(dispatch, "DISPATCH", [(dispatch.triton_applies, no_triton), dispatch.DISPATCH[-1]])
    x, A, B, weights, _ = (t.cpu() for t in inputs(9, 20, 12, HETERO, "topk", torch.float32))
    assert torch.equal(dispatch.molora_delta(x, A, B, weights, HETERO, ALPHA),
                       stacked_delta(x, A, B, weights, HETERO, ALPHA))


def test_dispatch_opt_out(monkeypatch):
    fake_cuda = types.SimpleNamespace(is_cuda=True, dtype=torch.bfloat16)
    monkeypatch.delenv("HILO_DISABLE_TRITON", raising=False)
    assert dispatch.triton_applies(fake_cuda)
    assert not dispatch.triton_applies(types.SimpleNamespace(is_cuda=True, dtype=torch.float64))
    monkeypatch.setenv("HILO_DISABLE_TRITON", "1")
    assert not dispatch.triton_applies(fake_cuda)
    monkeypatch.delenv("HILO_DISABLE_TRITON")
    monkeypatch.setattr(dispatch, "TRITON_ENABLED", False)
    assert not dispatch.triton_applies(fake_cuda)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="needs a CUDA device: dispatch sends only CUDA tensors")
def test_dispatch_sends_cuda_tensors_to_triton(monkeypatch):
    calls = []
    monkeypatch.setattr(molora_triton, "molora_triton_delta",
                        lambda *args, **kwargs: calls.append(1) or stacked_delta(*args, **kwargs))
    x, A, B, weights, _ = inputs(9, 20, 12, HETERO, "topk", torch.float32)
    dispatch.molora_delta(x, A, B, weights, HETERO, ALPHA)
    assert calls == [1]


COMPILE_FOR_HOPPER = textwrap.dedent("""
    from triton import compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.autotuner import Autotuner
    from hilo_core.kernels import molora_triton as mt

    def build(kernel, pointers, constexprs, num_warps=4):
        fn = kernel.fn if isinstance(kernel, Autotuner) else kernel
        sig = {a: "constexpr" if a in constexprs else "*" + pointers[a] if a in pointers else "i32"
               for a in fn.arg_names}
        compiled = compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": num_warps, "num_stages": 3})
        assert compiled.asm["cubin"], fn.__name__

    bf16 = dict(UPCAST=False, PRECISION=None, BLOCK_R=64)
    for backward in (False, True):
        build(mt._shrink_kernel, dict(p_ptr="bf16", v_ptr="bf16", w_ptr="fp32", seg_ptr="i32", fac_ptr="fp32",
                                      h_ptr="fp32", out_ptr="bf16", g_ptr="fp32"),
              dict(BACKWARD=backward, BLOCK_T=64, BLOCK_K=64, **bf16))
    build(mt._expand_kernel, dict(q_ptr="bf16", w_ptr="bf16", base_ptr="fp32", out_ptr="fp32"),
          dict(HAS_BASE=True, BLOCK_T=64, BLOCK_M=128, **bf16))
    build(mt._outer_kernel, dict(p_ptr="bf16", q_ptr="bf16", out_ptr="fp32"),
          dict(BLOCK_T=64, BLOCK_M=64, **bf16))
    build(mt._segment_sum_kernel, dict(g_ptr="fp32", seg_ptr="i32", dw_ptr="fp32"),
          dict(BLOCK_T=16, BLOCK_R=32, BLOCK_N=8))
    print("compiled")
""")


@pytest.mark.slow
def test_kernels_compile_for_hopper():
    """The interpreter skips code generation: compile each kernel (bf16) to an sm_90 cubin, offline.

    Triton ships ptxas, so this needs no GPU; it runs in a subprocess because this process interprets.
    """
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True,
                          timeout=600, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    if last.startswith(("ModuleNotFoundError", "ImportError")) or ("ptxas" in last and "not found" in last):
        pytest.skip(f"this triton cannot compile for sm_90 without a GPU: {last}")
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]
