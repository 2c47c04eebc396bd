"""Search spaces: per-layer expert/rank grids and the published rule-based configs as seeds.

``get_space(name, n_layers=...)`` gives a built-in Space (``SPACE_NAMES``); ``load_space_file`` a
user-defined one; ``seed_config`` the rule-based configs; ``trainable_constraint`` the budget.
"""

from .builtin import SPACE_NAMES, AlphaLoRASpace, get_space
from .constraints import TRAINABLE_ATTR, TrainableConstraint, trainable_constraint
from .file import load_space_file
from .grouped import GroupedSpace
from .seeds import SEED_NAMES, seed_config, seed_names
from .space import Seed, Space

__all__ = [
    "SEED_NAMES", "SPACE_NAMES", "TRAINABLE_ATTR", "AlphaLoRASpace", "GroupedSpace", "Seed", "Space",
    "TrainableConstraint", "get_space", "load_space_file", "seed_config", "seed_names", "trainable_constraint",
]
