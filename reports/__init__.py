"""Reports: Pareto-front plots, tables and exports read from a finished study."""
