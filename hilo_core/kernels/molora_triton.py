"""Triton kernels for the stacked MoLoRA path: gate scaling fused between two skinny GEMMs, and backward.

Forward: ``h = x A^T`` in fp32 with ``s[t, j] = w[t, i(j)] * alpha / r_i(j)`` applied to h's expert
segments in the epilogue, then ``y = (h * s) B^T`` (docs/architecture.md, "The MoLoRA layer").
Backward with ``dhs = dy B``: ``dh = dhs * s``, ``dx = dh A``, ``dA = dh^T x``, ``dB = dy^T (h * s)`` and
``dw[t, i] = alpha / r_i * sum_{j in i} dhs[t, j] * h[t, j]`` (the router gradient).
Three GEMM shapes cover all six products (ScatterMoE's layering: private ``_kernel``s, launchers, an
``autograd.Function``): *shrink* ``(tokens, K) @ (K, R)`` with the scaling epilogue, *expand*
``(tokens, R) @ (R, M)`` and *outer* ``(tokens, M)^T @ (tokens, R)`` reduced over tokens.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

# Read once, as Triton itself does when the ``@triton.jit`` functions below are defined.
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_MAX_BLOCK_R = 128  # the whole stacked rank of usual configs sits in one tile: x is read once
_TARGET_PROGRAMS = 256  # the token split of the outer kernel aims for about two waves of programs


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Every buffer the launchers write is allocated here, so tests can poison them all (NaN fill)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _shrink_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_T": t, "BLOCK_K": k}, num_warps=w, num_stages=s)
            for t, k, w, s in [(32, 64, 4, 4), (64, 64, 4, 4), (64, 128, 4, 3), (128, 64, 8, 3),
                               (128, 128, 8, 3), (32, 128, 4, 4), (16, 128, 4, 4)]]


def _expand_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_T": t, "BLOCK_M": m}, num_warps=w, num_stages=s)
            for t, m, w, s in [(64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 4, 3), (128, 128, 8, 3),
                               (128, 256, 8, 3), (64, 256, 8, 3), (32, 128, 4, 4)]]


def _outer_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_T": t, "BLOCK_M": m}, num_warps=w, num_stages=s)
            for t, m, w, s in [(32, 64, 4, 4), (64, 64, 4, 3), (64, 128, 4, 3), (128, 64, 4, 3),
                               (128, 128, 8, 3), (32, 128, 4, 4)]]


# The interpreter has no driver to benchmark on ("0 active drivers"): one small config, chosen so that
# the test shapes span several tiles in every dimension and hit every mask.
_INTERPRET_META = {"shrink": {"BLOCK_T": 32, "BLOCK_K": 32}, "expand": {"BLOCK_T": 32, "BLOCK_M": 64},
                   "outer": {"BLOCK_T": 32, "BLOCK_M": 32}}


def _autotune(configs, key):
    """``triton.autotune`` on a device; identity under ``TRITON_INTERPRET`` (launchers pass the meta)."""
    def wrap(kernel):
        return kernel if _INTERPRET else triton.autotune(configs=configs(), key=key)(kernel)
    return wrap


def _meta(name: str) -> dict[str, int]:
    return _INTERPRET_META[name] if _INTERPRET else {}


# Offsets: a tile's first token row is a 64-bit scalar base (tokens x width can pass 2^31); offsets
# inside a tile stay 32-bit, which halves the registers that per-element pointers would take.


@_autotune(_shrink_configs, key=["K", "R", "BACKWARD"])
@triton.jit
def _shrink_kernel(p_ptr, v_ptr, w_ptr, seg_ptr, fac_ptr, h_ptr, out_ptr, g_ptr,
                   T, K, R, stride_pt, stride_pk, stride_vk, stride_vr, stride_wt, stride_wn,
                   BACKWARD: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr):
    """``acc = P V`` on a (BLOCK_T, BLOCK_R) tile of the (tokens, R) result, then the gate epilogue.

    Forward (P = x, V = A^T): store ``h = acc`` (fp32) and ``out = acc * s``.
    Backward (P = dy, V = B): store ``out = dh = acc * s`` and ``g = acc * h * alpha / r``.
    """
    t0 = tl.program_id(0).to(tl.int64) * BLOCK_T
    offs_t = tl.arange(0, BLOCK_T)
    offs_r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    offs_k = tl.arange(0, BLOCK_K)
    mask_t = offs_t < T - t0
    mask_r = offs_r < R
    p_tile = p_ptr + t0 * stride_pt
    acc = tl.zeros((BLOCK_T, BLOCK_R), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        p = tl.load(p_tile + offs_t[:, None] * stride_pt + ks[None, :] * stride_pk,
                    mask=mask_t[:, None] & (ks < K)[None, :], other=0.0)
        v = tl.load(v_ptr + ks[:, None] * stride_vk + offs_r[None, :] * stride_vr,
                    mask=(ks < K)[:, None] & mask_r[None, :], other=0.0)
        if UPCAST:
            p = p.to(tl.float32)
            v = v.to(tl.float32)
        acc = tl.dot(p, v, acc, input_precision=PRECISION)
    mask = mask_t[:, None] & mask_r[None, :]
    seg = tl.load(seg_ptr + offs_r, mask=mask_r, other=0)
    fac = tl.load(fac_ptr + offs_r, mask=mask_r, other=0.0)
    w = tl.load(w_ptr + t0 * stride_wt + offs_t[:, None] * stride_wt + seg[None, :] * stride_wn, mask=mask,
                other=0.0)
    scale = w.to(tl.float32) * fac[None, :]
    tile = offs_t[:, None] * R + offs_r[None, :]  # every (tokens, R) buffer is contiguous
    tl.store(out_ptr + t0 * R + tile, (acc * scale).to(out_ptr.dtype.element_ty), mask=mask)
    if BACKWARD:
        h = tl.load(h_ptr + t0 * R + tile, mask=mask, other=0.0)
        tl.store(g_ptr + t0 * R + tile, acc * h * fac[None, :], mask=mask)
    else:
        tl.store(h_ptr + t0 * R + tile, acc, mask=mask)


@_autotune(_expand_configs, key=["M", "R"])
@triton.jit
def _expand_kernel(q_ptr, w_ptr, base_ptr, out_ptr, T, M, R, stride_wm, stride_wr, stride_bt, stride_bm,
                   stride_ot, stride_om, HAS_BASE: tl.constexpr, UPCAST: tl.constexpr,
                   PRECISION: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr):
    """``out[t, m] = base[t, m] + sum_j Q[t, j] W[m, j]``: Q the contiguous (tokens, R) buffer, W (M, R).

    Adding the base layer's output here saves the separate add's extra read and write of (tokens, M).
    """
    t0 = tl.program_id(0).to(tl.int64) * BLOCK_T
    offs_t = tl.arange(0, BLOCK_T)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_r = tl.arange(0, BLOCK_R)
    mask_t = offs_t < T - t0
    mask_m = offs_m < M
    q_tile = q_ptr + t0 * R
    acc = tl.zeros((BLOCK_T, BLOCK_M), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rs = r0 + offs_r
        q = tl.load(q_tile + offs_t[:, None] * R + rs[None, :], mask=mask_t[:, None] & (rs < R)[None, :],
                    other=0.0)
        wt = tl.load(w_ptr + rs[:, None] * stride_wr + offs_m[None, :] * stride_wm,
                     mask=(rs < R)[:, None] & mask_m[None, :], other=0.0)
        if UPCAST:
            q = q.to(tl.float32)
            wt = wt.to(tl.float32)
        acc = tl.dot(q, wt, acc, input_precision=PRECISION)
    mask = mask_t[:, None] & mask_m[None, :]
    if HAS_BASE:
        base = tl.load(base_ptr + t0 * stride_bt + offs_t[:, None] * stride_bt + offs_m[None, :] * stride_bm,
                       mask=mask, other=0.0)
        acc += base.to(tl.float32)
    tl.store(out_ptr + t0 * stride_ot + offs_t[:, None] * stride_ot + offs_m[None, :] * stride_om,
             acc.to(out_ptr.dtype.element_ty), mask=mask)


@_autotune(_outer_configs, key=["M", "R"])
@triton.jit
def _outer_kernel(p_ptr, q_ptr, out_ptr, T, M, R, SPLIT, stride_pt, stride_pm, stride_os, stride_om,
                  stride_or,
                  UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                  BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr):
    """``out[s, m, j] = sum_{t in split s} P[t, m] Q[t, j]``; split s takes token tiles s, s + SPLIT, ...

    Splitting the token reduction keeps every SM busy when M * R alone gives too few tiles.
    """
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_r = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    pid_s = tl.program_id(2)
    offs_t = tl.arange(0, BLOCK_T)
    mask_m = offs_m < M
    mask_r = offs_r < R
    acc = tl.zeros((BLOCK_M, BLOCK_R), dtype=tl.float32)
    for t0 in range(pid_s * BLOCK_T, T, SPLIT * BLOCK_T):
        mask_t = offs_t < T - t0
        row0 = tl.cast(t0, tl.int64)  # t0 is a plain int when interpreted, a tensor when compiled
        pt = tl.load(p_ptr + row0 * stride_pt + offs_t[None, :] * stride_pt + offs_m[:, None] * stride_pm,
                     mask=mask_m[:, None] & mask_t[None, :], other=0.0)
        q = tl.load(q_ptr + row0 * R + offs_t[:, None] * R + offs_r[None, :],
                    mask=mask_t[:, None] & mask_r[None, :], other=0.0)
        if UPCAST:
            pt = pt.to(tl.float32)
            q = q.to(tl.float32)
        acc = tl.dot(pt, q, acc, input_precision=PRECISION)
    tl.store(out_ptr + pid_s * stride_os + offs_m[:, None] * stride_om + offs_r[None, :] * stride_or,
             acc.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_r[None, :])


@triton.jit
def _segment_sum_kernel(g_ptr, seg_ptr, dw_ptr, T, R, N, stride_dt, stride_dn,
                        BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr):
    """``dw[t, i] = sum_{j : seg[j] = i} g[t, j]``: the per-expert sums of the (tokens, R) router gradient."""
    t0 = tl.program_id(0).to(tl.int64) * BLOCK_T
    offs_t = tl.arange(0, BLOCK_T)
    offs_r = tl.arange(0, BLOCK_R)
    offs_n = tl.arange(0, BLOCK_N)
    mask_t = offs_t < T - t0
    acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rs = r0 + offs_r
        g = tl.load(g_ptr + t0 * R + offs_t[:, None] * R + rs[None, :],
                    mask=mask_t[:, None] & (rs < R)[None, :], other=0.0)
        seg = tl.load(seg_ptr + rs, mask=rs < R, other=-1)
        onehot = (seg[:, None] == offs_n[None, :]).to(tl.float32)  # (BLOCK_R, BLOCK_N)
        acc += tl.sum(g[:, :, None] * onehot[None, :, :], axis=1)
    tl.store(dw_ptr + t0 * stride_dt + offs_t[:, None] * stride_dt + offs_n[None, :] * stride_dn,
             acc.to(dw_ptr.dtype.element_ty), mask=mask_t[:, None] & (offs_n < N)[None, :])


def _dot_options(dtype: torch.dtype) -> dict[str, object]:
    """fp32 in IEEE precision (torch's fp32 matmul default, no TF32); bf16 upcast only when interpreting.

    fp16/bf16 keep Triton's default (tensor cores); the precision option only concerns fp32 operands.
    """
    upcast = _INTERPRET and dtype == torch.bfloat16
    return {"UPCAST": upcast, "PRECISION": "ieee" if upcast or dtype == torch.float32 else None}


def _block_r(R: int) -> int:
    return max(16, min(triton.next_power_of_2(R), _MAX_BLOCK_R))  # tl.dot wants every dim >= 16


@functools.lru_cache(maxsize=None)
def segments(ranks: tuple[int, ...], alpha: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert index (int32) and ``alpha / r_i`` (fp32) of each stacked rank column, cached per device."""
    seg = torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks)).to(torch.int32)
    fac = torch.tensor([alpha / r for r in ranks for _ in range(r)], dtype=torch.float32)
    return seg.to(device), fac.to(device)


