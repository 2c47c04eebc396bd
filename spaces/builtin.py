"""The built-in spaces by name (docs/architecture.md, spaces) and the AlphaLoRA space.

``uniform``: one (N, r) for all layers. ``mola``: experts per quarter from {2,4,5,6,8}, rank 8, top-2.
``alphalora``: T and beta of the AlphaLoRA allocation, and the rank. ``hilo``: G groups (4) with expert
count and rank grids, router kind and parameter, optional monotone and rank ladder. ``free``: every layer
independent.
"""

from __future__ import annotations

from typing import Any, Sequence

from hilo_core.config import LLAMA_TARGETS, MoLoRAConfig
from hilo_core.proxies import alphalora_allocation
from hilo_core.proxies.allocation import ROUNDINGS

from .grids import int_grid, positive_grid, router_grids
from .grouped import GroupedSpace
from .params import (
    ALPHA_BETA, ALPHA_RANK, ALPHA_TOTAL, build_router, encode_choice, encode_router, layer_spec, router_choices,
    router_param_name, suggest_choice, suggest_router,
)
from .space import Space, check_layers, check_targets, format_grid, format_size

SPACE_NAMES = ("uniform", "mola", "alphalora", "hilo", "free")
DEFAULT_GROUPS = 4  # quarters, as MoLA and HiLo split the layers; fewer when the model has fewer layers
TOP2_ONLY = {"topk": {"top_k": (2,)}}
MOLA_EXPERTS = (2, 4, 5, 6, 8)  # the values of the published patterns 2468, 5555, 8642, 8228
EXPERTS_PER_LAYER = (2, 3, 4, 5, 6)
BETA_GRID = (1.0, 1.5, 2.0, 2.5, 3.0)
ALPHA_RANK_GRID = (4, 8, 16)
GROUPED_OPTIONS = ("groups", "n_experts", "rank", "rank_ladder", "routers", "monotone")
OPTIONS = {
    "uniform": tuple(o for o in GROUPED_OPTIONS if o != "groups"),
    "mola": GROUPED_OPTIONS,
    "alphalora": ("total_experts", "beta", "rank", "routers", "rounding"),
    "hilo": GROUPED_OPTIONS,
    "free": tuple(o for o in GROUPED_OPTIONS if o != "groups"),
}


