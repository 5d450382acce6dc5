"""Per-table PNG plots for a DataCard: label balance, numeric histograms, category shares.

Plots read only the columns they draw, from a deterministic sample of at most
``SAMPLE_ROWS`` rows, so they cost the same on 10K and 10M rows, and the same files
give byte-identical PNGs. Matplotlib is imported inside the drawing functions
and used without pyplot (no global figure state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.datacards.pii import sample_rows
from synthreg.generators.spec import Column, Spec

__all__ = ["SAMPLE_ROWS", "PlannedPlot", "plan_plots", "table_plots"]

#: At most this many rows are read per table.
SAMPLE_ROWS = 200_000
#: Categories drawn one by one; the rest are summed into "(other)".
MAX_CATEGORIES = 15
FIGSIZE = (6.0, 3.5)
DPI = 100
_COLOR = "#4C72B0"
_LABEL_COLOR = "#DD8452"


@dataclass(frozen=True)
class PlannedPlot:
    """One plot: which column, what kind (``label``, ``histogram``, ``time``, ``shares``)."""

    table: str
    column: str
    kind: str

    @property
    def filename(self) -> str:
        """``<table>.<column>.png``."""
        return f"{self.table}.{self.column}.png"


def _is_key(spec: Spec, table: str, name: str, col: Column) -> bool:
    sequence = col.distribution is not None and col.distribution.kind == "sequence"
    return name == spec.tables[table].primary_key or bool(col.foreign_key) or col.unique or sequence


def _kind(col: Column) -> str | None:
    if col.type in ("int", "float"):
        return "histogram"
    if col.type in ("datetime", "date"):
        return "time"
    if col.type in ("category", "bool"):
        return "shares"
    return None  # text and uuid: too many distinct values to draw


def plan_plots(spec: Spec, table: str, max_per_table: int = 8) -> list[PlannedPlot]:
    """The plots :func:`table_plots` draws for ``table``: label columns first, keys skipped."""
    columns = spec.tables[table].columns
    labels = [PlannedPlot(table, n, "label") for n, c in columns.items() if c.label and _kind(c)]
    others = [
        PlannedPlot(table, n, kind)
        for n, c in columns.items()
        if not c.label and not _is_key(spec, table, n, c) and (kind := _kind(c))
    ]
    return (labels + others)[:max_per_table]


# ---------------------------------------------------------------- data


def _shares(values: pa.ChunkedArray, order: list[str]) -> tuple[list[str], np.ndarray]:
    """Category labels and their shares of non-null values, declared order first."""
    if isinstance(values.type, pa.DictionaryType):
        values = values.cast(values.type.value_type)
    counts = {str(v["values"]): int(v["counts"]) for v in pc.value_counts(values.drop_null()).to_pylist()}
    known = [c for c in order if c in counts]
    rest = sorted((c for c in counts if c not in known), key=lambda c: (-counts[c], c))
    names = known + rest
    if len(names) > MAX_CATEGORIES:
        shown = sorted(names, key=lambda c: (-counts[c], names.index(c)))[: MAX_CATEGORIES - 1]
        names = [c for c in names if c in shown]
        counts["(other)"] = sum(v for c, v in counts.items() if c not in shown)
        names.append("(other)")
    total = sum(counts[c] for c in names) or 1
    return names, np.array([counts[c] / total for c in names])


def _null_note(values: pa.ChunkedArray) -> str:
    share = values.null_count / len(values) if len(values) else 0.0
    return f" ({share:.1%} null)" if share else ""


def _order(col: Column) -> list[str]:
    return ["False", "True"] if col.type == "bool" else col.categories


# ---------------------------------------------------------------- drawing
#
# Speed matters here (a create draws these for every version), so the figures are built
# by hand: a bare Figure on an Agg canvas (no pyplot), margins computed from the few
# labels that need room (no tight_layout, which lays every tick out twice), histograms
# counted with NumPy and drawn as one collection, and no mathtext.

#: Room around the drawing, like tight_layout's default pad (1.08 font sizes), in points.
_PAD_PT = 1.08 * 10
#: Tick length plus the gap to its label, and the gap between tick labels and axis label (points).
_TICK_PT = 3.5 + 3.5
_LABELPAD_PT = 4.0
_TITLEPAD_PT = 6.0


def _figure() -> tuple[Any, Any]:
    # A bare Figure (no pyplot): no global state, no backend switch in the caller's process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _text_size(fig: Any, texts: list[str], size: float = 10.0) -> tuple[float, float]:
    """Widest width and tallest height (points) of ``texts`` in the default font at ``size``."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    prop = FontProperties(size=size)
    width = height = 0.0
    for text in texts:
        w, h, _ = renderer.get_text_width_height_descent(text or " ", prop, ismath=False)
        width, height = max(width, w), max(height, h)
    scale = 72 / DPI  # pixels to points
    return width * scale, height * scale


