"""The published rule-based configs, built for any layer count: every search enqueues them first.

Quarter patterns split the layers ``numpy.array_split`` style (30 layers -> 8, 8, 7, 7), so
``mola-2468`` is 160 experts on 32 layers and 146 on 30: MoLA compares its patterns at equal totals, which
only a layer count divisible by 4 gives (``unequal_totals_note`` says so for a model).
"""

from __future__ import annotations

from typing import Sequence

from hilo_core.config import LLAMA_TARGETS, MoLoRAConfig, RouterSpec
from hilo_core.proxies import alphalora_allocation

from .params import layer_groups

MOLA_PATTERNS: dict[str, tuple[int, ...]] = {
    "mola-2468": (2, 4, 6, 8),
    "mola-5555": (5, 5, 5, 5),
    "mola-8642": (8, 6, 4, 2),
    "mola-8228": (8, 2, 2, 8),
}
MOLA_RANK = 8
ALPHALORA_EXPERTS_PER_LAYER = 5  # T = 5 x layers: 160 on 32 layers, as in the paper
ALPHALORA_BETA = 2.5
ALPHALORA_RANK = 8
HILO_RULE_EXPERTS = (2, 4, 6, 8)
HILO_RULE_RANKS = (2, 4, 6, 8)
# HiLo's abstract asks for "dynamic activation" but names no rule or value: top-p 0.75 (the middle of the
# spaces' top_p grid {0.5, 0.75, 0.9}) is hilo's own choice, not a published setting.
HILO_RULE_ROUTER = RouterSpec(kind="topp", top_p=0.75)
UNIFORM_EXPERTS, UNIFORM_RANK = 4, 4
SEED_NAMES = (*MOLA_PATTERNS, "alphalora", "hilo-rule", "uniform")
TOP2 = RouterSpec(kind="topk", top_k=2)


def by_quarter(pattern: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """One value per layer from a four-entry pattern over the layer quarters."""
    if n_layers < len(pattern):
        raise ValueError(f"n_layers must be >= {len(pattern)} for a quarter pattern, got {n_layers}")
    return tuple(v for v, layers in zip(pattern, layer_groups(n_layers, len(pattern))) for _ in layers)


def unequal_totals_note(n_layers: int) -> str | None:
    """One line when the MoLA seeds hold different expert totals on ``n_layers`` (not divisible by 4), else None."""
    if n_layers < 4:
        return None
    totals = {name: sum(by_quarter(pattern, n_layers)) for name, pattern in MOLA_PATTERNS.items()}
    if len(set(totals.values())) == 1:
        return None
    listed = ", ".join(f"{name} {total}" for name, total in totals.items())
    return (f"note: on {n_layers} layers the MoLA seeds hold unequal expert totals ({listed}); MoLA compares them"
            " at equal totals (160 on 32 layers), so compare them here by trainable parameters, not by accuracy alone")


def seed_names(*, n_layers: int, layer_alphas: Sequence[float] | None = None) -> tuple[str, ...]:
    """Seeds that can be built here: quarter patterns need >= 4 layers, ``alphalora`` needs alphas."""
    return tuple(
        name for name in SEED_NAMES
        if not (name == "alphalora" and layer_alphas is None)
        and not (name in (*MOLA_PATTERNS, "hilo-rule") and n_layers < 4)
    )


def seed_config(
    name: str,
    *,
    n_layers: int,
    layer_alphas: Sequence[float] | None = None,
    target_modules: tuple[str, ...] = LLAMA_TARGETS,
) -> MoLoRAConfig:
    """The rule-based config ``name`` (one of ``SEED_NAMES``) for a model of ``n_layers`` layers.

    ``mola-*``: experts per quarter, rank 8, top-2. ``alphalora``: AlphaLoRA allocation of T = 5 x layers
    experts from ``layer_alphas`` with beta 2.5 and the released code's rounding (with the released xmin window
    in ``layer_alphas``, the counts of AlphaLoRA's ``expert_number.py``), rank 8, top-2 (top-1 on one expert).
    ``hilo-rule``: experts 2-4-6-8 and ranks 2-4-6-8 by quarter, top-p 0.75 router (hilo's choice of value).
    ``uniform``: 4 x rank 4, top-2.
    """
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive integer, got {n_layers!r}")
    targets = {"target_modules": tuple(target_modules)}
    if name in MOLA_PATTERNS:
        return MoLoRAConfig.from_experts(by_quarter(MOLA_PATTERNS[name], n_layers), MOLA_RANK, router=TOP2, **targets)
    if name == "alphalora":
        if layer_alphas is None:
            raise ValueError("seed 'alphalora' needs layer_alphas (hilo_core.proxies.layer_alphas), got None")
        if len(layer_alphas) != n_layers:
            raise ValueError(f"layer_alphas must have n_layers={n_layers} entries, got {len(layer_alphas)}")
        experts = alphalora_allocation(layer_alphas, ALPHALORA_EXPERTS_PER_LAYER * n_layers, ALPHALORA_BETA)
        return MoLoRAConfig.from_experts(experts, ALPHALORA_RANK, router=TOP2, **targets)
    if name == "hilo-rule":
        return MoLoRAConfig.from_experts(
            by_quarter(HILO_RULE_EXPERTS, n_layers), by_quarter(HILO_RULE_RANKS, n_layers),
            router=HILO_RULE_ROUTER, **targets,
        )
    if name == "uniform":
        return MoLoRAConfig.uniform(n_layers, UNIFORM_EXPERTS, UNIFORM_RANK, router=TOP2, **targets)
    raise ValueError(f"seed name must be one of {list(SEED_NAMES)}, got {name!r}")
