"""Text outputs: ``trials.csv`` (every trial, one row) and ``summary.md`` (what a reader needs first)."""

from __future__ import annotations

import csv
from pathlib import Path

from spaces.seeds import unequal_totals_note

from .load import StudyData, TrialRow, config_cells

CSV_FIELDS = ("number", "state", "seed_name", "train_seed", "replicate_of", "on_front", "on_noise_front", "feasible",
              "accuracy", "accuracy_low", "accuracy_high", "questions", "trainable_params", "active_params",
              "train_seconds", "experts", "ranks", "routers", "failure", "config")


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
        rung = ["highest_rung"] if data.rungs else []  # a scheduled search: the rung each trial's run reached
        writer = csv.DictWriter(f, fieldnames=[*CSV_FIELDS, *rung, *extra])
        writer.writeheader()
        for r in data.rows:
            writer.writerow({
                **({"highest_rung": data.reached.get(r.number, "")} if rung else {}),
                "number": r.number, "state": r.state, "seed_name": r.seed_name or "", "on_front": int(r.on_front),
                "on_noise_front": int(r.on_noise_front), "train_seed": "" if r.train_seed is None else r.train_seed,
                "replicate_of": "" if r.replicate_of is None else r.replicate_of,
                "questions": len(r.records) if r.records is not None else "",
                **dict(zip(("accuracy_low", "accuracy_high"), r.accuracy_interval() or ("", ""))),
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


def _interval(data: StudyData, row: TrialRow) -> str:
    found = data.config_interval(row)
    if found is None:
        return "-"
    ci, seeds = found
    flip = data.noise is not None and data.noise.signal == "loss"
    est, lo, hi = (-ci.estimate, -ci.high, -ci.low) if flip else (ci.estimate, ci.low, ci.high)
    return f"{est:.3f} [{lo:.3f}, {hi:.3f}] ({seeds} seed{'s' if seeds > 1 else ''})"


def _noise_front_section(data: StudyData) -> list[str]:
    if data.noise is None or not data.noise.candidates:
        return ["No trial stored per-question records (a study from an older hilo): no noise-aware front."]
    signal, sv = data.noise.signal, data.noise.seed_variance
    covers = (f"validation questions and training seeds (seed variance pooled over {sv.configs} replicated configs,"
              f" {sv.df} df)" if sv.known else "validation questions only (no config was trained twice yet)")
    head = ["trial", "seed", f"{signal} mean [95% CI]", *data.noise.axes, "experts/layer", "ranks/layer", "routers"]
    lines = [f"A larger config is on it only if its {signal} is significantly higher (paired on the same "
             f"questions, one-sided alpha {data.attrs.get('alpha', 0.05)}) than that of every config no larger on "
             f"{' and '.join(data.noise.axes)}. Intervals cover {covers}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(data.noise_front, key=lambda r: (r.value("trainable") or 0)):
        cells = config_cells(r.config, grouped=True)
        lines.append("| " + " | ".join([str(r.number), r.seed_name or "", _interval(data, r),
                                        *(_fmt(a, r.value(a)) for a in data.noise.axes), f"`{cells['experts']}`",
                                        f"`{cells['ranks']}`", f"`{cells['routers']}`"]) + " |")
    return lines


def _seeds_section(data: StudyData) -> list[str]:
    """Per seed rule: the confirmed verdict (test split, fresh seeds), or a plain statement that there is none."""
    conf = data.confirmation
    if conf is None:
        return ["Not confirmed: no claim is made against the seed rules. Validation differences of a few questions",
                "on one training seed are not evidence; run `python -m search.confirm --study " + data.name + "`."]
    lines = [f"Confirmation: every config below retrained with {conf.settings.get('settings', {}).get('seeds', '?')}"
             f" fresh seeds and scored on the test split; intervals cover {conf.covers()}.", "",
             "| config | role | trial | trainable | active | seeds | validation acc | test acc [95% CI] |",
             "|---|---|---|---|---|---|---|---|"]
    for r in conf.table():
        lines.append(f"| {r['label']} | {r['role']} | {r['trial']} | {r['trainable']:,.0f} | {r['active']:,.0f} | "
                     f"{r['seeds']} | {r['val']:.3f} | {r['test']:.3f} [{r['low']:.3f}, {r['high']:.3f}] "
                     f"(n={r['questions']}) |")
    lines += ["", "Per seed rule (non-inferior = the lower end of the paired 95% interval of the test-accuracy "
              "difference is above -2 points):", ""]
    lines += [f"- {v.sentence()}" for v in conf.verdicts()]
    winners = conf.beats_every_rule()
    lines += ["", "Configs better than every confirmed rule with confidence: "
              + (", ".join(f"trial {n}" for n in winners) if winners else "none.")]
    return lines


def _rungs_section(data: StudyData) -> list[str]:
    """Successive halving: per rung its fidelity, configs, runs, promotions and compute; each trial's top rung."""
    sched = data.attrs.get("schedule") or {}
    lines = [f"Scheduler `{sched.get('kind')}`, eta {sched.get('eta')}: the top 1/eta of each rung (noise-aware "
             "sorting, then crowding distance) continued from its checkpoint to the next. The noise-aware front above "
             f"is read at rung {max((r.rung for r in data.rungs if r.runs), default=0)}.", "",
             "| rung | steps | questions | configs | runs | promoted | compute (s) |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.rung} | {r.steps} | {r.questions} | {r.configs} | {r.runs} | {r.promoted} | {r.seconds:.0f} |"
              for r in data.rungs]
    by_rung: dict[int, list[int]] = {}
    for number, rung in sorted(data.reached.items()):
        by_rung.setdefault(rung, []).append(number)
    lines += ["", "Highest rung reached: " + "; ".join(f"rung {k}: trials {', '.join(map(str, v))}"
                                                       for k, v in sorted(by_rung.items()))]
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
              "", f"## Noise-aware front ({len(data.noise_front)} configs)", ""]
    lines += _noise_front_section(data)
    if data.rungs:
        lines += ["", "## Successive halving", ""] + _rungs_section(data)
    lines += ["", f"## Plain Pareto front ({len(front)} trials, point estimates: differences may be noise)", ""]
    lines += _table(data, front)
    lines += ["", "## Seed rules: confirmed verdicts", ""] + _seeds_section(data)
    note = unequal_totals_note(int(attrs["n_layers"])) if "n_layers" in attrs and any(
        (r.seed_name or "").startswith("mola-") for r in data.rows) else None
    if note:
        lines += ["", note[0].upper() + note[1:] + "."]
    failed = [r for r in data.rows if r.state in ("FAIL", "PRUNED")]
    if failed:
        lines += ["", "## Failed and pruned trials", ""]
        lines += [f"- {r.number} ({r.state.lower()}): {r.failure or 'no reason recorded'}" for r in failed]
    lines += ["", "## Files", ""] + [f"- [{f}]({f})" for f in files]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
