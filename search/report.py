"""The report written at the end of a search: the reports package's full report, into the study folder."""

from __future__ import annotations

import time

import optuna
from rich.console import Console

from .study import StudyLocation


def write_report(study: optuna.Study, location: StudyLocation, console: Console) -> None:
    """Build every report file of ``study`` into ``location.out_dir`` and say how long it took."""
    from reports.build import build
    from reports.load import read_study

    start = time.perf_counter()
    paths = build(read_study(study), location.out_dir)
    console.print(f"report: {location.out_dir} ({len(paths)} files, {time.perf_counter() - start:.1f} s)")
