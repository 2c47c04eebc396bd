"""Search: multi-objective Optuna / Ray Tune studies over a space (python -m search.run)."""
