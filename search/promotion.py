"""Successive halving on an Optuna storage: rung runs with checkpoints, promotion tickets, the worker loop.

Every finished run below the top rung saves its paused training (``objectives.checkpoint``) in Optuna's
artifact store next to the study and leaves a *ticket*: a WAITING trial of ``<study>.rungs`` naming it as
parent. Promoting a run is claiming its ticket (WAITING -> RUNNING, one guarded update in the database), so any
number of workers never promote a run twice; the promoted run downloads the parent's checkpoint and trains on
from there. A ticket whose worker died is failed as stale and re-issued once by the process that failed it,
so a killed rung is run again on ``--resume`` and a finished one never is.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from hilo_core import MoLoRAConfig
from objectives import Metrics, evaluate
from objectives.front import search_front
from reports.rungs import RUNG_ATTR, group_by_rung, rungs_study_name

from .scheduler import Schedule, promoted_count, promotion_order
from .study import fail_interrupted
from .worker import Callback, claim, claim_trial, queued_trials, run_one

CHECKPOINT_ATTR = "checkpoint"  # artifact id of a run's paused training (absent on the top rung)
TICKET_KEYS = ("config", "train_seed", RUNG_ATTR, "parent", "lineage", "from_checkpoint", "seed_name", "attempt")
POLL_SECONDS = 1.0


class Promotions:
    """One search process's view of the schedule: the ``.rungs`` study, the checkpoint store, the tickets."""

    def __init__(self, study: optuna.Study, schedule: Schedule, checkpoints: Path, *, objectives: Sequence[str],
                 alpha: float) -> None:
        self.study, self.schedule, self.objectives, self.alpha = study, schedule, tuple(objectives), alpha
        self.rungs = optuna.create_study(study_name=rungs_study_name(study.study_name), storage=study._storage,
                                         directions=study.directions, load_if_exists=True)
        checkpoints.mkdir(parents=True, exist_ok=True)
        self.store = FileSystemArtifactStore(str(checkpoints))

    def train(self, trial: optuna.Trial, config: MoLoRAConfig, seed: int, rung: int, ctx) -> Metrics:
        """Train ``config`` to ``rung`` (from the ticket's parent checkpoint above rung 0), store the run's rung
        and checkpoint, and leave its ticket to the next rung."""
        fidelity = self.schedule.fidelity(ctx.fidelity, rung)
        parent = trial.user_attrs.get("from_checkpoint")
        with tempfile.TemporaryDirectory(prefix="hilo-rung-") as tmp:
            resume = Path(tmp) / "parent.pt" if parent else None
            if parent:
                download_artifact(artifact_store=self.store, file_path=str(resume), artifact_id=parent)
            save = Path(tmp) / "run.pt" if rung < self.schedule.top else None
            metrics = evaluate(config, ctx.task, fidelity, seed=seed, model=ctx.model, resume_from=resume,
                               save_to=save)
            trial.set_user_attr(RUNG_ATTR, rung)
            if save is not None:
                trial.set_user_attr(CHECKPOINT_ATTR, upload_artifact(artifact_store=self.store, file_path=str(save),
                                                                     study_or_trial=trial))
        if save is not None:
            self._issue_ticket(trial.user_attrs, parent=(trial.study.study_name, trial.number), rung=rung + 1,
                               lineage=trial.user_attrs.get("lineage", trial.number))
        return metrics

    def _issue_ticket(self, attrs: dict, *, parent: tuple[str, int], rung: int, lineage: int, attempt: int = 1) -> None:
        ticket = {"config": attrs["config"], "train_seed": attrs["train_seed"], RUNG_ATTR: rung,
                  "parent": {"study": parent[0], "number": parent[1]}, "lineage": lineage,
                  "from_checkpoint": attrs[CHECKPOINT_ATTR], "attempt": attempt}
        if "seed_name" in attrs:
            ticket["seed_name"] = attrs["seed_name"]
        self.rungs.enqueue_trial({}, user_attrs=ticket)

    def reissue_interrupted(self) -> list[int]:
        """Fail the stale promoted runs of dead workers and queue each one's ticket again (only the process
        whose update failed a run re-issues it, so a ticket is never doubled); returns the failed numbers."""
        failed = fail_interrupted(self.rungs)
        trials = {t.number: t for t in self.rungs.get_trials(deepcopy=False)} if failed else {}
        for number in failed:
            a = trials[number].user_attrs
            self.rungs.enqueue_trial({}, user_attrs={**{k: a[k] for k in TICKET_KEYS if k in a},
                                                     "attempt": int(a.get("attempt", 1)) + 1})
        return failed

    def release(self, finished: FrozenTrial) -> None:
        """A promoted run is stored COMPLETE: its parent's checkpoint will never be read again, so it goes
        (a kill before this line leaves a file behind, never a ticket without its checkpoint)."""
        parent = finished.user_attrs.get("from_checkpoint")
        if finished.state == TrialState.COMPLETE and parent:
            try:
                self.store.remove(parent)
            except ArtifactNotFound:
                pass  # a re-issued ticket's first attempt may have finished it after all

    def promotable(self, budget: int | None) -> list[FrozenTrial]:
        """Tickets that may be claimed now, highest rung first, best first within a rung.

        At rung k the configs are put in ``promotion_order``; the top ``k_configs // eta`` are promoted (each of
        their runs). ``sh`` promotes from rung k only once it is closed: nothing left to run or promote below it.
        """
        tickets = {(t.user_attrs["parent"]["study"], t.user_attrs["parent"]["number"]): t
                   for t in self.rungs.get_trials(deepcopy=False, states=(TrialState.WAITING,))}
        running = [t.user_attrs.get(RUNG_ATTR) for t in self.rungs.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        closed = not queued_trials(self.study, budget) and not self.study.get_trials(
            deepcopy=False, states=(TrialState.RUNNING,))
        done = (TrialState.COMPLETE,)
        by_rung = group_by_rung([*self.study.get_trials(deepcopy=False, states=done),
                                 *self.rungs.get_trials(deepcopy=False, states=done)])
        chosen: list[list[FrozenTrial]] = []
        for rung in range(self.schedule.top):
            source = self.study.study_name if rung == 0 else self.rungs.study_name
            picks: list[FrozenTrial] = []
            if self.schedule.kind == "asha" or closed:
                sf = search_front(by_rung.get(rung, []), self.objectives, alpha=self.alpha)
                order = promotion_order(sf.candidates, alpha=self.alpha, seed_variance=sf.seed_variance)
                for i in order[:promoted_count(len(order), self.schedule.eta)]:
                    picks += [tickets[(source, n)] for n in sf.trials[sf.candidates[i].key] if (source, n) in tickets]
            chosen.append(picks)
            closed = closed and not picks and rung + 1 not in running
        return [t for picks in reversed(chosen) for t in picks]

    def busy(self) -> bool:
        """Some run of the search is still RUNNING (another worker's may yet make a promotion possible)."""
        return any(s.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) for s in (self.study, self.rungs))