def _tick_labels(axis: Any) -> list[str]:
    """The major tick labels ``axis`` will draw (without making the ticks)."""
    low, high = sorted(axis.get_view_interval())
    span = (high - low) * 1e-9
    locs = [x for x in axis.get_major_locator()() if low - span <= x <= high + span]
    return [str(s) for s in axis.get_major_formatter().format_ticks(locs)]


def _layout(fig: Any, ax: Any) -> None:
    """Fixed margins with room for the title, tick labels and axis labels that ``ax`` has."""
    line = _text_size(fig, ["lp"])[1]  # the height of one line of 10 pt text
    title = _text_size(fig, [ax.get_title()])[1]
    y_labels = _text_size(fig, _tick_labels(ax.yaxis))[0]
    x_labels = _text_size(fig, _tick_labels(ax.xaxis))[0]
    left = _PAD_PT + y_labels + _TICK_PT + (line + _LABELPAD_PT if ax.get_ylabel() else 0)
    bottom = _PAD_PT + line + _TICK_PT + (line + _LABELPAD_PT if ax.get_xlabel() else 0)
    top = _PAD_PT + title + _TITLEPAD_PT
    right = _PAD_PT + x_labels / 2  # the last x tick label may stick out by half its width
    width, height = FIGSIZE[0] * 72, FIGSIZE[1] * 72
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )


def _save(fig: Any, path: Path) -> Path:
    # No "Software" entry: the bytes then depend only on the data and the drawing.
    fig.canvas.print_png(path, metadata={"Software": None})
    return path


def _bins(data: np.ndarray, integer: bool) -> Any:
    """Up to 50 bins; integer columns get integer-aligned edges (no empty or doubled bins)."""
    if not len(data):
        return 5
    low, high = float(data.min()), float(data.max())
    if not integer:
        return min(50, max(5, len(np.unique(data))))
    width = max(1, int(np.ceil((high - low + 1) / 50)))
    return np.arange(low - 0.5, high + width + 0.5, width)


def _bars(ax: Any, data: np.ndarray, bins: Any) -> None:
    """A histogram of ``data``: counted by NumPy, drawn as one collection of bars on the x axis."""
    from matplotlib.collections import PolyCollection

    counts, edges = np.histogram(data, bins=bins)
    left, right, top = edges[:-1], edges[1:], counts.astype(float)
    bottom = np.zeros_like(top)
    verts = np.stack(
        [np.column_stack(p) for p in ((left, bottom), (left, top), (right, top), (right, bottom))], axis=1
    )
    bars = PolyCollection(list(verts), facecolors=_COLOR, edgecolors="white", linewidths=0.4)
    bars.sticky_edges.y.append(0)
    ax.add_collection(bars, autolim=False)
    ax.update_datalim([(edges[0], 0), (edges[-1], float(top.max(initial=0)))])
    ax.autoscale_view()


def _count_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_ylabel("rows")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _heavy_tailed(data: np.ndarray) -> bool:
    """Positive values whose tail dwarfs the middle: a linear axis would show one bar."""
    if not len(data) or data.min() <= 0:
        return False
    median = float(np.median(data))
    return float(data.max()) > 50 * median