def shrink(p: torch.Tensor, v: torch.Tensor, weights: torch.Tensor, seg: torch.Tensor, fac: torch.Tensor,
           h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (``h`` None): ``(h, h * s)`` for ``h = p v``. Backward (``h`` given): ``(dh, g)``.

    ``p (tokens, K)``, ``v (K, R)`` (any strides); ``h``, ``g`` fp32 and ``h * s``, ``dh`` in p's dtype.
    """
    T, K = p.shape
    R = v.shape[1]
    first = _empty((T, R), p.dtype, p.device)
    second = _empty((T, R), torch.float32, p.device)
    backward = h is not None
    h_buf, out, g = (h, first, second) if backward else (second, first, second)
    block_r = _block_r(R)
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(R, block_r))  # noqa: E731
    _shrink_kernel[grid](p, v, weights, seg, fac, h_buf, out, g, T, K, R, p.stride(0), p.stride(1),
                         v.stride(0), v.stride(1), weights.stride(0), weights.stride(1),
                         BACKWARD=backward, BLOCK_R=block_r, **_dot_options(p.dtype), **_meta("shrink"))
    return (out, g) if backward else (h_buf, out)


def expand(q: torch.Tensor, w: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
    """``base + q w^T`` for the contiguous ``q (tokens, R)``, ``w (M, R)`` and ``base (tokens, M)`` or None.

    The result has base's dtype when given (the base layer's output), else q's.
    """
    T, R = q.shape
    M = w.shape[0]
    out = _empty((T, M), q.dtype if base is None else base.dtype, q.device)
    base_strides = (0, 0) if base is None else base.stride()
    grid = lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(M, meta["BLOCK_M"]))  # noqa: E731
    _expand_kernel[grid](q, w, out if base is None else base, out, T, M, R, w.stride(0), w.stride(1),
                         *base_strides, out.stride(0), out.stride(1), HAS_BASE=base is not None,
                         BLOCK_R=_block_r(R), **_dot_options(q.dtype), **_meta("expand"))
    return out


def token_splits(tokens: int, tiles: int) -> int:
    """How many token ranges the outer kernel reduces in parallel: enough programs, >= 128 tokens each."""
    return max(1, min(triton.cdiv(_TARGET_PROGRAMS, tiles), triton.cdiv(tokens, 128)))


def outer(p: torch.Tensor, q: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Write ``p^T q`` into ``out`` (M, R) (any strides): ``p (tokens, M)`` any strides, ``q`` contiguous."""
    T, M = p.shape
    R = q.shape[1]
    block_r = _block_r(R)
    split = token_splits(T, triton.cdiv(M, 64) * triton.cdiv(R, block_r))
    partial = out.unsqueeze(0) if split == 1 else _empty((split, M, R), torch.float32, p.device)
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), triton.cdiv(R, block_r), split)  # noqa: E731
    _outer_kernel[grid](p, q, partial, T, M, R, split, p.stride(0), p.stride(1), *partial.stride(),
                        BLOCK_R=block_r, **_dot_options(p.dtype), **_meta("outer"))
    if split > 1:
        out.copy_(partial.sum(0))
    return out