def run_scheduled_worker(study: optuna.Study, promotions: Promotions, *,
                         fresh: Callable[[optuna.Trial], Sequence[float]],
                         promoted: Callable[[optuna.Trial], Sequence[float]], budget: int | None,
                         timeout: float | None, callbacks: Sequence[Callback] = (),
                         rung_callbacks: Sequence[Callback] = ()) -> int:
    """Promote whatever may be promoted (highest rung first), else start a queued config at rung 0; wait while
    other workers' runs may still lead to promotions; stop when nothing is left or after ``timeout`` s."""
    start, ran = time.monotonic(), 0
    while timeout is None or time.monotonic() - start < timeout:
        fail_interrupted(study)
        promotions.reissue_interrupted()
        frozen, target = None, None
        for ticket in promotions.promotable(budget):
            trial = claim_trial(promotions.rungs, ticket)
            if trial is not None:
                frozen, target = run_one(promotions.rungs, trial, promoted), rung_callbacks
                promotions.release(frozen)
                break
        if frozen is None:
            trial = claim(study, budget)
            if trial is None:
                if promotions.busy():
                    time.sleep(POLL_SECONDS)
                    continue
                break
            frozen, target = run_one(study, trial, fresh), callbacks
        ran += 1
        owner = promotions.rungs if target is rung_callbacks else study
        for callback in target:
            callback(owner, frozen)
        gc.collect()
    return ran
