"""The report's figures, rendered to PNG bytes with matplotlib's file-only backend.

Every plot has labelled axes with units and a legend; rates that span decades go on a
log axis. Figures are returned as bytes so the report writes all its files at once.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Series:
    """One line or point cloud of a plot."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    style: Mapping[str, object] = field(default_factory=dict)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    return buffer.getvalue()


@dataclass
class Axes:
    """What one panel shows: its series and how its axes are labelled and scaled."""

    series: Sequence[Series]
    xlabel: str
    ylabel: str
    title: str = ""
    xlog: bool = False
    ylog: bool = False
    ytop: float | None = None  # clip the y axis here (points above it stay in the JSON)
    marks: Sequence[tuple[float, float, str]] = ()  # (x, y, text) annotations


def plot(panels: Sequence[Axes], width: float = 6.4, height: float = 4.2) -> bytes:
    """Line plots side by side (one per panel), sharing nothing but the figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for s in panel.series:
            ax.plot(s.x, s.y, label=s.label, **{"marker": "o", "ms": 4, **s.style})
        for x, y, text in panel.marks:
            ax.annotate(
                text, (x, y), xytext=(12, 18), textcoords="offset points",
                arrowprops={"arrowstyle": "->", "color": "0.3"}, fontsize="small",
            )
        if panel.xlog:
            ax.set_xscale("log")
        if panel.ylog:
            ax.set_yscale("log")
        if panel.ytop is not None:
            ax.set_ylim(top=min(ax.get_ylim()[1], panel.ytop))
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.title:
            ax.set_title(panel.title)
        ax.grid(True, which="both", alpha=0.3)
        if any(s.label for s in panel.series):
            ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def bars(
    labels: Sequence[str], groups: Mapping[str, Sequence[float]], ylabel: str, title: str = "", log: bool = False
) -> bytes:
    """Grouped bars: one group per label, one bar per entry of `groups`."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.75 * len(labels) * max(1, len(groups))), 4.2))
    width = 0.8 / max(1, len(groups))
    positions = np.arange(len(labels))
    for i, (name, values) in enumerate(groups.items()):
        ax.bar(positions + (i - (len(groups) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(positions, labels, rotation=30, ha="right")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def scatter(series: Sequence[Series], title: str) -> bytes:
    """A 2-D embedding: one colour per series, no axis units (t-SNE has none)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    for s in series:
        ax.scatter(s.x, s.y, s=6, alpha=0.6, label=s.label, **s.style)
    ax.set_xlabel("t-SNE dimension 1 (no unit)")
    ax.set_ylabel("t-SNE dimension 2 (no unit)")
    ax.set_title(title)
    ax.legend(fontsize="small", markerscale=3)
    fig.tight_layout()
    return _png(fig)


def image_grid(rows: Sequence[tuple[str, Sequence[np.ndarray]]]) -> bytes:
    """Rows of images, each row labelled on its left: originals above reconstructions.

    Pixels are shown as they are (no interpolation, grey colour map for one channel), so
    the grid shows what a decoder really returns."""
    plt = _pyplot()
    columns = max(len(images) for _, images in rows)
    cell = 0.9 if rows[0][1][0].shape[0] <= 32 else 1.4
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.6 + cell * columns, 0.2 + cell * len(rows)), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                image = np.asarray(images[c])
                grey = image.ndim == 2 or image.shape[-1] == 1
                ax.imshow(image.squeeze(-1) if image.ndim == 3 and grey else image,
                          cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize="small")
    fig.tight_layout(pad=0.3)
    return _png(fig)
