"""Live progress of a search: a bar with elapsed time and ETA, one line per finished trial, the front size."""

from __future__ import annotations

from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hilo_core import MoLoRAConfig

FORMATS = {"accuracy": "{:.3f}", "trainable": "{:,.0f}", "active": "{:,.0f}"}


def format_values(objectives: Sequence[str], values: Sequence[float] | None) -> str:
    if not values:
        return "-"
    return "  ".join(f"{name}={FORMATS.get(name, '{:.4g}').format(v)}" for name, v in zip(objectives, values))


class SearchProgress:
    """Optuna callback: advances the bar and prints each finished trial; use as a context manager."""

    def __init__(self, *, total: int, done: int, objectives: Sequence[str], console: Console | None = None) -> None:
        self.objectives = tuple(objectives)
        self.console = console or Console()
        self.progress = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("front {task.fields[front]}"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=self.console)
        self.task = self.progress.add_task("search", total=total, completed=done, front=0)

    def __enter__(self) -> "SearchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        label = trial.user_attrs.get("seed_name", "sampled")
        seconds = trial.user_attrs.get("seconds", 0.0)
        if trial.state == TrialState.COMPLETE:
            outcome = format_values(self.objectives, trial.values)
            if "replicate_of" in trial.user_attrs:
                outcome += (f"  [dim](replicate of trial {trial.user_attrs['replicate_of']}, training seed "
                            f"{trial.user_attrs.get('train_seed')}; value = mean over its seeds)[/]")
        else:
            outcome = f"[yellow]{trial.state.name}[/]: {trial.user_attrs.get('failure', 'no reason recorded')}"
        front = len(study.best_trials) if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else 0
        self.progress.console.print(f"trial {trial.number:>3} [cyan]{label:<10}[/] {outcome}  ({seconds:.0f} s)")
        self.progress.update(self.task, advance=1, front=front)


def front_table(study: optuna.Study, objectives: Sequence[str]) -> Table:
    """The Pareto-optimal trials of ``study`` (Optuna's non-domination, constraints respected)."""
    table = Table(title=f"Pareto front of {study.study_name}")
    for col in ("trial", "seed", *objectives, "experts per layer"):
        table.add_column(col, justify="left" if col in ("seed", "experts per layer") else "right")
    for t in sorted(study.best_trials, key=lambda t: t.number):
        config = MoLoRAConfig.from_json(t.user_attrs["config"])
        values = [FORMATS.get(n, "{:.4g}").format(v) for n, v in zip(objectives, t.values)]
        table.add_row(str(t.number), t.user_attrs.get("seed_name", ""), *values,
                      ",".join(map(str, config.experts_per_layer)))
    return table
