"""The Ray cluster a `--backend ray` search runs on: connecting, what each trial holds, the head's liveness,
and ending a trial's worker process on whichever node it runs.

Resources are decided from the cluster's nodes (``ray.nodes()``), not from the driver's own devices: on a
GPU cluster the driver may run on a CPU-only machine. A lost head node makes Ray's own client wait 60 s and
then abort with a C++ log line; the driver watches the head itself and exits with one line sooner.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from hilo_core.cli import print_error

from .study import SearchInputError

HEAD_CHECK_SECONDS = 1.0
HEAD_LOST_AFTER = 5  # failed connections in a row, HEAD_CHECK_SECONDS apart, before the head counts as lost
CLUSTER_LOST_EXIT = 3  # exit code of a driver whose cluster's head node went away
# Trials report partial results (the node they started on, intermediate accuracy, a failure) that lack some
# of the objectives; Tune would reject them without this.
TUNE_ENV = {"TUNE_DISABLE_STRICT_METRIC_CHECKING": "1", "RAY_AUTH_MODE": "disabled"}


def _ray():
    try:
        import ray
    except ImportError as err:  # optional heavy backend: imported only when asked for
        raise ImportError(f"--backend ray needs ray[tune]: pip install 'ray[tune]' ({err})") from None
    return ray


@dataclass(frozen=True)
class TrialResources:
    """What one trial holds on its node, how many the cluster's nodes hold at once (``slots``), and how
    many run at once (None: as many as fit)."""

    cpus: float
    gpus: float
    slots: int
    max_concurrent: int | None

    def as_tune(self) -> dict[str, float]:
        return {"cpu": self.cpus, "gpu": self.gpus}


@dataclass(frozen=True)
class Cluster:
    """A connected Ray: its head's GCS address (None for a local Ray) and the trial resources chosen on it."""

    address: str | None
    resources: TrialResources


def connect(args: argparse.Namespace) -> Cluster:
    """``ray.init`` on ``--ray-address`` (or a new local Ray sized for ``--workers`` trials), then the trial
    resources from its nodes.

    Raises:
        SearchInputError: the cluster cannot be reached, or no node can hold one trial.
    """
    ray = _ray()
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)
    cpus = 1.0 if args.cpus_per_trial is None else args.cpus_per_trial
    if not ray.is_initialized():
        if args.ray_address:
            try:
                ray.init(address=args.ray_address, log_to_driver=False, logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise SearchInputError(f"--ray-address {args.ray_address}: cannot connect ({err})") from None
        else:  # "local": never join a cluster that `ray start` left on this machine
            ray.init(address="local", num_cpus=max(1, math.ceil(args.workers * cpus)), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    resources = trial_resources(args, nodes)
    address = ray.get_runtime_context().gcs_address if args.ray_address else None
    return Cluster(address=address, resources=resources)


def trial_resources(args: argparse.Namespace, nodes: list[dict[str, float]]) -> TrialResources:
    """CPUs and GPUs per trial (GPUs default to 1 when any node has one) checked against the largest node.

    Concurrency: ``--workers`` on a local Ray, or on a cluster when given; else whatever the cluster fits.
    """
    cpus = 1.0 if args.cpus_per_trial is None else args.cpus_per_trial
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if most_gpus >= 1 else 0.0)
    slots = sum(_fits(n, cpus, gpus) for n in nodes)
    if not slots:
        largest = ", ".join(f"{n.get('CPU', 0.0):g} CPU/{n.get('GPU', 0.0):g} GPU" for n in nodes) or "none"
        raise SearchInputError(f"--cpus-per-trial {cpus:g} / --gpus-per-trial {gpus:g}: no node of the Ray"
                               f" cluster can hold one trial (alive nodes: {largest})")
    argv = getattr(args, "argv", [])
    workers_given = any(a == "--workers" or a.startswith("--workers=") for a in argv)
    concurrent = args.workers if (workers_given or not args.ray_address) else None
    return TrialResources(cpus=cpus, gpus=gpus, slots=slots, max_concurrent=concurrent)


def _fits(node: dict[str, float], cpus: float, gpus: float) -> int:
    """How many trials of ``cpus`` CPUs and ``gpus`` GPUs one node holds at once."""
    by_cpu = math.floor(node.get("CPU", 0.0) / cpus + 1e-9)
    return min(by_cpu, math.floor(node.get("GPU", 0.0) / gpus + 1e-9)) if gpus else by_cpu


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=HEAD_CHECK_SECONDS):
            return True
    except OSError:
        return False


def lost_cluster_message(address: str) -> str:
    return (f"lost the Ray cluster: its head node {address} has not answered for"
            f" {HEAD_LOST_AFTER * HEAD_CHECK_SECONDS:g} s; finished trials are stored and the running ones"
            " will fail as stale; start a cluster and rerun with --resume --ray-address <its head>")


@contextmanager
def watch_head(address: str | None, on_lost: Callable[[str], None] | None = None) -> Iterator[None]:
    """While the body runs, check the head's GCS port every HEAD_CHECK_SECONDS; when it refuses
    HEAD_LOST_AFTER times in a row, ``on_lost(message)`` (default: print it as the CLI's one line, exit)."""
    if address is None:
        yield
        return
    on_lost = on_lost or _exit_lost
    stop = threading.Event()

    def watch() -> None:
        failures = 0
        while not stop.wait(HEAD_CHECK_SECONDS):
            failures = 0 if _reachable(address) else failures + 1
            if failures >= HEAD_LOST_AFTER:
                on_lost(lost_cluster_message(address))
                return

    thread = threading.Thread(target=watch, name="hilo-ray-head", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _exit_lost(message: str) -> None:
    """Tune's loop is blocked on the lost cluster and cannot be unwound: say so in one line and exit."""
    print_error("search.run", message)
    os._exit(CLUSTER_LOST_EXIT)


def kill_on_node(node_id: str, pid: int) -> Any:
    """SIGKILL process ``pid`` on Ray node ``node_id`` (a trial's hung worker) with a zero-CPU task placed
    there; a stopped or C-blocked process cannot end itself. Returns the task's ObjectRef."""
    ray = _ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    return ray.remote(num_cpus=0)(_kill).options(scheduling_strategy=strategy).remote(pid)


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def node_identity() -> dict[str, Any]:
    """Where the calling Ray worker runs: node IP, node id and pid (its first report carries them)."""
    ray = _ray()
    return {"node_ip": ray.util.get_node_ip_address(), "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid()}
