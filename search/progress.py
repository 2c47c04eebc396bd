"""Live progress of a search: a bar with elapsed time and ETA, one line per finished trial, the front size."""

from __future__ import annotations

from typing import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hilo_core import MoLoRAConfig
from objectives.front import search_front
from objectives.paired import mean_interval, wilson_interval
from objectives.records import stored_records
from reports.rungs import SCHEDULE_ATTR, top_rung_runs

from .study import finished_count

FORMATS = {"accuracy": "{:.3f}", "score": "{:.4f}", "loss": "{:.4f}", "trainable": "{:,.0f}", "active": "{:,.0f}"}


def format_values(objectives: Sequence[str], values: Sequence[float] | None) -> str:
    if not values:
        return "-"
    return "  ".join(f"{name}={FORMATS.get(name, '{:.4g}').format(v)}" for name, v in zip(objectives, values))


class SearchProgress:
    """Optuna callback: prints each trial this process finishes and sets the bar to the study's finished count
    (every worker's); use as a context manager."""

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
            records = stored_records(trial.user_attrs)
            if records is not None:
                lo, hi = wilson_interval(int(records.correct.sum()), len(records))
                outcome += f"  [dim](this run: accuracy {records.accuracy:.3f} [{lo:.3f}, {hi:.3f}], n={len(records)})[/]"
            if "replicate_of" in trial.user_attrs:
                outcome += (f"  [dim](replicate of trial {trial.user_attrs['replicate_of']}, training seed "
                            f"{trial.user_attrs.get('train_seed')}; value = mean over its seeds)[/]")
        else:
            outcome = f"[yellow]{trial.state.name}[/]: {trial.user_attrs.get('failure', 'no reason recorded')}"
        front = len(study.best_trials) if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else 0
        self.progress.console.print(f"trial {trial.number:>3} [cyan]{label:<10}[/] {outcome}  ({seconds:.0f} s)")
        # counted in the storage: trials other worker processes finished count too
        self.progress.update(self.task, completed=finished_count(study), front=front)

    def rung(self, _: optuna.Study, trial: FrozenTrial) -> None:
        """A promoted run (``<study>.rungs``) finished: one line; the bar counts configs, not promotions."""
        a = trial.user_attrs
        if trial.state == TrialState.COMPLETE:
            outcome = format_values(self.objectives, trial.values)
        else:
            outcome = f"[yellow]{trial.state.name}[/]: {a.get('failure', 'no reason recorded')}"
        self.progress.console.print(f"  rung {a.get('rung')} of trial {a.get('lineage'):>3} [cyan]"
                                    f"{a.get('seed_name', 'sampled'):<10}[/] {outcome}  ({a.get('seconds', 0.0):.0f} s)")


def front_table(study: optuna.Study, objectives: Sequence[str], *, alpha: float = 0.05) -> Table:
    """The noise-aware front of ``study``: one row per config (its replicates pooled), the accuracy-side
    signal with its interval (questions, and training seeds once the study has replicates)."""
    where = ""
    if study.user_attrs.get(SCHEDULE_ATTR):
        top, runs = top_rung_runs(study)
        where = f" at rung {top} (trial = run of <study>.rungs above rung 0)"
    else:
        runs = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = {t.number: t for t in runs}
    sf = search_front(done.values(), objectives, alpha=alpha)
    covers = "questions and training seeds" if sf.seed_variance.known else "questions only"
    plain = f"plain front {len(study.best_trials) if done else 0} trials; " if not where else ""
    table = Table(title=f"Noise-aware front of {study.study_name}{where}: {len(sf.front)} configs (alpha {alpha}; "
                        f"{plain}intervals cover {covers})")
    for col in ("trial", "seed", "seeds", f"{sf.signal} [95% CI]", *sf.axes, "experts per layer"):
        table.add_column(col, justify="left" if col in ("seed", "experts per layer") else "right")
    for i in sorted(sf.front, key=lambda i: sf.candidates[i].params):
        c = sf.candidates[i]
        first = done[sf.trials[c.key][0]]
        ci = mean_interval(c.values, seed_variance=sf.seed_variance)
        shown = [-v for v in (ci.estimate, ci.high, ci.low)] if sf.signal == "loss" else [ci.estimate, ci.low, ci.high]
        config = MoLoRAConfig.from_json(c.key)
        table.add_row(str(first.number), first.user_attrs.get("seed_name", ""), str(c.values.shape[0]),
                      "{:.3f} [{:.3f}, {:.3f}]".format(*shown), *(f"{p:,.0f}" for p in c.params),
                      ",".join(map(str, config.experts_per_layer)))
    return table
