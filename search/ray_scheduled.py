"""`--backend ray --scheduler sh|asha`: Ray places the search's workers on the cluster's nodes, each with the
trial resources (`--cpus/gpus-per-trial`); every worker runs the scheduled loop of `--backend optuna` against
the study's storage, so claims, promotion tickets and checkpoints work exactly as there. The workers open the
storage, the data and the checkpoint folder themselves, from the driver's working directory: on a multi-node
cluster use a PostgreSQL `--storage` and paths every node sees at the same place (docs/cluster.md)."""

from __future__ import annotations

import argparse
import os

import optuna
from rich.console import Console

from .optuna_backend import worker_argv
from .ray_cluster import Cluster, watch_head
from .study import wait_for_running


def _run_worker(argv: list[str], cwd: str) -> int:
    os.chdir(cwd)  # relative --task/--model/--out-root/sqlite paths mean what they meant to the driver
    from search.run import main  # in the Ray worker's process

    return main(argv)


def run_scheduled_on_ray(study: optuna.Study, rungs: optuna.Study, args: argparse.Namespace, console: Console,
                         cluster: Cluster) -> None:
    """As many workers as the cluster runs trials at once, each until nothing is left to run or promote."""
    import ray

    n = cluster.resources.max_concurrent or cluster.resources.slots
    task = ray.remote(_run_worker).options(num_cpus=cluster.resources.cpus, num_gpus=cluster.resources.gpus,
                                           max_retries=0)
    argv = worker_argv(args, study.study_name, replace={"--backend": "optuna"},
                       drop=("--ray-address", "--cpus-per-trial", "--gpus-per-trial"))
    console.print(f"Ray: {n} scheduled workers ({cluster.resources.cpus:g} CPU / {cluster.resources.gpus:g} GPU"
                  " each), all on the study's storage")
    with watch_head(cluster.address):
        codes = ray.get([task.remote(argv, os.getcwd()) for _ in range(n)])
    for code in codes:
        if code not in (0, 1):
            console.print(f"[yellow]warning:[/] a Ray worker exited with code {code}")
    for s in (study, rungs):
        failed = wait_for_running(s)
        if failed:
            console.print(f"trials {failed} of {s.study_name} were left by a stopped worker and are marked FAIL")
