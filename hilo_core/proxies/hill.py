"""Power-law fit of an ESD tail: Hill/MLE exponent with xmin chosen by minimum Kolmogorov-Smirnov distance.

For a candidate ``xmin = x_i`` (ascending ``x``, tail ``x_i..x_{n-1}`` of ``k = n - i`` values):
``alpha_i = 1 + k / sum_{j>=i} ln(x_j / x_i)`` (Clauset, Shalizi & Newman 2009) and
``D_i = max_{j>=i} |1 - (x_j / x_i)^(1 - alpha_i) - (j - i) / k|`` as weightwatcher and AlphaLoRA compute it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

XMIN_SEARCHES = ("fix_finger", "peak", "all")
DEFAULT_XMIN_SEARCH = "fix_finger"  # AlphaLoRA's released expert_number.py, so its seed reproduces the paper's code
# Eigenvalues at or below this fraction of the largest are numerical zeros of a rank-deficient
# weight (float32 SVD resolves about 1e-14 of lambda_max); relative, so alpha stays scale-free.
_RELATIVE_FLOOR = 1e-10
_HIST_BINS = 100  # AlphaLoRA / weightwatcher's log10-histogram for the ESD peak
_PEAK_WINDOW = (0.95, 1.5)  # candidates xmin in [0.95, 1.5] x the peak bin's left edge (AlphaLoRA's stated window)
_MIN_TAIL = 2
_MAX_CELLS = 1 << 20  # (candidates x eigenvalues) per block: 8 MiB temporaries stay in cache


@dataclass(frozen=True)
class PowerLawFit:
    """The chosen fit: exponent, xmin, tail size and KS distance (weightwatcher's alpha, xmin, num_pl_spikes, D)."""

    alpha: float
    xmin: float
    n_tail: int
    ks_distance: float


def _as_sorted_float64(eigs) -> torch.Tensor:
    x = eigs.detach() if isinstance(eigs, torch.Tensor) else torch.as_tensor(np.asarray(eigs, dtype=np.float64))
    if x.ndim != 1:
        raise ValueError(f"eigs must be a 1-D sequence of eigenvalues, got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    if x.numel() == 0 or not torch.isfinite(x).all() or bool((x < 0).any()):
        raise ValueError(f"eigs must be non-empty, finite and non-negative, got {x.numel()} values "
                         f"with min {x.min().item() if x.numel() else None}")
    return torch.sort(x).values


def _peak_edge(x: torch.Tensor) -> tuple[float, float]:
    """Left and right edge of the fullest bin of a 100-bin histogram of ``log10(x)``, as eigenvalues."""
    logs = torch.log10(x / x[-1]).cpu().numpy()  # relative to the max: the bins do not move with scale
    counts, edges = np.histogram(logs, bins=_HIST_BINS)
    peak = int(np.argmax(counts))
    top = x[-1].item()
    return top * 10.0 ** edges[peak], top * 10.0 ** edges[peak + 1]


def _peak_window(x: torch.Tensor) -> tuple[float, float]:
    """``[0.95, 1.5] x`` the left edge of the fullest bin of a 100-bin histogram of ``log10(x)``."""
    left, right = _peak_edge(x)
    # The fullest bin always holds a candidate, even when 100 bins span more than log10(1.5) each.
    return _PEAK_WINDOW[0] * left, max(_PEAK_WINDOW[1] * left, right)


def _fix_finger_window(x: torch.Tensor) -> tuple[float, float]:
    """The window of AlphaLoRA's released ``fix_finger``: eigenvalues from ``log10(0.95 xmin2)`` to ``1.5 xmin2``.

    ``xmin2`` is the peak bin's left edge; the released code compares eigenvalues with the *logarithm*
    ``log10(0.95 xmin2)`` as the lower bound, which in practice lets almost every small eigenvalue in.
    """
    left, _ = _peak_edge(x)
    return math.log10(_PEAK_WINDOW[0] * left), _PEAK_WINDOW[1] * left


def power_law_fit(eigs, *, xmin_search: str = DEFAULT_XMIN_SEARCH) -> PowerLawFit:
    """Fit ``p(lambda) ~ lambda^-alpha`` to the tail of an ESD, vectorised over all candidate xmin.

    ``xmin_search="fix_finger"`` tries the candidates AlphaLoRA's released ``expert_number.py`` tries
    (``_fix_finger_window``); ``"peak"`` those in [0.95, 1.5] x the log-ESD histogram's peak (the window as
    AlphaLoRA and weightwatcher's ``xmin_peak`` state it); ``"all"`` every eigenvalue (weightwatcher's default).
    """
    if xmin_search not in XMIN_SEARCHES:
        raise ValueError(f"xmin_search must be one of {XMIN_SEARCHES}, got {xmin_search!r}")
    x = _as_sorted_float64(eigs)
    # The released fix_finger keeps every eigenvalue (numerical zeros move its histogram's bins); only exact
    # zeros, whose log it cannot take either, are dropped there.
    x = x[x > (0.0 if xmin_search == "fix_finger" else _RELATIVE_FLOOR * x[-1])]
    n = x.numel()
    if n < _MIN_TAIL + 1:
        raise ValueError(f"eigs: a power-law fit needs at least {_MIN_TAIL + 1} positive eigenvalues, got {n}")
    logs = torch.log(x)
    # suffix[i] = sum_{j>=i} ln x_j, so the MLE denominator of every candidate comes from one cumsum.
    suffix = torch.flip(torch.cumsum(torch.flip(logs, (0,)), 0), (0,))
    first, last = 0, n - _MIN_TAIL  # last candidate keeps a tail of _MIN_TAIL values
    if xmin_search != "all":
        low, high = (_peak_window if xmin_search == "peak" else _fix_finger_window)(x)
        first = int(torch.searchsorted(x, torch.tensor(low, dtype=x.dtype, device=x.device)))
        last = min(last, int(torch.searchsorted(x, torch.tensor(high, dtype=x.dtype, device=x.device),
                                                right=True)) - 1)
        first = min(first, last)
    positions = torch.arange(n, dtype=x.dtype, device=x.device)
    best: tuple[float, int, float] | None = None  # (D, i, alpha)
    block = max(1, _MAX_CELLS // n)
    for start in range(first, last + 1, block):
        cand = torch.arange(start, min(start + block, last + 1), device=x.device)
        k = (n - cand).to(x.dtype)
        denom = suffix[cand] - k * logs[cand]
        alpha = torch.where(denom > 0, 1.0 + k / denom.clamp_min(1e-300), torch.full_like(k, math.inf))
        # (candidates, n); left of each candidate the gap and the empirical CDF are 0, so |.| is 0 there.
        fitted = (logs[None, :] - logs[cand][:, None]).clamp_(min=0.0).mul_(1.0 - alpha[:, None]).exp_()
        empirical = (positions[None, :] - cand[:, None].to(x.dtype)).clamp_(min=0.0).div_(k[:, None])
        ks = fitted.neg_().add_(1.0).sub_(empirical).abs_().amax(dim=1)  # 1 - (x/xmin)^(1-a) - (j-i)/k
        ks = torch.where(torch.isfinite(alpha), ks, torch.full_like(k, math.inf))
        j = int(torch.argmin(ks))
        if best is None or ks[j].item() < best[0]:
            best = (ks[j].item(), int(cand[j]), alpha[j].item())
    d, i, a = best
    if not math.isfinite(a):
        raise ValueError(f"eigs: no candidate xmin gives a finite power-law exponent (all {n} values equal?)")
    return PowerLawFit(alpha=a, xmin=x[i].item(), n_tail=n - i, ks_distance=d)


def hill_alpha(eigs, *, xmin_search: str = DEFAULT_XMIN_SEARCH) -> float:
    """HT-SR alpha (PL_Alpha_Hill) of an ESD: the exponent of :func:`power_law_fit`.

    Higher alpha = lighter tail = a less trained layer, which AlphaLoRA gives more experts.
    """
    return power_law_fit(eigs, xmin_search=xmin_search).alpha
