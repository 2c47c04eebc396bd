"""``python -m reports.build --study NAME``: every report file of one study, in its folder.

Writes pareto.png, pareto.html, layers.png, hypervolume.png, trials.csv and summary.md to
``<out-root>/<study>/`` (the folder search.run made). Exit code 2 with one line when the study is
missing, empty or has no completed trial.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilo_core.cli import OneLineParser, print_error

from .html import pareto_html
from .load import DEFAULT_OUT_ROOT, StudyData, StudyError, load, study_folder
from .plots import hypervolume_png, layers_png, pareto_png
from .summary import summary_md, trials_csv


def build(data: StudyData, folder: Path) -> list[Path]:
    """Write all report files for ``data`` into ``folder``; returns their paths, summary.md last."""
    written = [
        pareto_png(data, folder / "pareto.png"),
        pareto_html(data, folder / "pareto.html"),
        layers_png(data, folder / "layers.png"),
        hypervolume_png(data, folder / "hypervolume.png"),
        trials_csv(data, folder / "trials.csv"),
    ]
    return written + [summary_md(data, folder / "summary.md", [p.name for p in written])]


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m reports.build", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="study name, as given to search.run --study")
    p.add_argument("--storage", default=None,
                   help="Optuna RDB URL (default: sqlite:///<out-root>/<study>/study.db)")
    p.add_argument("--out-root", default=DEFAULT_OUT_ROOT,
                   help=f"root of the per-study folders (default: {DEFAULT_OUT_ROOT})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        data = load(args.study, args.storage, args.out_root)
    except StudyError as err:
        print_error("reports.build", err)
        return 2
    for path in build(data, study_folder(args.study, args.out_root)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
