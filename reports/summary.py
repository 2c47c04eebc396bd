"""Text outputs: ``trials.csv`` (every trial, one row) and ``summary.md`` (what a reader needs first)."""

from __future__ import annotations

import csv
from pathlib import Path

from .load import StudyData, TrialRow, config_cells

CSV_FIELDS = ("number", "state", "seed_name", "on_front", "feasible", "accuracy", "trainable_params",
              "active_params", "train_seconds", "experts", "ranks", "routers", "failure", "config")


def _fmt(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "accuracy":
        return f"{value:.4f}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"


def trials_csv(data: StudyData, path: Path) -> Path:
    """Every trial, failed and pruned included, with its metrics and compact per-layer layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = sorted({k for r in data.rows for k in r.metrics} - set(CSV_FIELDS) - set(data.objectives))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*CSV_FIELDS, *extra])
        writer.writeheader()
        for r in data.rows:
            writer.writerow({
                "number": r.number, "state": r.state, "seed_name": r.seed_name or "", "on_front": int(r.on_front),
                "feasible": int(r.feasible), "failure": r.failure or "",
                "config": r.config.to_json() if r.config else "", **config_cells(r.config),
                **{k: r.value(k) if r.value(k) is not None else "" for k in
                   ("accuracy", "trainable_params", "active_params", "train_seconds", *extra)},
            })
    return path


def _table(data: StudyData, rows: list[TrialRow]) -> list[str]:
    head = ["trial", "seed", *data.objectives, "experts/layer", "ranks/layer", "routers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = config_cells(r.config, grouped=True)
        lines.append("| " + " | ".join([str(r.number), r.seed_name or "", *(_fmt(n, r.value(n)) for n in data.objectives),
                                        f"`{cells['experts']}`", f"`{cells['ranks']}`", f"`{cells['routers']}`"]) + " |")
    return lines


def _best(data: StudyData, name: str) -> TrialRow:
    best = data.completed[0]
    for r in data.completed[1:]:
        if data.better(name, r.value(name), best.value(name)):
            best = r
    return best


def _seeds_section(data: StudyData) -> list[str]:
    seeds = [r for r in data.completed if r.is_seed]
    searched = [r for r in data.completed if not r.is_seed]
    if not seeds:
        return ["No seed trials in this study."]
    lines = [f"{len(seeds)} seeds, {len(searched)} searched trials completed.", "",
             "| seed | trial | " + " | ".join(data.objectives) + " | on front | dominated by searched trials |",
             "|---|---|" + "---|" * len(data.objectives) + "---|---|"]
    beaten = 0
    for s in seeds:
        by = [r.number for r in searched if data.dominates(r, s)]
        beaten += bool(by)
        lines.append(f"| {s.seed_name} | {s.number} | " + " | ".join(_fmt(n, s.value(n)) for n in data.objectives)
                     + f" | {'yes' if s.on_front else 'no'} | {', '.join(map(str, by[:8])) or 'none'}"
                     + (" ..." if len(by) > 8 else "") + " |")
    lines += ["", f"The searched trials dominate {beaten} of {len(seeds)} seeds."]
    return lines


def summary_md(data: StudyData, path: Path, files: list[str]) -> Path:
    """The front table, the best trial per objective, seeds against searched trials, and the command."""
    counts = data.counts()
    attrs = data.attrs
    first = data.objectives[0]
    front = sorted(data.front, key=lambda r: r.value(first), reverse=data.directions[0] == "maximize")
    lines = [f"# Study `{data.name}`", ""]
    lines += [f"- {key}: `{attrs[key]}`" for key in ("space", "task", "model", "n_layers") if key in attrs]
    lines += ["- objectives: " + ", ".join(f"{n} ({d})" for n, d in zip(data.objectives, data.directions)),
              "- trials: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())),
              "", "Produced by:", "", "```", str(attrs.get("command", "(the study records no command)")), "```",
              "", f"## Pareto front ({len(front)} trials)", ""]
    lines += _table(data, front)
    lines += ["", "## Best per objective", "", "| objective | trial | seed | value |", "|---|---|---|---|"]
    for name in data.objectives:
        b = _best(data, name)
        lines.append(f"| {name} | {b.number} | {b.seed_name or ''} | {_fmt(name, b.value(name))} |")
    lines += ["", "## Seeds vs searched", ""] + _seeds_section(data)
    failed = [r for r in data.rows if r.state in ("FAIL", "PRUNED")]
    if failed:
        lines += ["", "## Failed and pruned trials", ""]
        lines += [f"- {r.number} ({r.state.lower()}): {r.failure or 'no reason recorded'}" for r in failed]
    lines += ["", "## Files", ""] + [f"- [{f}]({f})" for f in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
