"""The report written at the end of a search: the reports package's full report, into the study folder."""

from __future__ import annotations

import time

import optuna
from rich.console import Console
from rich.table import Table

from .study import StudyLocation


def write_report(study: optuna.Study, location: StudyLocation, console: Console) -> None:
    """Build every report file of ``study`` into ``location.out_dir`` and say how long it took."""
    from reports.build import build
    from reports.load import read_study

    start = time.perf_counter()
    paths = build(read_study(study, location.storage), location.out_dir)
    console.print(f"report: {location.out_dir} ({len(paths)} files, {time.perf_counter() - start:.1f} s)")


def print_verdicts(study: optuna.Study, location: StudyLocation, console: Console) -> None:
    """The confirmation table and, per seed rule, what the confirmed searched configs can claim."""
    from reports.confirmed import read_confirmation

    conf = read_confirmation(study.study_name, location.storage)
    if conf is None:
        console.print("no confirmation runs in this study (python -m search.confirm --study NAME)")
        return
    table = Table(title=f"Confirmed on the test split ({conf.covers()})")
    for col in ("config", "role", "trial", "trainable", "active", "seeds", "val acc", "test acc [95% CI]"):
        table.add_column(col, justify="left" if col in ("config", "role") else "right")
    for r in conf.table():
        table.add_row(r["label"], r["role"], str(r["trial"]), f"{r['trainable']:,.0f}", f"{r['active']:,.0f}",
                      str(r["seeds"]), f"{r['val']:.3f}",
                      f"{r['test']:.3f} [{r['low']:.3f}, {r['high']:.3f}] (n={r['questions']})")
    console.print(table)
    for v in conf.verdicts():
        console.print("- " + v.sentence())
    winners = conf.beats_every_rule()
    console.print("configs better than every confirmed rule with confidence: "
                  + (", ".join(f"trial {n}" for n in winners) if winners else "none"))
