"""Interactive Pareto plot (plotly, one self-contained HTML file that works offline).

One marker per completed trial in a single trace (seeds as labelled diamonds, front members outlined);
the front is a separate line-only trace. Hover shows the metrics and the per-layer experts and ranks.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.graph_objects as go

from .load import StudyData, TrialRow, config_cells
from .plots import plotted, skyline


def _hover(row: TrialRow) -> str:
    cells = config_cells(row.config, grouped=True)
    lines = [f"<b>trial {row.number}</b>" + (f" (seed {html.escape(row.seed_name)})" if row.seed_name else ""),
             ("on the plain Pareto front" if row.on_front else "dominated")
             + ("; on the noise-aware front" if row.on_noise_front else "")]
    ci = row.accuracy_interval()
    if ci is not None:
        lines.append(f"validation accuracy 95% Wilson interval: [{ci[0]:.3f}, {ci[1]:.3f}] ({len(row.records)} questions)")
    for name in ("accuracy", "trainable_params", "active_params", "train_seconds"):
        value = row.value(name)
        if value is not None:
            lines.append(f"{name}: {value:.4g}" if name in ("accuracy", "train_seconds") else f"{name}: {value:,.0f}")
    if not row.feasible:
        lines.append("infeasible (violates the budget constraint)")
    if row.config is not None:
        lines += [f"experts/layer: {cells['experts']}", f"ranks/layer: {cells['ranks']}",
                  f"routers: {cells['routers']}"]
    return "<br>".join(lines)


def _error_bars(rows: list[TrialRow]) -> dict:
    """Asymmetric Wilson 95% intervals of each trial's validation accuracy (0 where a trial has no records)."""
    plus, minus = [], []
    for r in rows:
        ci, acc = r.accuracy_interval(), r.value("accuracy")
        plus.append(max(ci[1] - acc, 0.0) if ci else 0.0)
        minus.append(max(acc - ci[0], 0.0) if ci else 0.0)
    return dict(type="data", symmetric=False, array=plus, arrayminus=minus, thickness=1, width=2,
                color="rgba(120,120,120,0.5)")


def pareto_figure(data: StudyData) -> go.Figure:
    rows = plotted(data)
    active = [r.value("active") for r in rows]
    marker = dict(
        size=[13 if r.is_seed else 9 for r in rows],
        symbol=["diamond" if r.is_seed else "circle" for r in rows],
        line=dict(color=["crimson" if r.on_front else "black" for r in rows],
                  width=[3 if r.on_front else 0.5 for r in rows]),
    )
    if all(a is not None for a in active):
        marker.update(color=active, colorscale="Viridis", showscale=True,
                      colorbar=dict(title="active params"))
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[r.value("trainable") for r in rows], y=[r.value("accuracy") for r in rows], name="trials",
        mode="markers+text", text=[r.seed_name or "" for r in rows], textposition="top right",
        hovertext=[_hover(r) for r in rows], hoverinfo="text", marker=marker, error_y=_error_bars(rows),
    ))
    noisy = skyline([r for r in rows if r.on_noise_front])
    fig.add_trace(go.Scatter(x=[r.value("trainable") for r in noisy], y=[r.value("accuracy") for r in noisy],
                             mode="lines+markers", name="noise-aware front (significant gains only)",
                             hoverinfo="skip", line=dict(color="darkorange", shape="hv"),
                             marker=dict(size=16, symbol="circle-open", color="darkorange")))
    front = [r for r in rows if r.on_front]
    steps = skyline(front)
    fig.add_trace(go.Scatter(x=[r.value("trainable") for r in steps], y=[r.value("accuracy") for r in steps],
                             mode="lines", name="plain front (point estimates), accuracy vs trainable",
                             hoverinfo="skip",
                             line=dict(color="crimson", dash="dash", shape="hv")))
    xs = [r.value("trainable") for r in rows]
    fig.update_layout(
        title=f"{data.name}: {len(rows)} completed trials, {len(front)} on the plain Pareto front, "
              f"{len(data.noise_front)} configs on the noise-aware front "
              "(diamonds: seeds; red outline: plain front over all objectives; orange: noise-aware front)",
        xaxis=dict(title="trainable parameters",
                   type="log" if xs and min(xs) > 0 and max(xs) / min(xs) > 20 else "linear"),
        yaxis=dict(title="accuracy"), template="plotly_white", hoverlabel=dict(align="left"),
        legend=dict(orientation="h", x=0.0, y=1.02, yanchor="bottom"),
    )
    return fig


def pareto_html(data: StudyData, path: Path) -> Path:
    """Write the figure with plotly.js inlined (``include_plotlyjs=True``): no network needed to view it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pareto_figure(data).write_html(path, include_plotlyjs=True, full_html=True, div_id="pareto")
    return path
