"""PNG charts for scenario reports, tutorials and the demo (matplotlib, headless).

One small vocabulary shared by everything that draws: a chart is a column of :class:`Panel`
rows sharing the x axis; a panel holds :class:`Series` (lines or steps), horizontal reference
lines and vertical :class:`Marker` events (a liquidation, a ban). Values are plain floats: charts
are pictures of exact numbers, never inputs to money arithmetic.

matplotlib is imported on first use (it costs ~0.3 s), with the Agg backend so no display is
needed; the PNG carries no timestamp, so the same data gives the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True, slots=True)
class Series:
    """One line of ``x``/``y`` values; ``kind="step"`` holds each value until the next."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    kind: Literal["line", "step", "scatter", "bar"] = "line"
    color: str | None = None
    dashed: bool = False
    width: float | None = None  # bar width in x units (None: matplotlib's default, 0.8)


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at ``x`` (an event), labelled in the legend once per label."""

    x: float
    label: str = ""
    color: str = "#d62728"


@dataclass(frozen=True, slots=True)
class Panel:
    """One row of a chart."""

    title: str
    ylabel: str = ""
    series: Sequence[Series] = ()
    markers: Sequence[Marker] = ()
    hlines: Sequence[tuple[float, str]] = ()  # (y, label)
    log_y: bool = False


@dataclass(frozen=True, slots=True)
class Chart:
    """A titled column of panels sharing the x axis."""

    title: str
    panels: Sequence[Panel]
    xlabel: str = "simulated time (minutes)"
    width_in: float = 10.0
    panel_height_in: float = 2.6
    notes: Sequence[str] = field(default_factory=tuple)


def save_chart(chart: Chart, path: str | Path) -> Path:
    """Draw ``chart`` to ``path`` (PNG, parent directories created); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = max(1, len(chart.panels))
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(chart.width_in, chart.panel_height_in * rows + 0.8),
        sharex=True,
        squeeze=False,
    )
    try:
        for ax, panel in zip(axes[:, 0], chart.panels, strict=False):
            _draw_panel(ax, panel)
        axes[-1, 0].set_xlabel(chart.xlabel)
        fig.suptitle(chart.title, fontsize=12)
        if chart.notes:
            fig.text(0.01, 0.005, "  ".join(chart.notes), fontsize=7, color="#555555")
        fig.tight_layout()
        fig.savefig(out, dpi=90, metadata={"Software": None})
    finally:
        plt.close(fig)
    return out


def _draw_panel(ax: Any, panel: Panel) -> None:
    for i, s in enumerate(panel.series):
        color = s.color or COLORS[i % len(COLORS)]
        style = "--" if s.dashed else "-"
        if s.kind == "step":
            ax.step(s.x, s.y, where="post", label=s.label, color=color, linestyle=style, lw=1.3)
        elif s.kind == "scatter":
            ax.scatter(s.x, s.y, label=s.label, color=color, s=14, zorder=3)
        elif s.kind == "bar":
            ax.bar(s.x, s.y, s.width or 0.8, label=s.label, color=color, alpha=0.8)
        else:
            ax.plot(s.x, s.y, label=s.label, color=color, linestyle=style, lw=1.3)
    for y, label in panel.hlines:
        ax.axhline(y, color="#555555", linestyle=":", lw=1, label=label or None)
    seen: set[str] = set()
    for m in panel.markers:
        shown = m.label if m.label and m.label not in seen else None
        if m.label:
            seen.add(m.label)
        ax.axvline(m.x, color=m.color, alpha=0.45, lw=1, label=shown)
    if panel.log_y:
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize=10, loc="left")
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
