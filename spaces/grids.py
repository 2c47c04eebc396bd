"""Validation of the grids a space chooses from; errors name the key, the bad value and what is allowed.

Shared by the built-in spaces' options and by space files, so both report the same key names.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from .params import ROUTER_PARAMS

DEFAULT_ROUTERS: dict[str, tuple] = {
    "topk": (1, 2, 3, 4),
    "threshold": (0.5, 0.75, 1.0),
    "topp": (0.5, 0.75, 0.9),
    "dense": (),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sequence(key: str, values: Any) -> Sequence[Any]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{key}: must be a list of values, got {values!r}")
    if len(values) == 0:
        raise ValueError(f"{key}: grid must be non-empty, got {list(values)!r}")
    return values


def _unique(key: str, values: Sequence[Any]) -> None:
    """Called once the values are known to be numbers (a list or mapping in a grid is not hashable)."""
    if len(set(values)) != len(values):
        raise ValueError(f"{key}: grid has duplicate values, got {list(values)!r}")


def int_grid(key: str, values: Any) -> tuple[int, ...]:
    """A sorted grid of positive integers."""
    for v in _sequence(key, values):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{key}: values must be positive integers, got {v!r} in {list(values)!r}")
    _unique(key, values)
    return tuple(sorted(values))


def fraction_grid(key: str, values: Any) -> tuple[float, ...]:
    """A sorted grid of numbers in (0, 1]."""
    for v in _sequence(key, values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
            raise ValueError(f"{key}: values must lie in (0, 1], got {v!r} in {list(values)!r}")
    _unique(key, values)
    return tuple(sorted(float(v) for v in values))


def positive_grid(key: str, values: Any) -> tuple[float, ...]:
    """A sorted grid of positive finite numbers."""
    for v in _sequence(key, values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(f"{key}: values must be positive finite numbers, got {v!r} in {list(values)!r}")
    _unique(key, values)
    return tuple(sorted(float(v) for v in values))


def group_grids(key: str, values: Any, n_groups: int) -> tuple[tuple[int, ...], ...]:
    """One integer grid for every group (a flat list) or one per group (a list of ``n_groups`` lists)."""
    if isinstance(values, Sequence) and not isinstance(values, (str, bytes)) and values \
            and all(isinstance(v, Sequence) and not isinstance(v, (str, bytes)) for v in values):
        if len(values) != n_groups:
            raise ValueError(f"{key}: per-group grids need one list per group ({n_groups}), got {len(values)}")
        return tuple(int_grid(f"{key}[{g}]", v) for g, v in enumerate(values))
    return (int_grid(key, values),) * n_groups


def check_monotone(key: str, grids: Sequence[tuple[int, ...]]) -> None:
    """A monotone profile must always be able to continue: each group's top value >= the previous one's."""
    for g in range(1, len(grids)):
        if grids[g][-1] < grids[g - 1][-1]:
            raise ValueError(
                f"{key}[{g}]: with monotone, the largest value {grids[g][-1]} must be >= group {g - 1}'s"
                f" largest {grids[g - 1][-1]}"
            )


def router_grids(key: str, routers: Any) -> dict[str, tuple]:
    """``{kind: {param: grid}}`` (an empty mapping or None takes the default grid) -> ``{kind: grid}``.

    A list of kinds is accepted as shorthand for their default grids.
    """
    if isinstance(routers, Sequence) and not isinstance(routers, (str, bytes)):
        bad = [kind for kind in routers if not isinstance(kind, str)]
        if bad:
            raise ValueError(f"{key}: a list of router kinds holds names only, got {bad[0]!r}; allowed:"
                             f" {list(ROUTER_PARAMS)}")
        routers = {kind: None for kind in routers}
    if not isinstance(routers, Mapping) or not routers:
        raise ValueError(f"{key}: must be a non-empty mapping of router kind to parameter grid, got {routers!r}")
    out: dict[str, tuple] = {}
    for kind, spec in routers.items():
        if kind not in ROUTER_PARAMS:
            raise ValueError(f"{key}.{kind}: unknown router kind {kind!r}; allowed: {list(ROUTER_PARAMS)}")
        param = ROUTER_PARAMS[kind]
        if spec is None or (isinstance(spec, Mapping) and not spec):
            out[kind] = DEFAULT_ROUTERS[kind]
            continue
        if not isinstance(spec, Mapping):
            raise ValueError(f"{key}.{kind}: must be a mapping {{{param}: [values]}}, got {spec!r}")
        unknown = sorted(set(spec) - {param})
        if unknown:
            allowed = [param] if param else []
            raise ValueError(f"{key}.{kind}: unknown keys {unknown}; allowed: {allowed}")
        values = spec[param]
        where = f"{key}.{kind}.{param}"
        out[kind] = int_grid(where, values) if kind == "topk" else fraction_grid(where, values)
    return out
