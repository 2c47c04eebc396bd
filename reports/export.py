"""``python -m reports.export --study S --trial best|N --to hilo|peft|mola``: a config for another trainer.

The formats, and the single-LoRA projection behind ``peft``, are described in ``reports.formats``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilo_core.cli import OneLineParser, print_error

from .formats import FORMATS, export, select_trial
from .load import DEFAULT_OUT_ROOT, StudyError, load, study_folder


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m reports.export", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="study name, as given to search.run --study")
    p.add_argument("--trial", default="best", help="'best' (highest accuracy on the front) or a trial number")
    p.add_argument("--to", required=True, choices=FORMATS, dest="fmt", help="output format")
    p.add_argument("--out", default=None, type=Path,
                   help="output file (a folder for peft); default <out-root>/<study>/export/trial<N>.<fmt>")
    p.add_argument("--max-trainable", type=float, default=None,
                   help="with --trial best: only front members with at most this many trainable params")
    p.add_argument("--base-model", default=None,
                   help="peft: read module paths from this model (HF id or folder); default: Llama layout")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///<out-root>/<study>/study.db)")
    p.add_argument("--out-root", default=DEFAULT_OUT_ROOT, help=f"per-study folders (default: {DEFAULT_OUT_ROOT})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        data = load(args.study, args.storage, args.out_root)
        row = select_trial(data, args.trial, args.max_trainable)
        suffix = {"hilo": ".json", "peft": "-peft", "mola": ".txt"}[args.fmt]
        out = args.out or study_folder(args.study, args.out_root) / "export" / f"trial{row.number}{suffix}"
        path = export(data, row, args.fmt, out, args.base_model)
    except StudyError as err:
        print_error("reports.export", err)
        return 2
    accuracy, trainable = row.value("accuracy"), row.value("trainable")
    print(f"trial {row.number}{f' ({row.seed_name})' if row.seed_name else ''}"
          + (f", accuracy {accuracy:.4f}" if accuracy is not None else "")
          + (f", {trainable:,.0f} trainable params" if trainable is not None else "") + f" -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
