"""Objectives: load a model and task, fine-tune a MoLoRAConfig briefly, and evaluate it honestly."""

from .data_files import TaskDataError, load_task_file
from .evaluation import base_model, evaluate
from .fidelity import Fidelity
from .metrics import DIRECTIONS, Metrics
from .registry import DEFAULT_TASK, TASKS, get_task
from .task import Example, Task
from .train import TrialFailed

__all__ = [
    "DEFAULT_TASK", "DIRECTIONS", "TASKS", "Example", "Fidelity", "Metrics", "Task", "TaskDataError",
    "TrialFailed", "base_model", "evaluate", "get_task", "load_task_file",
]
