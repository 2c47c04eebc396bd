"""`--backend ray`: the same study run by Ray Tune (one trial per GPU, CPU fallback), ASHA for pruning.

Ray Tune's ``OptunaSearch`` is given *our* RDB storage and study name, so seeds, the sampler, the stored
params, values and user attributes are the same as with the Optuna backend; Ray schedules the trials.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hilo_core import MoLoRAConfig
from objectives import DIRECTIONS, Fidelity, Metrics
from objectives.records import QuestionRecords

from .progress import SearchProgress
from .study import FINISHED, finished_count
from .trials import TrialContext, record_config, record_result, worker_name
from .worker import claim, heartbeat, queued_trials, wait_for_others

CONFIG_KEY = "molora_config"
SEED_KEY = "train_seed"
METRICS_KEY = "metrics_json"
RECORDS_KEY = "records"


def _ray():
    try:
        import ray
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as err:  # optional heavy backend: imported only when asked for
        raise ImportError(f"--backend ray needs ray[tune]: pip install 'ray[tune]' ({err})") from None
    return ray, tune, OptunaSearch


@dataclass(frozen=True)
class WorkerJob:
    """What a Ray worker needs, by name (picklable): it loads the task and model in its own process."""

    task: str
    model: str
    fidelity: Fidelity
    objectives: tuple[str, ...]
    seed: int


@dataclass(frozen=True)
class DefineConfig:
    """OptunaSearch's define-by-run space: sample and record a config on the driver (picklable for Tune)."""

    ctx: TrialContext

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        config = self.ctx.space.sample(trial)
        seed = record_config(trial, config, self.ctx)  # the replicate rule of both backends
        return {CONFIG_KEY: config.to_json(), SEED_KEY: seed}


def _train(params: dict[str, Any], *, job: WorkerJob) -> None:
    """Ray worker: evaluate the config the driver sampled; report intermediate and final results."""
    from ray import tune

    from objectives import TrialFailed, evaluate, get_task

    config = MoLoRAConfig.from_json(params[CONFIG_KEY])
    try:
        metrics = evaluate(config, get_task(job.task, seed=job.seed), job.fidelity, seed=params[SEED_KEY], model=job.model,
                           on_eval=lambda step, acc: tune.report({"accuracy": float(acc), "step": step}))
    except TrialFailed as err:
        tune.report({"failure": str(err), "worker": worker_name()})
        return
    final = dict(zip(job.objectives, metrics.values(job.objectives)))
    # Tune flattens nested result dicts, so the full Metrics travel as one JSON string.
    tune.report({**final, METRICS_KEY: json.dumps(metrics.to_dict()), "step": metrics.steps,
                 RECORDS_KEY: metrics.records.encode() if metrics.records else "", "worker": worker_name()})


def _classes():
    """Ray-dependent classes, defined only once Ray is imported (it is an optional backend)."""
    _, tune, OptunaSearch = _ray()
    from ray.tune.search import Searcher

    class StudySearch(OptunaSearch):
        """OptunaSearch that claims queued trials like the Optuna backend's workers, stores our trial
        attributes and marks ASHA-stopped trials PRUNED."""

        budget: int | None = None

        def suggest(self, trial_id: str) -> dict | str | None:
            # ``claim`` instead of ``Study.ask``: the heartbeat is recorded before the trial is RUNNING (a
            # driver killed at any moment leaves trials that go stale) and no trial beyond the budget is made,
            # however many drivers share the study.
            if callable(self._space) and trial_id not in self._ot_trials:
                trial = claim(self._ot_study, self.budget)
                if trial is None:
                    return Searcher.FINISHED
                self._ot_trials[trial_id] = trial
            return super().suggest(trial_id)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None or trial_id in self._completed_trials:
                return super().on_trial_complete(trial_id, result, error)
            result = result or {}
            ot_trial.set_user_attr("seconds", float(result.get("time_total_s", 0.0)))
            if "worker" in result:
                ot_trial.set_user_attr("worker", result["worker"])
            if METRICS_KEY in result and not error:
                records = QuestionRecords.decode(result[RECORDS_KEY]) if result.get(RECORDS_KEY) else None
                metrics = replace(Metrics.from_dict(json.loads(result[METRICS_KEY])), records=records)
                values = record_result(ot_trial, metrics, tuple(self.metric))  # same storage as the Optuna backend
                return super().on_trial_complete(trial_id, {**result, **dict(zip(self.metric, values))}, error)
            failed = error or "failure" in result
            reason = result.get("failure") or ("error in the Ray trial" if error else
                                               f"stopped by ASHA at step {result.get('step')}")
            ot_trial.set_user_attr("failure", reason)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL if failed else TrialState.PRUNED)
            self._completed_trials.add(trial_id)

    class ProgressCallback(tune.Callback):
        """Feeds trials the searcher has stored to the progress display, once each."""

        def __init__(self, study: optuna.Study, progress: SearchProgress) -> None:
            self.study, self.progress, self.seen = study, progress, set()

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.flush()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.flush()

        def __getstate__(self) -> dict:
            """Tune pickles its callbacks for restore; a live display does not survive that."""
            return {"study": None, "progress": None, "seen": set()}

        def flush(self) -> None:
            if self.study is None:
                return
            for t in self.study.get_trials(deepcopy=False, states=FINISHED):
                if t.number not in self.seen:
                    self.seen.add(t.number)
                    self.progress(self.study, t)

    return StudySearch, ProgressCallback


