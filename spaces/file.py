"""A user-defined GroupedSpace from a small YAML or JSON file, validated with errors that name the key.

```yaml
name: my-space            # optional, default: the file's stem
groups: 4                 # contiguous layer groups (numpy.array_split style); default min(4, layers)
monotone: true            # experts and ranks never decrease with depth
n_experts: [1, 2, 4, 8]   # one grid for every group, or one list per group: [[1, 2], [2, 4], [4, 8], [8]]
rank: [2, 4, 8]
rank_ladder: [1, 2]       # optional: ranks inside a layer rise from rank // f to rank
routers:                  # kind -> its parameter grid; {} takes the default grid
  topk: {top_k: [1, 2]}
  threshold: {tau_scale: [0.5, 1.0]}
  topp: {top_p: [0.5, 0.75]}
  dense: {}
```
Omitted keys take the ``hilo`` space's defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml

from hilo_core.config import LLAMA_TARGETS

from .builtin import DEFAULT_GROUPS
from .grouped import GroupedSpace
from .space import check_layers

FILE_KEYS = ("name", "groups", "monotone", "n_experts", "rank", "rank_ladder", "routers")


def load_space_file(
    path: str | Path,
    *,
    n_layers: int,
    target_modules: tuple[str, ...] = LLAMA_TARGETS,
    layer_alphas: Sequence[float] | None = None,
) -> GroupedSpace:
    """Read a space file (YAML, or JSON, which YAML reads) into a GroupedSpace for this model.

    Raises:
        ValueError: ``"<path>: <key>: ..."`` for an unreadable file, an unknown key or a bad value.
    """
    path = Path(path)
    try:
        data: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read space file: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a space file must hold a mapping of {list(FILE_KEYS)}, got {data!r}")
    unknown = sorted(str(k) for k in set(data) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; allowed: {list(FILE_KEYS)}")
    options = {k: v for k, v in data.items() if k != "name"}
    check_layers(n_layers, layer_alphas)
    options.setdefault("groups", min(DEFAULT_GROUPS, n_layers))
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: name must be a non-empty string, got {name!r}")
    try:
        return GroupedSpace(name=name, n_layers=n_layers, target_modules=target_modules,
                            layer_alphas=layer_alphas, **options)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
