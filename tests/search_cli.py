"""Running the search CLI cheaply in tests: arguments for the tiny model and task, and subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def search_args(task_file, model_dir, out_root, *extra, study="s", fidelity=3):
    """search.run arguments for a cheap search of the tiny model (mola: 4 seeds, 8 experts max), each seed
    rule trained once (``--seed-repeats 1``: the budgets here are small; tests/search covers repeats)."""
    return ["--space", "mola", "--task", str(task_file), "--model", str(model_dir), "--study", study,
            "--out-root", str(out_root), "--fidelity", str(fidelity), "--batch-size", "4",
            "--eval-examples", "8", "--no-report", "--seed-repeats", "1", *extra]


def cli(module, *args, **popen):
    """``python -m module args`` from the repository root; output piped unless ``popen`` says otherwise."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env, **options)
