"""Flat trial-parameter names, and the one place they are suggested (decoded) and encoded.

Names are stable so studies stay readable in optuna-dashboard and resumable across versions (docs/architecture.md).
Every distribution is static (the same choices in every trial) so NSGA-II, TPE and GP samplers see one
search space; monotone profiles are therefore encoded as grid steps up from the previous group.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hilo_core.config import LayerSpec, RouterSpec

ROUTER_KIND = "router.kind"
ROUTER_PARAMS: dict[str, str | None] = {"topk": "top_k", "threshold": "tau_scale", "topp": "top_p", "dense": None}
ALPHA_TOTAL = "alphalora.total_experts"
ALPHA_BETA = "alphalora.beta"
ALPHA_RANK = "alphalora.rank"
UP = "_up"

Grid = tuple[Any, ...]
Routers = Mapping[str, Grid]


def param_name(prefix: str, index: int, field: str) -> str:
    """``group.{g}.rank``, ``layers.{i}.n_experts``, ``group.{g}.n_experts_up`` ..."""
    return f"{prefix}.{index}.{field}"


def router_param_name(kind: str) -> str:
    """``router.top_k`` / ``router.tau_scale`` / ``router.top_p`` for a router kind with a parameter."""
    return f"router.{ROUTER_PARAMS[kind]}"


def layer_groups(n_layers: int, n_groups: int) -> tuple[range, ...]:
    """Contiguous layer ranges, ``numpy.array_split`` style: the first ``n_layers % n_groups`` get one more.

    30 layers in 4 groups -> 8, 8, 7, 7 layers.
    """
    if not (isinstance(n_groups, int) and not isinstance(n_groups, bool) and 1 <= n_groups <= n_layers):
        raise ValueError(f"groups must be an integer in [1, n_layers={n_layers}], got {n_groups!r}")
    size, extra = divmod(n_layers, n_groups)
    bounds, start = [], 0
    for g in range(n_groups):
        stop = start + size + (1 if g < extra else 0)
        bounds.append(range(start, stop))
        start = stop
    return tuple(bounds)


def suggest_choice(trial: Any, name: str, grid: Grid) -> Any:
    """One value from ``grid``; a one-value grid is a constant and suggests nothing."""
    return grid[0] if len(grid) == 1 else trial.suggest_categorical(name, grid)


def encode_choice(name: str, grid: Grid, value: Any) -> dict[str, Any] | None:
    """Inverse of ``suggest_choice``: the params that make it return ``value``, None if not in the grid."""
    if value not in grid:
        return None
    return {} if len(grid) == 1 else {name: value}


def _start(grid: Grid, previous: Any) -> int:
    """First index of ``grid`` holding a value >= ``previous`` (grids are sorted)."""
    return next(i for i, v in enumerate(grid) if v >= previous)


def suggest_profile(trial: Any, prefix: str, field: str, grids: Sequence[Grid], monotone: bool) -> tuple:
    """One value per group. Monotone: group g>0 climbs ``{field}_up`` grid steps from the first value
    >= group g-1's, clamped at the top, so a decreasing profile cannot be drawn at all.
    """
    values: list[Any] = []
    for g, grid in enumerate(grids):
        if monotone and g > 0:
            start = _start(grid, values[-1])
            up = 0 if len(grid) == 1 else trial.suggest_int(param_name(prefix, g, field + UP), 0, len(grid) - 1)
            values.append(grid[min(start + up, len(grid) - 1)])
        else:
            values.append(suggest_choice(trial, param_name(prefix, g, field), grid))
    return tuple(values)


def encode_profile(
    prefix: str, field: str, grids: Sequence[Grid], monotone: bool, values: Sequence[Any]
) -> dict[str, Any] | None:
    """Inverse of ``suggest_profile``; None when a value is off its grid or the profile decreases."""
    params: dict[str, Any] = {}
    for g, (grid, value) in enumerate(zip(grids, values)):
        if value not in grid:
            return None
        if monotone and g > 0:
            up = grid.index(value) - _start(grid, values[g - 1])
            if up < 0:
                return None
            if len(grid) > 1:
                params[param_name(prefix, g, field + UP)] = up
        else:
            params.update(encode_choice(param_name(prefix, g, field), grid, value))
    return params


def suggest_router(trial: Any, routers: Routers) -> tuple[str, Any]:
    """Router kind (one of ``routers``) and the value of its one parameter (None for ``dense``)."""
    kind = suggest_choice(trial, ROUTER_KIND, tuple(routers))
    grid = routers[kind]
    return kind, (suggest_choice(trial, router_param_name(kind), grid) if grid else None)


def encode_router(routers: Routers, kind: str, value: Any) -> dict[str, Any] | None:
    """Inverse of ``suggest_router``."""
    params = encode_choice(ROUTER_KIND, tuple(routers), kind)
    if params is None or not routers[kind]:
        return params
    param = encode_choice(router_param_name(kind), routers[kind], value)
    return None if param is None else {**params, **param}


def router_choices(routers: Routers) -> list[tuple[str, Any]]:
    """Every (kind, value) pair ``suggest_router`` can return, in a fixed order."""
    return [(kind, v) for kind, grid in routers.items() for v in (grid or (None,))]


def build_router(kind: str, value: Any, n_experts: int) -> RouterSpec:
    """The layer's RouterSpec. ``top_k`` is clamped to ``n_experts``; ``tau_max = tau_scale / N``
    (scale 1 -> None, AdaMoLE's default 1/N) so one value is valid in layers of any expert count.
    """
    if kind == "topk":
        return RouterSpec(kind="topk", top_k=min(value, n_experts))
    if kind == "threshold":
        return RouterSpec(kind="threshold", tau_max=None if value == 1.0 else value / n_experts)
    if kind == "topp":
        return RouterSpec(kind="topp", top_p=value)
    return RouterSpec(kind="dense")


def ladder_ranks(n_experts: int, rank: int, factor: int) -> tuple[int, ...]:
    """Expert ranks rising evenly from ``max(1, rank // factor)`` to ``rank``; factor 1 = all equal."""
    low = max(1, rank // factor)
    if n_experts == 1:
        return (rank,)
    span, steps = rank - low, n_experts - 1
    return tuple(low + (span * i + steps // 2) // steps for i in range(n_experts))


def layer_spec(n_experts: int, rank: int, factor: int, router: tuple[str, Any]) -> LayerSpec:
    """Decode one group's choices into its LayerSpec."""
    return LayerSpec(ranks=ladder_ranks(n_experts, rank, factor), router=build_router(*router, n_experts))
