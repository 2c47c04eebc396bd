"""Reading a successive-halving study: the runs of each rung, promotions and the compute spent per rung.

Rung 0 runs are the search study's own trials (the sampler sees only them); a promoted run continues its
parent's training and lives in ``<study>.rungs`` of the same storage, with ``rung`` and ``parent`` attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

RUNGS_SUFFIX = ".rungs"
RUNG_ATTR = "rung"
SCHEDULE_ATTR = "schedule"  # study attribute: Schedule.to_dict() of a successive-halving search


def rungs_study_name(study_name: str) -> str:
    return study_name + RUNGS_SUFFIX


def rungs_study(study: optuna.Study) -> optuna.Study | None:
    """The study's ``.rungs`` companion, or None when it has none (yet)."""
    name = rungs_study_name(study.study_name)
    if name not in optuna.get_all_study_names(storage=study._storage):
        return None
    return optuna.load_study(study_name=name, storage=study._storage)


def group_by_rung(runs) -> dict[int, list[FrozenTrial]]:
    """Completed runs keyed by their ``rung`` attribute (a search trial without one is rung 0), rungs in order."""
    out: dict[int, list[FrozenTrial]] = {}
    for t in runs:
        out.setdefault(int(t.user_attrs.get(RUNG_ATTR, 0)), []).append(t)
    return dict(sorted(out.items()))


def runs_by_rung(study: optuna.Study) -> dict[int, list[FrozenTrial]]:
    """Completed runs per rung, rung 0 from the study itself, the others from ``<study>.rungs``."""
    companion = rungs_study(study)
    done = (TrialState.COMPLETE,)
    return group_by_rung([*study.get_trials(deepcopy=False, states=done),
                          *(companion.get_trials(deepcopy=False, states=done) if companion else ())])


def top_rung_runs(study: optuna.Study) -> tuple[int, list[FrozenTrial]]:
    """``(rung, runs)`` of the highest rung any run completed: where a scheduled search's front is."""
    by_rung = runs_by_rung(study)
    if not by_rung:
        return 0, []
    top = max(by_rung)
    return top, by_rung[top]


def front_runs(study: optuna.Study) -> list[FrozenTrial]:
    """The completed runs a study's front is read from: the top rung reached (scheduled), else every trial."""
    if study.user_attrs.get(SCHEDULE_ATTR):
        return top_rung_runs(study)[1]
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


@dataclass(frozen=True)
class RungRow:
    """One rung of a scheduled search as the report shows it."""

    rung: int
    steps: int
    questions: int
    configs: int
    runs: int
    promoted: int  # configs of this rung with a run on the next
    seconds: float  # training + scoring time of this rung's runs (each run's own segment)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rung_table(study: optuna.Study, by_rung: dict[int, list[FrozenTrial]] | None = None) -> list[RungRow]:
    """Per rung: configs, runs, promotions and compute; empty for a study without a schedule. ``by_rung``:
    ``runs_by_rung(study)`` when the caller has it already."""
    schedule = study.user_attrs.get(SCHEDULE_ATTR)
    if not schedule:
        return []
    by_rung = runs_by_rung(study) if by_rung is None else by_rung
    configs = {k: {t.user_attrs.get("config") for t in runs} for k, runs in by_rung.items()}
    rows = []
    for k, (steps, questions) in enumerate(schedule["rungs"]):
        runs = by_rung.get(k, [])
        seconds = sum(float((t.user_attrs.get("metrics") or {}).get("train_seconds", 0.0))
                      + float((t.user_attrs.get("metrics") or {}).get("eval_seconds", 0.0)) for t in runs)
        promoted = len(configs.get(k, set()) & configs.get(k + 1, set()))
        rows.append(RungRow(k, int(steps), int(questions), len(configs.get(k, ())), len(runs), promoted, seconds))
    return rows


def highest_rungs(study: optuna.Study, by_rung: dict[int, list[FrozenTrial]] | None = None) -> dict[int, int]:
    """Search trial number -> the highest rung its run reached (its ``lineage`` in ``.rungs``)."""
    out = {t.number: int(t.user_attrs.get(RUNG_ATTR, 0)) for t in study.get_trials(deepcopy=False)}
    for rung, runs in (runs_by_rung(study) if by_rung is None else by_rung).items():
        for t in runs if rung else ():
            lineage = int(t.user_attrs["lineage"])
            out[lineage] = max(out.get(lineage, 0), rung)
    return out
