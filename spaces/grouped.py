"""GroupedSpace: contiguous layer groups, each with an expert count, a rank and a rank ladder from grids.

One class serves ``uniform`` (one group), ``mola`` and ``hilo`` (G groups) and ``free`` (one group per
layer, named ``layers.{i}.*``), and every space file. One router (kind and parameter) for the model.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from hilo_core.config import LLAMA_TARGETS, LayerSpec, MoLoRAConfig

from .grids import DEFAULT_ROUTERS, check_monotone, group_grids, int_grid, router_grids
from .params import (
    build_router, encode_choice, encode_profile, encode_router, ladder_ranks, layer_groups, layer_spec,
    param_name, router_choices, router_param_name, suggest_choice, suggest_profile, suggest_router,
)
from .space import Space, check_layers, check_targets, format_grid, format_size

N_EXPERTS_GRID = (1, 2, 3, 4, 5, 6, 7, 8)
RANK_GRID = (2, 4, 6, 8, 16)


def _profile_count(grids: Sequence[tuple[int, ...]], monotone: bool) -> int:
    """Number of profiles: all combinations, or the non-decreasing ones (dynamic programming)."""
    if not monotone:
        return math.prod(len(g) for g in grids)
    counts = {v: 1 for v in grids[0]}
    for grid in grids[1:]:
        counts = {v: sum(c for u, c in counts.items() if u <= v) for v in grid}
    return sum(counts.values())


class GroupedSpace(Space):
    """Per group: ``n_experts`` and ``rank`` from grids, ``rank_ladder`` factor; one router for all layers.

    Args:
        name: the space's name (describe, study attrs).
        n_layers: transformer layers of the model.
        groups: number of contiguous layer groups, split ``numpy.array_split`` style.
        n_experts / rank: one grid for every group, or a list of one grid per group.
        routers: ``{kind: {param: grid}}`` or a list of kinds (default grids); default all four kinds.
        monotone: expert counts and ranks non-decreasing with depth, by construction (grid steps up).
        rank_ladder: factors f; experts' ranks rise evenly from ``max(1, rank // f)`` to ``rank``.
        prefix: parameter-name prefix, ``group`` or ``layers``.
        target_modules / layer_alphas: model facts (alphas only feed the ``alphalora`` seed).

    Raises:
        ValueError: naming the option, the bad value and what is allowed.
    """

    def __init__(
        self,
        *,
        name: str,
        n_layers: int,
        groups: int,
        n_experts: Any = N_EXPERTS_GRID,
        rank: Any = RANK_GRID,
        routers: Any = None,
        monotone: bool = False,
        rank_ladder: Any = (1,),
        prefix: str = "group",
        target_modules: tuple[str, ...] = LLAMA_TARGETS,
        layer_alphas: Sequence[float] | None = None,
    ) -> None:
        self.name = name
        self.layer_alphas = check_layers(n_layers, layer_alphas)
        self.n_layers = n_layers
        self.target_modules = check_targets(target_modules)
        self.groups = layer_groups(n_layers, groups)
        self.n_experts = group_grids("n_experts", n_experts, len(self.groups))
        self.rank = group_grids("rank", rank, len(self.groups))
        self.rank_ladder = int_grid("rank_ladder", rank_ladder)
        self.routers = router_grids("routers", list(DEFAULT_ROUTERS) if routers is None else routers)
        if not isinstance(monotone, bool):
            raise ValueError(f"monotone must be true or false, got {monotone!r}")
        self.monotone = monotone
        if monotone:
            check_monotone("n_experts", self.n_experts)
            check_monotone("rank", self.rank)
        self.prefix = prefix

    def sample(self, trial: Any) -> MoLoRAConfig:
        experts = suggest_profile(trial, self.prefix, "n_experts", self.n_experts, self.monotone)
        ranks = suggest_profile(trial, self.prefix, "rank", self.rank, self.monotone)
        ladders = [suggest_choice(trial, param_name(self.prefix, g, "rank_ladder"), self.rank_ladder)
                   for g in range(len(self.groups))]
        router = suggest_router(trial, self.routers)
        layers: list[LayerSpec] = []
        for n, r, f, group in zip(experts, ranks, ladders, self.groups):
            layers.extend([layer_spec(n, r, f, router)] * len(group))
        return MoLoRAConfig(layers=tuple(layers), target_modules=self.target_modules)

    def encode(self, config: MoLoRAConfig) -> dict[str, Any] | None:
        if config.n_layers != self.n_layers:
            return None
        specs = [config.layers[group.start] for group in self.groups]
        if any(config.layers[i] != spec for spec, group in zip(specs, self.groups) for i in group):
            return None
        experts = [s.n_experts for s in specs]
        ranks = [max(s.ranks) for s in specs]
        params = {}
        for field, values, grids in (("n_experts", experts, self.n_experts), ("rank", ranks, self.rank)):
            encoded = encode_profile(self.prefix, field, grids, self.monotone, values)
            if encoded is None:
                return None
            params.update(encoded)
        for g, (n, r, spec) in enumerate(zip(experts, ranks, specs)):
            factor = next((f for f in self.rank_ladder if ladder_ranks(n, r, f) == spec.ranks), None)
            if factor is None:
                return None
            params.update(encode_choice(param_name(self.prefix, g, "rank_ladder"), self.rank_ladder, factor))
        router = next((c for c in router_choices(self.routers)
                       if all(build_router(*c, s.n_experts) == s.router for s in specs)), None)
        return None if router is None else {**params, **encode_router(self.routers, *router)}

    def size(self) -> int:
        return (_profile_count(self.n_experts, self.monotone) * _profile_count(self.rank, self.monotone)
                * len(self.rank_ladder) ** len(self.groups) * len(router_choices(self.routers)))

    def describe(self) -> str:
        sizes = " or ".join(str(n) for n in sorted({len(g) for g in self.groups}, reverse=True))
        lines = [
            f"{self.name}: {self.n_layers} layers in {len(self.groups)} group(s) of {sizes} layers,"
            f" params '{self.prefix}.{{g}}.*'"
            + ("; monotone: experts and ranks never decrease with depth" if self.monotone else ""),
        ]
        same = len(set(self.n_experts)) == 1 and len(set(self.rank)) == 1
        unit = "layer" if self.prefix == "layers" else "group"
        shown = [(f"every {unit}", self.n_experts[0], self.rank[0])] if same else [
            (f"group {g} (layers {grp.start}-{grp.stop - 1})", n, r)
            for g, (grp, n, r) in enumerate(zip(self.groups, self.n_experts, self.rank))
        ]
        lines += [f"  {where}: n_experts {format_grid(n)}, rank {format_grid(r)}" for where, n, r in shown]
        if len(self.rank_ladder) > 1 or self.rank_ladder[0] != 1:
            lines.append(f"  rank_ladder {format_grid(self.rank_ladder)}: ranks rise from rank // f to rank")
        routers = "; ".join(f"{kind} {router_param_name(kind)} {format_grid(grid)}" if grid else kind
                            for kind, grid in self.routers.items())
        lines.append(f"  routers: {routers} (top_k clamped to each layer's experts; tau_max = tau_scale / N)")
        lines.append(f"  targets: {', '.join(self.target_modules)}; size: {format_size(self.size())} choices")
        return "\n".join(lines)