def segment_sum(g: torch.Tensor, seg: torch.Tensor, n_experts: int, dtype: torch.dtype) -> torch.Tensor:
    """Router gradient ``(tokens, N)`` from the per-column ``g (tokens, R)``."""
    T, R = g.shape
    dw = _empty((T, n_experts), dtype, g.device)
    block_t = 16
    _segment_sum_kernel[(triton.cdiv(T, block_t),)](g, seg, dw, T, R, n_experts, dw.stride(0), dw.stride(1),
                                                    BLOCK_T=block_t, BLOCK_R=32,
                                                    BLOCK_N=max(2, triton.next_power_of_2(n_experts)))
    return dw


class MoLoRAFunction(torch.autograd.Function):
    """The fused MoLoRA delta with gradients to ``x``, ``A``, ``B`` and the router ``weights``."""

    @staticmethod
    def forward(ctx, x, A, B, weights, ranks, alpha, base):
        assert x.dtype == A.dtype == B.dtype, "x, A and B share one dtype (MoLoRALinear casts x to A's)"
        assert A.shape[0] == B.shape[1] == sum(ranks) and weights.shape == (x.shape[0], len(ranks))
        seg, fac = segments(tuple(ranks), float(alpha), x.device)
        h, hs = shrink(x, A.t(), weights, seg, fac)
        ctx.save_for_backward(x, A, B, weights, seg, fac, h, hs)
        return expand(hs, B, base)

    @staticmethod
    def backward(ctx, dy):
        x, A, B, weights, seg, fac, h, hs = ctx.saved_tensors
        d_base = dy if ctx.needs_input_grad[6] else None
        dy = dy.to(x.dtype)  # a no-op unless base (hence dy) has another dtype than the adapter
        need_x, need_A, need_B, need_w = ctx.needs_input_grad[:4]
        dx = dA = dB = dw = None
        if need_B:
            dB = outer(dy, hs, _empty(tuple(B.shape), B.dtype, B.device))
        if need_x or need_A or need_w:
            dh, g = shrink(dy, B, weights, seg, fac, h=h)
            if need_x:
                dx = expand(dh, A.t())
            if need_A:
                dA = _empty(tuple(A.shape), A.dtype, A.device)
                outer(x, dh, dA.t())
            if need_w:
                dw = segment_sum(g, seg, weights.shape[1], weights.dtype)
        return dx, dA, dB, dw, None, None, d_base


def molora_triton_delta(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor, weights: torch.Tensor,
                        ranks: tuple[int, ...], alpha: float,
                        base: torch.Tensor | None = None) -> torch.Tensor:
    """The kernels/reference.py contract on the fused Triton path (device tensors, or CPU when interpreting).

    With ``base (tokens, d_out)`` (the frozen layer's output) it returns ``base + delta`` in base's dtype,
    the add fused into the second GEMM's epilogue.
    """
    return MoLoRAFunction.apply(x, A, B, weights, tuple(ranks), alpha, base)
