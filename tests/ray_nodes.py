"""A real multi-node Ray cluster on this machine, for the cluster tests: each node is its own
``ray start --block`` process tree on its own loopback address, with its own CPUs and ports.

Nodes are stopped by pid: every process of a node's tree (the ``ray start`` process, its GCS, raylet and
agents, and the worker processes its raylet started, which sit in sessions of their own) is listed from
/proc before any of them is signalled, so none is missed when its parent dies first.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
START_TIMEOUT = 90
# Faster node-death detection than Ray's default (about 15-30 s), so a killed node is dead within seconds.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
                      "RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_timeout_ms": "1000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant, from /proc (parent links), parents first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def node_env() -> dict[str, str]:
    """What every node's processes (and so its Ray workers) run with: the code and the offline model."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1",
            "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
            **FAST_HEALTH_CHECKS}


@dataclass
class Node:
    ip: str
    process: subprocess.Popen
    log: Path

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process.poll() is None else []


@dataclass
class RayCluster:
    """Head first (``start_head``), then ``add_node``; ``kill`` one node, ``stop`` all of them."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hr", dir="/tmp")))
    nodes: list[Node] = field(default_factory=list)
    address: str | None = None

    def _start(self, ip: str, cpus: float, extra: list[str]) -> Node:
        log = self.root / f"node-{ip}.log"
        ports = ["--dashboard-agent-listen-port", free_port(), "--dashboard-agent-grpc-port", free_port(),
                 "--runtime-env-agent-port", free_port(), "--metrics-export-port", free_port()]
        argv = [RAY, "start", "--block", "--node-ip-address", ip, "--num-cpus", cpus, "--disable-usage-stats",
                "--object-store-memory", 80 * 2**20, *ports, *extra]
        with open(log, "w") as out:
            proc = subprocess.Popen([str(a) for a in argv], env=node_env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        node = Node(ip=ip, process=proc, log=log)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {ip} did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        return node

    def start_head(self, ip: str, cpus: float = 1) -> str:
        port = free_port()
        self._start(ip, cpus, ["--head", "--port", port, "--include-dashboard", "false", "--dashboard-port",
                               free_port(), "--temp-dir", self.root])
        self.address = f"{ip}:{port}"
        return self.address

    def add_node(self, ip: str, cpus: float = 1) -> Node:
        return self._start(ip, cpus, ["--address", self.address])

    def node(self, ip: str) -> Node:
        return next(n for n in self.nodes if n.ip == ip)

    def kill(self, ip: str) -> list[int]:
        """SIGKILL every process of node ``ip`` at once (a machine lost: nothing gets to clean up)."""
        node = self.node(ip)
        pids = node.pids()
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        node.process.wait(30)
        return pids

    def stop(self) -> None:
        """Every process of every live node, by pid (a killed node's were all killed with it)."""
        pids = [p for n in self.nodes for p in n.pids()]
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        for node in self.nodes:
            try:
                node.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
