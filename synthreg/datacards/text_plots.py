"""PNG plots of the text quality monitor: the style map, label bars and length histograms.

The style map places sampled texts by a 2-D t-SNE of their sentence embeddings, coloured by
label; with two versions (``registry diff``), both share one map and differ by marker. Like
:mod:`synthreg.datacards.plots`: a bare Matplotlib Figure (no pyplot), no ``Software`` entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MapSide", "draw_label_bars", "draw_lengths", "draw_style_map", "plot_names"]

FIGSIZE = (6.5, 4.2)
DPI = 100
_MARKERS = ("o", "^")
_FILLS = (True, False)
_COLORS = "tab10"


@dataclass(frozen=True)
class MapSide:
    """One version's points on a style map: its name, 2-D coordinates and per-point labels."""

    name: str
    xy: np.ndarray
    labels: Sequence[str] | None


def plot_names(key: str) -> dict[str, str]:
    """File names of one text column's plots (``key`` is ``table.column``)."""
    return {
        "style_map": f"{key}.style_map.png",
        "labels": f"{key}.text_labels.png",
        "lengths": f"{key}.text_lengths.png",
    }


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    return fig, fig.subplots()


def _save(fig: Any, ax: Any, path: Path, title: str) -> Path:
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def draw_style_map(sides: Sequence[MapSide], path: Path, title: str) -> Path:
    """Scatter the sides' points coloured by label (one colour per label across sides)."""
    import matplotlib

    fig, ax = _figure()
    names = sorted({lab for s in sides for lab in (s.labels or [])})
    cmap = matplotlib.colormaps[_COLORS]
    color = {lab: cmap(i % cmap.N) for i, lab in enumerate(names)}
    for i, side in enumerate(sides):
        labels = np.array(side.labels if side.labels is not None else [""] * len(side.xy), dtype=object)
        for lab in sorted(set(side.labels)) if side.labels is not None else [None]:
            mask = np.ones(len(side.xy), bool) if lab is None else labels == lab
            if not mask.any():
                continue
            c = "#4C72B0" if lab is None else color[lab]
            name = side.name if lab is None else (f"{lab} ({side.name})" if len(sides) > 1 else lab)
            ax.scatter(
                side.xy[mask, 0],
                side.xy[mask, 1],
                s=14,
                marker=_MARKERS[i % 2],
                facecolors=c if _FILLS[i % 2] else "none",
                edgecolors=c,
                linewidths=0.8,
                alpha=0.8,
                label=name,
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1 (sentence embeddings)")
    ax.set_ylabel("t-SNE 2")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", markerscale=1.2, frameon=False, ncol=2 if len(names) > 6 else 1)
    return _save(fig, ax, path, title)


def draw_label_bars(counts: Sequence[tuple[str, dict[str, int]]], path: Path, title: str) -> Path:
    """Label shares per side (one bar group per label)."""
    fig, ax = _figure()
    names = sorted({lab for _, c in counts for lab in c})
    width = 0.8 / max(1, len(counts))
    x = np.arange(len(names))
    for i, (side, c) in enumerate(counts):
        total = sum(c.values()) or 1
        shares = [c.get(n, 0) / total for n in names]
        ax.bar(x + i * width, shares, width, label=side, color="#DD8452" if i == 0 else "#4C72B0")
    ax.set_xticks(x + width * (len(counts) - 1) / 2, [n if len(n) <= 16 else n[:15] + "…" for n in names])
    ax.set_ylabel("share of sampled rows")
    if len(counts) > 1:
        ax.legend(fontsize=8, frameon=False)
    return _save(fig, ax, path, title)


def draw_lengths(lengths: Sequence[tuple[str, np.ndarray]], path: Path, title: str) -> Path:
    """Character-length histograms, one outline per side on shared bins."""
    fig, ax = _figure()
    every = np.concatenate([v for _, v in lengths]) if lengths else np.zeros(0)
    high = float(every.max()) if every.size else 1.0
    bins = np.linspace(0, max(high, 1.0), 31)
    for i, (side, values) in enumerate(lengths):
        ax.hist(
            values,
            bins=bins,
            histtype="stepfilled" if i == 0 else "step",
            alpha=0.6 if i == 0 else 1.0,
            color="#4C72B0" if i == 0 else "#C44E52",
            linewidth=1.2,
            label=side,
        )
    ax.set_xlabel("characters")
    ax.set_ylabel("sampled rows")
    if len(lengths) > 1:
        ax.legend(fontsize=8, frameon=False)
    return _save(fig, ax, path, title)
