"""``python -m reports.compare STUDY_A STUDY_B``: the two Pareto fronts on one plot (PNG).

Each study is read from ``<out-root>/<study>/study.db`` unless ``--storage-a``/``--storage-b`` name its URL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilo_core.cli import OneLineParser, print_error

from .load import DEFAULT_OUT_ROOT, StudyError, load
from .plots import compare_png


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m reports.compare", description=__doc__.split("\n")[0])
    p.add_argument("study_a", help="first study name")
    p.add_argument("study_b", help="second study name")
    p.add_argument("--out", type=Path, default=None,
                   help="output PNG (default: <out-root>/compare-<A>-vs-<B>.png)")
    p.add_argument("--storage-a", default=None, help="Optuna RDB URL of the first study")
    p.add_argument("--storage-b", default=None, help="Optuna RDB URL of the second study")
    p.add_argument("--out-root", default=DEFAULT_OUT_ROOT, help=f"per-study folders (default: {DEFAULT_OUT_ROOT})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        studies = [load(args.study_a, args.storage_a, args.out_root), load(args.study_b, args.storage_b, args.out_root)]
    except StudyError as err:
        print_error("reports.compare", err)
        return 2
    out = args.out or Path(args.out_root) / f"compare-{args.study_a}-vs-{args.study_b}.png"
    print(compare_png(studies, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
