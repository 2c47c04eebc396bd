"""`--backend ray`: the same study run by Ray Tune on a local Ray or a cluster, ASHA for pruning.

Ray Tune's ``OptunaSearch`` is given *our* RDB storage and study name, so seeds, the sampler, the stored
params, values and user attributes are the same as with the Optuna backend; Ray schedules the trials.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
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
from .ray_cluster import Cluster, connect, kill_on_node, node_identity, watch_head
from .study import FINISHED, finished_count
from .timeout import timeout_reason
from .trials import TrialContext, record_config, record_result, worker_name
from .worker import claim, heartbeat, queued_trials, wait_for_others

CONFIG_KEY = "molora_config"
SEED_KEY = "train_seed"
METRICS_KEY = "metrics_json"
RECORDS_KEY = "records"
STARTED_KEY = "ray_node_id"  # in a trial's first report: the Ray node it started on


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
    task_columns: str | None = None


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

    from objectives import TrialFailed, base_model, evaluate, get_task

    where = node_identity()
    worker = f"{worker_name()} (Ray node {where['node_ip']})"
    model, _ = base_model(job.model)  # once per worker process: Tune reuses the actor for the next trial
    import torch

    tune.report({"step": 0, STARTED_KEY: where["node_id"], "worker": worker, "model_object": id(model),
                 "threads": torch.get_num_threads()})  # Ray sets OMP_NUM_THREADS to the trial's CPUs
    config = MoLoRAConfig.from_json(params[CONFIG_KEY])
    try:
        task = get_task(job.task, seed=job.seed, columns=job.task_columns)
        metrics = evaluate(config, task, job.fidelity, seed=params[SEED_KEY], model=job.model,
                           on_eval=lambda step, acc: tune.report({"accuracy": float(acc), "step": step}))
    except TrialFailed as err:
        tune.report({"failure": str(err), "worker": worker})
        return
    final = dict(zip(job.objectives, metrics.values(job.objectives)))
    # Tune flattens nested result dicts, so the full Metrics travel as one JSON string.
    tune.report({**final, METRICS_KEY: json.dumps(metrics.to_dict()), "step": metrics.steps,
                 RECORDS_KEY: metrics.records.encode() if metrics.records else "", "worker": worker})


def _classes():
    """Ray-dependent classes, defined only once Ray is imported (it is an optional backend)."""
    _, tune, OptunaSearch = _ray()
    from ray.tune.search import Searcher

    class StudySearch(OptunaSearch):
        """OptunaSearch that claims queued trials like the Optuna backend's workers, stores our trial
        attributes and marks ASHA-stopped trials PRUNED; an errored trial waits for ``fail`` and its reason."""

        def __init__(self, *args: Any, budget: int | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.budget, self.errored = budget, set()

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

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if STARTED_KEY in result and trial_id in self._ot_trials:  # where it runs, while it runs
                self._ot_trials[trial_id].set_user_attr("worker", result["worker"])
                self._ot_trials[trial_id].set_user_attr("threads", int(result["threads"]))
            super().on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None or trial_id in self._completed_trials:
                return super().on_trial_complete(trial_id, result, error)
            if error:  # Tune tells the searcher before the callbacks, which see the error and its node
                self.errored.add(trial_id)
                return None
            result = result or {}
            ot_trial.set_user_attr("seconds", float(result.get("time_total_s", 0.0)))
            if "worker" in result:
                ot_trial.set_user_attr("worker", result["worker"])
            if METRICS_KEY in result:
                records = QuestionRecords.decode(result[RECORDS_KEY]) if result.get(RECORDS_KEY) else None
                metrics = replace(Metrics.from_dict(json.loads(result[METRICS_KEY])), records=records)
                values = record_result(ot_trial, metrics, tuple(self.metric))  # same storage as the Optuna backend
                return super().on_trial_complete(trial_id, {**result, **dict(zip(self.metric, values))}, error)
            if "failure" in result:
                return self.fail(trial_id, result["failure"])
            ot_trial.set_user_attr("failure", f"stopped by ASHA at step {result.get('step')}")
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)

        def fail(self, trial_id: str, reason: str, seconds: float | None = None) -> None:
            """End a claimed trial FAIL with ``reason`` (once; a told trial is left as it is)."""
            ot_trial = self._ot_trials.get(trial_id)
            self.errored.discard(trial_id)
            if ot_trial is None or trial_id in self._completed_trials:
                return
            if seconds is not None:
                ot_trial.set_user_attr("seconds", seconds)
            ot_trial.set_user_attr("failure", reason)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)
            self._completed_trials.add(trial_id)

    class StudyCallback(tune.Callback):
        """The driver's view of running trials: where each started, its time limit, the reason an errored
        one failed (a lost node or worker, a time-out), and the progress display, once per trial."""

        def __init__(self, study: optuna.Study, progress: SearchProgress, searcher: StudySearch,
                     trial_timeout: float | None) -> None:
            self.study, self.progress, self.searcher, self.trial_timeout = study, progress, searcher, trial_timeout
            self.seen: set[int] = set()
            self.started: dict[str, tuple[float, dict]] = {}  # Tune id -> (driver clock, first report)
            self.timed_out: dict[str, str] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            if STARTED_KEY in result and trial.trial_id not in self.started:
                self.started[trial.trial_id] = (time.monotonic(), result)

        def on_step_begin(self, iteration, trials, **info) -> None:
            if self.trial_timeout is None:
                return
            now = time.monotonic()
            for trial_id, (start, where) in list(self.started.items()):
                if trial_id not in self.timed_out and now - start > self.trial_timeout:
                    self.timed_out[trial_id] = timeout_reason(self.trial_timeout)
                    kill_on_node(where[STARTED_KEY], int(where["pid"]))  # its error then ends the trial

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.started.pop(trial.trial_id, None)
            self.flush()

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            start, where = self.started.pop(trial.trial_id, (None, None))
            reason = self.timed_out.get(trial.trial_id) or lost_reason(where, _error_text(trial))
            self.searcher.fail(trial.trial_id, reason, None if start is None else time.monotonic() - start)
            self.flush()

        def __getstate__(self) -> dict:
            """Tune pickles its callbacks for restore; a live display does not survive that."""
            return {"study": None, "progress": None, "searcher": None, "trial_timeout": None, "seen": set(),
                    "started": {}, "timed_out": {}}

        def flush(self) -> None:
            if self.study is None:
                return
            for trial_id in sorted(self.searcher.errored):  # errored with no callback seen (e.g. at the end)
                self.searcher.fail(trial_id, "error in the Ray trial (its error never reached the driver)")
            for t in self.study.get_trials(deepcopy=False, states=FINISHED):
                if t.number not in self.seen:
                    self.seen.add(t.number)
                    self.progress(self.study, t)

    return StudySearch, StudyCallback


def _error_text(trial: Any) -> str:
    """The first line of Ray's error for a Tune trial (its error file: a header line, then the error)."""
    try:
        with open(trial.error_file) as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, TypeError):
        return "error in the Ray trial"
    return next((line for line in lines if not line.startswith("Failure #")), "error in the Ray trial")


