"""Static figures (matplotlib, PNG): the Pareto plot, the per-layer heatmap, hypervolume, two-study compare.

Every figure has a fixed size in pixels (``SIZES``) so the files are predictable; nothing uses a browser.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .hypervolume import REFERENCE, hypervolume_history  # noqa: E402
from .load import StudyData, TrialRow  # noqa: E402

DPI = 100
SIZES = {"pareto": (1000, 650), "layers": (1200, 600), "hypervolume": (800, 500), "compare": (1000, 650)}


def _figure(kind: str, **kwargs):
    width, height = SIZES[kind]
    return plt.subplots(figsize=(width / DPI, height / DPI), dpi=DPI, **kwargs)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plotted(data: StudyData) -> list[TrialRow]:
    """Completed trials that have both an accuracy and a trainable count to place on the plot."""
    return [r for r in data.completed if r.value("accuracy") is not None and r.value("trainable") is not None]


def skyline(rows: list[TrialRow]) -> list[TrialRow]:
    """The accuracy-vs-trainable staircase: each next trial costs more and scores strictly higher.

    A front over three objectives zigzags when drawn in two; its staircase in this view does not.
    """
    out: list[TrialRow] = []
    for r in sorted(rows, key=lambda r: (r.value("trainable"), -r.value("accuracy"))):
        if not out or r.value("accuracy") > out[-1].value("accuracy"):
            out.append(r)
    return out


def _front_line(ax, rows: list[TrialRow], **style) -> None:
    steps = skyline(rows)
    ax.plot([r.value("trainable") for r in steps], [r.value("accuracy") for r in steps], drawstyle="steps-post",
            **style)


def _log_if_wide(ax, values: list[float]) -> None:
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")


def pareto_png(data: StudyData, path: Path) -> Path:
    """Accuracy vs trainable parameters, coloured by active parameters; seeds labelled, front outlined."""
    rows = plotted(data)
    fig, ax = _figure("pareto")
    active = [r.value("active") for r in rows]
    known = [a for a in active if a is not None]
    norm = matplotlib.colors.Normalize(min(known), max(known)) if known else None
    colours = [plt.cm.viridis(norm(a)) if a is not None and norm else (0.6, 0.6, 0.6, 1.0) for a in active]
    for row, colour in zip(rows, colours):
        ci = row.accuracy_interval()
        if ci is not None:  # Wilson 95% interval of this run's validation accuracy (question sampling)
            acc = row.value("accuracy")
            ax.errorbar(row.value("trainable"), acc, yerr=[[max(acc - ci[0], 0)], [max(ci[1] - acc, 0)]],
                        color=colour, alpha=0.35, linewidth=1, capsize=2, zorder=1)
        ax.scatter(row.value("trainable"), row.value("accuracy"), s=90 if row.is_seed else 45, color=colour,
                   marker="D" if row.is_seed else "o", zorder=3,
                   edgecolors="crimson" if row.on_front else "black", linewidths=2.0 if row.on_front else 0.5)
        if row.on_noise_front:
            ax.scatter(row.value("trainable"), row.value("accuracy"), s=260, facecolors="none",
                       edgecolors="darkorange", linewidths=2.0, zorder=4)
        if row.is_seed:
            ax.annotate(row.seed_name, (row.value("trainable"), row.value("accuracy")), fontsize=8,
                        xytext=(6, 6), textcoords="offset points")
    _front_line(ax, [r for r in rows if r.on_front], color="crimson", linestyle="--", linewidth=1.2,
                zorder=2, label="plain front (point estimates), accuracy vs trainable")
    _front_line(ax, [r for r in rows if r.on_noise_front], color="darkorange", linestyle="-", linewidth=1.6,
                zorder=2, label="noise-aware front (significant gains only)")
    if norm:
        fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax,
                     label="active parameters per token")
    ax.scatter([], [], marker="D", color="white", edgecolors="black", label="seed (rule-based)")
    ax.scatter([], [], marker="o", color="white", edgecolors="crimson", linewidths=2.0, label="on the plain Pareto front (all objectives)")
    ax.scatter([], [], marker="o", s=160, color="none", edgecolors="darkorange", linewidths=2.0,
               label="on the noise-aware front")
    ax.errorbar([], [], yerr=[], color="grey", alpha=0.5, label="95% Wilson interval (validation questions)")
    _log_if_wide(ax, [r.value("trainable") for r in rows])
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{data.name}: {len(rows)} completed trials, {len(data.front)} on the plain front,\n"
                 f"{len(data.noise_front)} configs on the noise-aware front "
                 f"({', '.join(f'{n} {d[:3]}' for n, d in zip(data.objectives, data.directions))})")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def layers_png(data: StudyData, path: Path) -> Path:
    """Heatmaps, one row per front member: experts per layer (left) and mean expert rank (right)."""
    front = sorted((r for r in data.front if r.config is not None), key=lambda r: -(r.value("accuracy") or 0.0))
    fig, axes = _figure("layers", ncols=2)
    if not front:
        for ax in axes:
            ax.text(0.5, 0.5, "no front member carries a config", ha="center", va="center")
            ax.set_axis_off()
        return _save(fig, path)
    experts = np.array([[s.n_experts if not s.disabled else 0 for s in r.config.layers] for r in front])
    ranks = np.array([[s.total_rank / s.n_experts if not s.disabled else 0 for s in r.config.layers]
                      for r in front])
    labels = [f"{r.label}  acc {r.value('accuracy'):.3f}" for r in front]
    for ax, grid, title, cmap in ((axes[0], experts, "experts per layer", "Blues"),
                                  (axes[1], ranks, "mean expert rank per layer", "Oranges")):
        image = ax.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_title(title)
        ax.set_xlabel("layer (input side first); a 0 cell = adapter off")
        if grid.shape[1] <= 16:
            ax.set_xticks(range(grid.shape[1]))
        ax.set_yticks(range(len(front)), labels if ax is axes[0] else [""] * len(front), fontsize=7)
        if grid.shape[1] <= 16 and grid.shape[0] <= 30:
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * grid.max() else "black")
    fig.suptitle(f"{data.name}: per-layer layout of the {len(front)} front members (best accuracy first)")
    fig.tight_layout()
    return _save(fig, path)


def hypervolume_png(data: StudyData, path: Path) -> Path:
    """Hypervolume of the front after each completed trial (normalised box; see reports.hypervolume)."""
    numbers, values = hypervolume_history(data)
    fig, ax = _figure("hypervolume")
    ax.plot(numbers, values, marker="o", markersize=3, drawstyle="steps-post")
    seeds = [(n, v) for n, v, r in zip(numbers, values, data.completed) if r.is_seed]
    if seeds:
        ax.scatter(*zip(*seeds), marker="D", color="black", zorder=3, label="seed trial")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"hypervolume (max {REFERENCE ** len(data.objectives):.3g})")
    ax.set_title(f"{data.name}: hypervolume over trials (objectives scaled to their range, reference {REFERENCE})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def compare_png(studies: list[StudyData], path: Path) -> Path:
    """The fronts of several studies on one accuracy-vs-trainable plot; all completed trials faint."""
    fig, ax = _figure("compare")
    xs: list[float] = []
    for data, colour in zip(studies, plt.cm.tab10.colors):
        rows = plotted(data)
        xs += [r.value("trainable") for r in rows]
        ax.scatter([r.value("trainable") for r in rows], [r.value("accuracy") for r in rows], color=colour,
                   alpha=0.25, s=20)
        front = [r for r in rows if r.on_front]
        ax.scatter([r.value("trainable") for r in front], [r.value("accuracy") for r in front], color=colour,
                   s=50, edgecolors="black", zorder=3)
        _front_line(ax, front, color=colour, linewidth=1.5,
                    label=f"{data.name}: {len(front)} on front of {len(rows)}")
    _log_if_wide(ax, xs)
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel("accuracy")
    ax.set_title("Pareto fronts compared (faint: every completed trial)")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