def live_trial_ids(searcher: Any) -> list[int]:
    """Optuna ids of the trials a Ray searcher has claimed and not yet told: the ones its driver beats.

    Ray Tune runs trials in worker processes but claims and tells them in the driver, so the driver is what
    must be alive for a trial to end: when it is killed the beats stop and ``fail_interrupted`` fails those
    trials with the reason, as it does for the Optuna backend's workers.
    """
    done = set(searcher._completed_trials)
    return [t._trial_id for tune_id, t in list(searcher._ot_trials.items()) if tune_id not in done]


def run_with_ray(study: optuna.Study, ctx: TrialContext, args: argparse.Namespace, console: Console) -> None:
    """Run the remaining budget as Ray Tune trials on a local Ray or ``--ray-address``."""
    ray, tune, _ = _ray()
    # What is queued below the budget; a RUNNING trial is another driver's, or a killed one's and will fail.
    remaining = None if args.budget is None else len(queued_trials(study, args.budget))
    if remaining == 0:
        console.print(f"study already has {finished_count(study)} finished trials; nothing to run")
        wait_for_others(study, console)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        if args.ray_address:
            ray.init(address=args.ray_address, log_to_driver=False)
        else:
            ray.init(address="local", num_cpus=max(args.workers, 1), include_dashboard=False, log_to_driver=False)

    StudySearch, ProgressCallback = _classes()
    searcher = StudySearch(space=DefineConfig(ctx), metric=list(ctx.objectives),
                                 mode=[DIRECTIONS[o][:3] for o in ctx.objectives],
                                 sampler=study.sampler, study_name=study.study_name, storage=study._storage)
    searcher.budget = args.budget
    scheduler = None
    if args.pruner != "none":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="step", max_t=ctx.fidelity.steps,
                                  grace_period=max(ctx.fidelity.eval_every, 1), reduction_factor=3)
    gpus = 1 if _has_gpu() else 0
    job = WorkerJob(task=args.task, model=args.model, fidelity=ctx.fidelity, objectives=ctx.objectives, seed=ctx.seed)
    trainable = tune.with_resources(tune.with_parameters(_train, job=job), {"cpu": 1, "gpu": gpus})
    ray_dir = (Path(args.out_root) / study.study_name / "ray").resolve()
    with SearchProgress(total=args.budget or 0, done=finished_count(study), objectives=ctx.objectives,
                        console=console) as progress:
        callback = ProgressCallback(study, progress)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining or -1,
                                        max_concurrent_trials=args.workers,
                                        time_budget_s=args.budget_hours * 3600 if args.budget_hours else None),
            run_config=tune.RunConfig(name=study.study_name, storage_path=str(ray_dir), verbose=0,
                                      callbacks=[callback]),
        )
        with heartbeat(study._storage, lambda: live_trial_ids(searcher)):
            tuner.fit()
        callback.flush()
    if args.budget is not None:
        wait_for_others(study, console)
    console.print(f"Ray Tune's own results: {ray_dir}")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
