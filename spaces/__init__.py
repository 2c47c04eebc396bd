"""Search spaces: per-layer expert/rank grids and the published rule-based configs as seeds."""
