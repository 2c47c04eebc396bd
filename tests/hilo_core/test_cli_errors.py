"""Every CLI with bad input: one line on stderr naming the problem, exit code 2, no traceback; no noise
from libraries a user cannot act on (Optuna's ExperimentalWarning) in a search's output."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import torch

from search_cli import ROOT, search_args


def run_main(module: str, argv: list[str]) -> int:
    entry = importlib.import_module(module)
    if not hasattr(entry, "main"):  # a package run with -m: its __main__ holds main
        entry = importlib.import_module(f"{module}.__main__")
    try:
        return entry.main(argv)
    except SystemExit as stop:
        return stop.code


def test_hilo_core_unknown_model_is_one_line_as_a_process():
    """`python -m hilo_core --model nope` printed a traceback (offline: the hub is not tried, as here)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "hilo_core", "--model", "nope"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("hilo_core: model 'nope': could not load it"), proc.stderr


def bad_inputs(tmp_path: Path, tiny_model_dir: Path) -> list[tuple[str, list[str], str]]:
    """(module, argv, words of the one line) for bad input the argument parsers cannot see."""
    (tmp_path / "not-a-dataset").mkdir()
    out = ["--out", str(tmp_path / "p"), "--no-cache"]
    cases = [
        ("hilo_core", ["--model", str(tmp_path / "no-such-model")], "could not load it as a"),
        ("hilo_core.proxies", ["--model", str(tiny_model_dir), "--device", "nope", *out], "--device must be a torch"),
        ("hilo_core.proxies", ["--model", str(tiny_model_dir), "--total-experts", "2", *out], "total_experts must"),
        ("reports.export", ["--study", "s", "--to", "hilo", "--storage", "redis://localhost/0"], "--storage redis://"),
        ("reports.build", ["--study", "s", "--storage", "redis://localhost/0"], "--storage redis://"),
        ("search.run", ["--budget", "1", "--task", str(tmp_path / "not-a-dataset"), "--out-root", str(tmp_path)],
         "--task"),
    ]
    if not torch.cuda.is_available():
        cases.append(("hilo_core.proxies", ["--model", str(tiny_model_dir), "--device", "cuda", *out],
                      "no CUDA GPU is visible"))
    return cases


def test_bad_input_sweep_is_one_line_exit_2(tmp_path, tiny_model_dir, capsys):
    for module, argv, words in bad_inputs(tmp_path, tiny_model_dir):
        assert run_main(module, argv) == 2, (module, argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"{module}: ") and words in err, (module, argv, err)
    assert not (tmp_path / "p").exists()


def test_search_output_has_no_experimental_warnings(task_file, tiny_model_dir, tmp_path):
    """Heartbeats and metric names are Optuna features hilo chose: their ExperimentalWarning is ours, not a user's."""
    from search.run import main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(search_args(task_file, tiny_model_dir, tmp_path, "--budget", "1", fidelity=1)) == 0
    experimental = [str(w.message) for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert not experimental
