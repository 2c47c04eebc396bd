"""Objectives: load a model and task, fine-tune a MoLoRAConfig briefly, and evaluate it honestly."""
