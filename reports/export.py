"""``python -m reports.export --study S --trial best|N --to FORMAT``: a trial's config for another trainer.

Formats: ``hilo`` (JSON), ``mola`` (MoLA/AlphaLoRA commands), ``moe-peft`` (JSON), ``adamole`` (@flag files),
``peft`` (LoraConfig folder; weights too with ``--adapters``). What each trainer accepts, and what is refused,
is in ``reports.formats`` and ``reports.peft_format``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hilo_core.cli import OneLineParser, print_error

from .formats import TrainSettings, collapse, to_hilo, to_moe_peft, to_mola, write_adamole
from .load import DEFAULT_OUT_ROOT, StudyData, StudyError, TrialRow, load, study_folder
from .choice import Choice, choose_trial  # noqa: F401  (re-exported: reports.export.choose_trial)
from .peft_format import (
    PROJECTIONS, adapter_paths, llama_module_paths, model_module_paths, projection_note, write_peft,
)

FORMATS = ("hilo", "peft", "mola", "moe-peft", "adamole")
SUFFIXES = {"hilo": ".json", "peft": "-peft", "mola": "-mola.sh", "moe-peft": "-moe-peft.json", "adamole": "-adamole"}


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m reports.export", description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="study name, as given to search.run --study")
    p.add_argument("--trial", default="best", help="'best' (highest accuracy on the front) or a trial number")
    p.add_argument("--to", required=True, choices=FORMATS, dest="fmt", help="output format")
    p.add_argument("--out", default=None, type=Path,
                   help="output file (a folder for peft and adamole); default <out-root>/<study>/export/trial<N>...")
    p.add_argument("--collapse", action="store_true",
                   help="moe-peft/adamole: write the nearest homogeneous config instead of refusing a heterogeneous one")
    p.add_argument("--projection", choices=PROJECTIONS, default=None,
                   help="peft: map multi-expert layers to one LoRA of the experts' total rank or of the active rank")
    p.add_argument("--adapters", type=Path, default=None,
                   help="peft: a save_adapters folder (python -m search.train writes one) whose weights to export")
    p.add_argument("--max-trainable", type=float, default=None,
                   help="with --trial best: only front members with at most this many trainable params")
    p.add_argument("--base-model", default=None,
                   help="the base model the commands name, and (peft) where module paths are read; default: the study's")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///<out-root>/<study>/study.db)")
    p.add_argument("--out-root", default=DEFAULT_OUT_ROOT, help=f"per-study folders (default: {DEFAULT_OUT_ROOT})")
    return p


def export(data: StudyData, row: TrialRow, args: argparse.Namespace) -> tuple[Path, list[str]]:
    """Write ``row``'s config as ``args.fmt``; returns the main file written and lines to print."""
    config, fmt, name = row.config, args.fmt, f"trial{row.number}"
    out = args.out or study_folder(data.name, args.out_root) / "export" / f"{name}{SUFFIXES[fmt]}"
    if args.collapse and fmt not in ("moe-peft", "adamole"):
        raise StudyError(f"--collapse applies to --to moe-peft or adamole, not {fmt}")
    if (args.projection or args.adapters) and fmt != "peft":
        raise StudyError(f"--projection and --adapters apply to --to peft, not {fmt}")
    settings = TrainSettings.from_study(data, args.base_model)
    notes: list[str] = []
    if args.collapse:
        config, change = collapse(config, fmt)
        notes.append(change)
    if fmt == "peft":
        tensors = None
        if args.adapters is not None:
            paths, tensors = adapter_paths(args.adapters, config)
        elif args.base_model:
            paths = model_module_paths(config, args.base_model)
        else:
            paths = llama_module_paths(config)
        note = projection_note(config, args.projection)
        path = write_peft(config, paths, out, base_model=settings.base_model, projection=args.projection,
                          tensors=tensors)
        notes += [note] if note else []
        notes.append("load with: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
                     f"{settings.base_model!r}), {str(out)!r})" + ("" if tensors is not None else
                                                                    "  (config only: pass --adapters for weights)"))
        return path, notes
    if fmt == "adamole":
        train, _ = write_adamole(config, settings, out)
        notes.append(f"train with: python train.py @{train}; test with: python test.py @{out / 'test.config'}")
        return train, notes
    text = {"hilo": to_hilo, "mola": to_mola, "moe-peft": to_moe_peft}[fmt]
    body = text(config) if fmt == "hilo" else text(config, settings, name=name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)
    if fmt == "moe-peft":
        notes.append(f"train with: python moe_peft.py --base_model {settings.base_model} --config {out}; "
                     "evaluate with the same line plus --evaluate --load_adapter")
    if fmt == "mola":
        notes.append(f"set DATA and TEST at its top, then run it from a MoLA checkout: bash {out}")
    return out, notes


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        data = load(args.study, args.storage, args.out_root)
        choice = choose_trial(data, args.trial, max_trainable=args.max_trainable)
        path, notes = export(data, choice.row, args)
    except StudyError as err:
        print_error("reports.export", err)
        return 2
    row = choice.row
    accuracy, trainable = row.value("accuracy"), row.value("trainable")
    print(f"trial {row.number}{f' ({row.seed_name})' if row.seed_name else ''} [{choice.why}]"
          + (f", accuracy {accuracy:.4f}" if accuracy is not None else "")
          + (f", {trainable:,.0f} trainable params" if trainable is not None else "") + f" -> {path}")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