class AlphaLoRASpace(Space):
    """Experts per layer from ``alphalora_allocation(layer_alphas, T, beta)``; one rank; one router.

    Args:
        total_experts: grid of T; default 2..6 experts per layer on average.
        beta: grid of the allocation exponent; rank: grid of the (shared) expert rank.
        routers: as in ``GroupedSpace``; default top-2 (top-1 where a layer has one expert).
        rounding: ``"released"`` (AlphaLoRA's code, default) or ``"nearest"`` (hilo's; ``alphalora_allocation``).
    """

    def __init__(
        self,
        *,
        n_layers: int,
        layer_alphas: Sequence[float] | None,
        total_experts: Any = None,
        beta: Any = BETA_GRID,
        rank: Any = ALPHA_RANK_GRID,
        routers: Any = None,
        rounding: str = "released",
        target_modules: tuple[str, ...] = LLAMA_TARGETS,
        name: str = "alphalora",
    ) -> None:
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding: must be one of {list(ROUNDINGS)}, got {rounding!r}")
        self.rounding = rounding
        self.name = name
        self.layer_alphas = check_layers(n_layers, layer_alphas)
        if self.layer_alphas is None:
            raise ValueError("space 'alphalora' needs layer_alphas (hilo_core.proxies.layer_alphas), got None")
        self.n_layers = n_layers
        self.target_modules = check_targets(target_modules)
        totals = tuple(m * n_layers for m in EXPERTS_PER_LAYER) if total_experts is None else total_experts
        self.total_experts = int_grid("total_experts", totals)
        if self.total_experts[0] < n_layers:
            raise ValueError(f"total_experts: values must be >= n_layers={n_layers}, got {self.total_experts[0]}")
        self.beta = positive_grid("beta", beta)
        self.rank = int_grid("rank", rank)
        self.routers = router_grids("routers", TOP2_ONLY if routers is None else routers)

    def sample(self, trial: Any) -> MoLoRAConfig:
        total = suggest_choice(trial, ALPHA_TOTAL, self.total_experts)
        beta = suggest_choice(trial, ALPHA_BETA, self.beta)
        rank = suggest_choice(trial, ALPHA_RANK, self.rank)
        router = suggest_router(trial, self.routers)
        experts = alphalora_allocation(self.layer_alphas, total, beta, rounding=self.rounding)
        return MoLoRAConfig(layers=tuple(layer_spec(n, rank, 1, router) for n in experts),
                            target_modules=self.target_modules)

    def encode(self, config: MoLoRAConfig) -> dict[str, Any] | None:
        ranks = {r for spec in config.layers for r in spec.ranks}
        if config.n_layers != self.n_layers or len(ranks) != 1:
            return None
        beta = next((b for b in self.beta if alphalora_allocation(
            self.layer_alphas, config.total_experts, b, rounding=self.rounding) == config.experts_per_layer), None)
        router = next((c for c in router_choices(self.routers)
                       if all(build_router(*c, s.n_experts) == s.router for s in config.layers)), None)
        parts = [encode_choice(ALPHA_TOTAL, self.total_experts, config.total_experts),
                 None if beta is None else encode_choice(ALPHA_BETA, self.beta, beta),
                 encode_choice(ALPHA_RANK, self.rank, ranks.pop()),
                 None if router is None else encode_router(self.routers, *router)]
        return None if any(p is None for p in parts) else {k: v for p in parts for k, v in p.items()}

    def size(self) -> int:
        return len(self.total_experts) * len(self.beta) * len(self.rank) * len(router_choices(self.routers))

    def describe(self) -> str:
        routers = "; ".join(f"{kind} {router_param_name(kind)} {format_grid(grid)}" if grid else kind
                            for kind, grid in self.routers.items())
        return "\n".join([
            f"{self.name}: {self.n_layers} layers, experts n_l = round(T a_l^beta / sum a^beta) from layer alphas"
            f" ({self.rounding} rounding)",
            f"  T {format_grid(self.total_experts)}, beta {format_grid(self.beta)}, rank {format_grid(self.rank)}",
            f"  routers: {routers} (top_k clamped to each layer's experts)",
            f"  targets: {', '.join(self.target_modules)}; size: {format_size(self.size())} choices",
        ])


def get_space(
    name: str,
    *,
    n_layers: int,
    target_modules: tuple[str, ...] = LLAMA_TARGETS,
    layer_alphas: Sequence[float] | None = None,
    **options: Any,
) -> Space:
    """The built-in space ``name`` (one of ``SPACE_NAMES``) for a model; ``options`` override its grids.

    Options: ``uniform``/``free``: n_experts, rank, rank_ladder, routers, monotone; ``mola``/``hilo``: those
    and ``groups`` (default 4, or n_layers when fewer); ``alphalora``: total_experts, beta, rank, routers, rounding.

    Raises:
        ValueError: unknown name or option, or a bad option value (naming the option and what is allowed).
    """
    if name not in SPACE_NAMES:
        raise ValueError(f"space must be one of {list(SPACE_NAMES)}, got {name!r}")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        raise ValueError(f"space {name!r}: unknown options {unknown}; allowed: {list(OPTIONS[name])}")
    model = {"n_layers": n_layers, "target_modules": target_modules, "layer_alphas": layer_alphas}
    if name == "alphalora":
        return AlphaLoRASpace(**model, **options)
    check_layers(n_layers, layer_alphas)
    quarters = min(DEFAULT_GROUPS, n_layers)
    defaults = {
        "uniform": {"groups": 1},
        "mola": {"groups": quarters, "n_experts": MOLA_EXPERTS, "rank": (8,), "routers": TOP2_ONLY},
        "hilo": {"groups": quarters},
        "free": {"groups": n_layers, "prefix": "layers"},
    }[name]
    return GroupedSpace(name=name, **model, **{**defaults, **options})