def _log_label(x: float, _pos: Any = None) -> str:
    """Decades as plain numbers (1, 10, 1,000, 0.01): no mathtext to lay out."""
    return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _draw_histogram(ax: Any, values: pa.ChunkedArray, plot: PlannedPlot) -> None:
    data = values.drop_null().to_numpy().astype(float)
    if _heavy_tailed(data):
        from matplotlib.ticker import FuncFormatter, NullLocator

        bins: Any = np.geomspace(data.min(), data.max(), 41)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_log_label))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(f"{plot.column} (log scale)")
    else:
        bins = _bins(data, pa.types.is_integer(values.type))
        ax.set_xlabel(plot.column)
    _bars(ax, data, bins)
    _count_axis(ax)


def _draw_time(ax: Any, values: pa.ChunkedArray, plot: PlannedPlot) -> None:
    import matplotlib.dates as mdates

    data = values.drop_null().cast(pa.timestamp("ms")).to_numpy()
    _bars(ax, mdates.date2num(data), 40)
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(plot.column)
    _count_axis(ax)


def _is_horizontal(names: list[str]) -> bool:
    return len(names) > 6 or max((len(n) for n in names), default=0) > 12


def _share_axis(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(PercentFormatter(1.0))


def _draw_shares(ax: Any, names: list[str], shares: np.ndarray, plot: PlannedPlot) -> None:
    color = _LABEL_COLOR if plot.kind == "label" else _COLOR
    # Head room for the value labels above (or right of) the longest bar.
    limit = float(shares.max(initial=0)) * 1.2 + 0.01
    if _is_horizontal(names):  # long or many names: horizontal bars keep every label readable
        labels = [n if len(n) <= 28 else n[:27] + "…" for n in names]
        bars = ax.barh(labels[::-1], shares[::-1], color=color)
        ax.set_xlabel("share of rows")
        ax.set_xlim(0, limit)
        _share_axis(ax.xaxis)
        ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares[::-1]], fontsize=8, padding=2)
        return
    bars = ax.bar(names, shares, color=color)
    ax.set_xlabel(plot.column)
    ax.set_ylabel("share of rows")
    ax.set_ylim(0, limit)
    _share_axis(ax.yaxis)
    ax.bar_label(bars, labels=[f"{s:.1%}" for s in shares], fontsize=8, padding=2)


def _title(plot: PlannedPlot, values: pa.ChunkedArray) -> str:
    what = "label balance" if plot.kind == "label" else "distribution"
    return f"{plot.table}.{plot.column}: {what}{_null_note(values)}, n={len(values):,}"


def _draw(plot: PlannedPlot, col: Column, values: pa.ChunkedArray, path: Path) -> Path:
    fig, ax = _figure()
    kind = _kind(col) if plot.kind == "label" else plot.kind
    if kind == "histogram":
        _draw_histogram(ax, values, plot)
    elif kind == "time":
        _draw_time(ax, values, plot)
    else:
        names, shares = _shares(values, _order(col))
        _draw_shares(ax, names, shares, plot)
    # y=1.0 given: the title stays just above the axes (no top ticks), unmeasured
    ax.set_title(_title(plot, values), fontsize=10, y=1.0)
    ax.spines[["top", "right"]].set_visible(False)
    _layout(fig, ax)
    return _save(fig, path)


def table_plots(version_dir: Path, spec: Spec, out_dir: Path, max_per_table: int = 8) -> list[Path]:
    """Draw the planned plots (:func:`plan_plots`) of every table as PNGs in ``out_dir``.

    Returns the paths, one per planned column, named ``<table>.<column>.png``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in spec.table_order():
        planned = plan_plots(spec, table, max_per_table)
        if not planned:
            continue
        data = sample_rows(version_dir, table, [p.column for p in planned], SAMPLE_ROWS)
        columns = spec.tables[table].columns
        for plot in planned:
            paths.append(_draw(plot, columns[plot.column], data.column(plot.column), out_dir / plot.filename))
    return paths