def lost_reason(where: dict | None, error: str) -> str:
    """A trial whose Ray worker died: the node (IP and id) and process it ran on, whether the cluster now
    counts that node dead, and Ray's error."""
    if where is None:
        return f"error in the Ray trial before it started: {error}"
    import ray

    node = where[STARTED_KEY]
    dead = any(n["NodeID"] == node and not n.get("Alive") for n in ray.nodes())
    state = "Ray marked the node dead" if dead else "Ray has not yet marked the node dead"
    return (f"lost the Ray worker {where['node_ip']}:{where['pid']} on node {where['node_ip']}"
            f" ({node[:8]}; {state}): {error}")


def live_trial_ids(searcher: Any) -> list[int]:
    """Optuna ids of the trials a Ray searcher has claimed and not yet told: the ones its driver beats.

    Ray Tune runs trials in worker processes but claims and tells them in the driver, so the driver is what
    must be alive for a trial to end: when it is killed the beats stop and ``fail_interrupted`` fails those
    trials with the reason, as it does for the Optuna backend's workers.
    """
    done = set(searcher._completed_trials)
    return [t._trial_id for tune_id, t in list(searcher._ot_trials.items()) if tune_id not in done]


def run_with_ray(study: optuna.Study, ctx: TrialContext, args: argparse.Namespace, console: Console,
                 cluster: Cluster | None = None) -> None:
    """Run the remaining budget as Ray Tune trials on ``cluster`` (connected by ``ray_cluster.connect``)."""
    _, tune, _ = _ray()
    # What is queued below the budget; a RUNNING trial is another driver's, or a killed one's and will fail.
    remaining = None if args.budget is None else len(queued_trials(study, args.budget))
    if remaining == 0:
        console.print(f"study already has {finished_count(study)} finished trials; nothing to run")
        wait_for_others(study, console)
        return
    cluster = cluster or connect(args)
    # Tune stages one trial at a time for a searcher, so a cluster's slots would fill one actor start-up after
    # another (and short trials all land on the first warm worker); stage as many as run at once.
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG",
                          str(cluster.resources.max_concurrent or cluster.resources.slots))
    # Each failed trial's reason is stored and shown; Tune would also log it as a multi-line traceback.
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)

    StudySearch, StudyCallback = _classes()
    searcher = StudySearch(space=DefineConfig(ctx), metric=list(ctx.objectives),
                                 mode=[DIRECTIONS[o][:3] for o in ctx.objectives],
                                 sampler=study.sampler, study_name=study.study_name, storage=study._storage,
                                 budget=args.budget)
    scheduler = None
    if args.pruner != "none":
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(metric="accuracy", mode="max", time_attr="step", max_t=ctx.fidelity.steps,
                                  grace_period=max(ctx.fidelity.eval_every, 1), reduction_factor=3)
    job = WorkerJob(task=args.task, model=args.model, fidelity=ctx.fidelity, objectives=ctx.objectives, seed=ctx.seed,
                    task_columns=args.task_columns)
    trainable = tune.with_resources(tune.with_parameters(_train, job=job), cluster.resources.as_tune())
    ray_dir = (Path(args.out_root) / study.study_name / "ray").resolve()
    with SearchProgress(total=args.budget or 0, done=finished_count(study), objectives=ctx.objectives,
                        console=console) as progress:
        callback = StudyCallback(study, progress, searcher, args.trial_timeout)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining or -1,
                                        max_concurrent_trials=cluster.resources.max_concurrent, reuse_actors=True,
                                        time_budget_s=args.budget_hours * 3600 if args.budget_hours else None),
            # One name per driver process: Tune stages trial files on the cluster under the run's name and
            # start second, so two drivers of one study starting together would write into each other's.
            run_config=tune.RunConfig(name=f"{study.study_name}-{socket.gethostname()}-{os.getpid()}",
                                      storage_path=str(ray_dir), verbose=0, callbacks=[callback]),
        )
        with watch_head(cluster.address), heartbeat(study._storage, lambda: live_trial_ids(searcher)):
            tuner.fit()
        callback.flush()
    if args.budget is not None:
        wait_for_others(study, console)
    console.print(f"Ray Tune's own results: {ray_dir}")

