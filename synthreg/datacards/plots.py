"""Per-table SVG plots for a DataCard: label balance, numeric histograms, category shares.

Plots read only the columns they draw, from a deterministic sample of at most
``SAMPLE_ROWS`` rows, so they cost the same on 10K and 10M rows, and the same files
give byte-identical SVGs (:mod:`synthreg.datacards.svg` writes them; no plotting library).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.datacards import svg
from synthreg.datacards.pii import sample_rows
from synthreg.generators.sampling import Drawn, SampleRequest
from synthreg.generators.spec import Column, Spec

__all__ = ["SAMPLE_ROWS", "PlannedPlot", "plan_plots", "sample_requests", "table_plots"]

#: At most this many rows are read per table.
SAMPLE_ROWS = 200_000
#: Categories drawn one by one; the rest are summed into "(other)".
MAX_CATEGORIES = 15
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
        """``<table>.<column>.svg``."""
        return f"{self.table}.{self.column}.svg"


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


def _heavy_tailed(data: np.ndarray) -> bool:
    """Positive values whose tail dwarfs the middle: a linear axis would show one bar."""
    if not len(data) or data.min() <= 0:
        return False
    median = float(np.median(data))
    return float(data.max()) > 50 * median


def _log_label(x: float) -> str:
    """Decades as plain numbers (1, 10, 1,000, 0.01)."""
    return f"{x:,.0f}" if x >= 1 else f"{x:g}"


def _bins(data: np.ndarray, integer: bool) -> Any:
    """Up to 50 bins; integer columns get integer-aligned edges (no empty or doubled bins)."""
    if not len(data):
        return 5
    low, high = float(data.min()), float(data.max())
    if not integer:
        return min(50, max(5, len(np.unique(data))))
    width = max(1, int(np.ceil((high - low + 1) / 50)))
    return np.arange(low - 0.5, high + width + 0.5, width)


def _histogram(chart: svg.Chart, data: np.ndarray, bins: Any) -> np.ndarray:
    """Bars of ``data`` counted by NumPy, with a count axis; returns the bin edges."""
    counts, edges = np.histogram(data, bins=bins)
    chart.bars = svg.histogram_bars(counts, edges, _COLOR)
    chart.bar_edge = "white"
    chart.y_label = "rows"
    chart.y_ticks, top = svg.count_ticks(float(counts.max(initial=0)))
    chart.x_range, chart.y_range = (float(edges[0]), float(edges[-1])), (0.0, top)
    return np.asarray(edges)


def _draw_histogram(chart: svg.Chart, values: pa.ChunkedArray, plot: PlannedPlot) -> None:
    data = values.drop_null().to_numpy().astype(float)
    if _heavy_tailed(data):
        edges = _histogram(chart, data, np.geomspace(data.min(), data.max(), 41))
        chart.log_x = True
        chart.x_ticks = svg.decade_ticks(float(edges[0]), float(edges[-1]), _log_label)
        chart.x_label = f"{plot.column} (log scale)"
        return
    integer = pa.types.is_integer(values.type)
    edges = _histogram(chart, data, _bins(data, integer))
    chart.x_ticks = svg.linear_ticks(float(edges[0]), float(edges[-1]), integer=integer)
    chart.x_label = plot.column


def _draw_time(chart: svg.Chart, values: pa.ChunkedArray, plot: PlannedPlot) -> None:
    millis = values.drop_null().cast(pa.timestamp("ms")).cast(pa.int64()).to_numpy()
    edges = _histogram(chart, millis / 1000.0, 40)
    chart.x_ticks = svg.time_ticks(float(edges[0]), float(edges[-1]))
    chart.x_label = plot.column


def _is_horizontal(names: list[str]) -> bool:
    return len(names) > 6 or max((len(n) for n in names), default=0) > 12


def _draw_shares(chart: svg.Chart, names: list[str], shares: np.ndarray, plot: PlannedPlot) -> None:
    color = _LABEL_COLOR if plot.kind == "label" else _COLOR
    # Head room for the value labels above (or right of) the longest bar.
    limit = float(shares.max(initial=0)) * 1.2 + 0.01
    slots = (-0.5, len(names) - 0.5)
    if _is_horizontal(names):  # long or many names: horizontal bars keep every label readable
        labels = [n if len(n) <= 28 else n[:27] + "…" for n in names]
        chart.bars, chart.notes = svg.category_bars(shares[::-1].tolist(), color, horizontal=True)
        chart.y_ticks = list(enumerate(labels[::-1]))
        chart.x_ticks, chart.x_label = svg.share_ticks(limit), "share of rows"
        chart.x_range, chart.y_range = (0.0, limit), slots
        return
    chart.bars, chart.notes = svg.category_bars(shares.tolist(), color, horizontal=False)
    chart.x_ticks, chart.x_label = list(enumerate(names)), plot.column
    chart.y_ticks, chart.y_label = svg.share_ticks(limit), "share of rows"
    chart.x_range, chart.y_range = slots, (0.0, limit)


def _title(plot: PlannedPlot, values: pa.ChunkedArray) -> str:
    what = "label balance" if plot.kind == "label" else "distribution"
    return f"{plot.table}.{plot.column}: {what}{_null_note(values)}, n={len(values):,}"


def _draw(plot: PlannedPlot, col: Column, values: pa.ChunkedArray, path: Path) -> Path:
    chart = svg.Chart(title=_title(plot, values))
    kind = _kind(col) if plot.kind == "label" else plot.kind
    if kind == "histogram":
        _draw_histogram(chart, values, plot)
    elif kind == "time":
        _draw_time(chart, values, plot)
    else:
        names, shares = _shares(values, _order(col))
        _draw_shares(chart, names, shares, plot)
    path.write_text(chart.svg(), encoding="utf-8")
    return path


def sample_requests(spec: Spec, max_per_table: int = 8) -> list[SampleRequest]:
    """The rows :func:`table_plots` reads, for the engine's workers to take as they write."""
    requests = []
    for table in spec.table_order():
        planned = plan_plots(spec, table, max_per_table)
        if planned:
            requests.append(SampleRequest(table, tuple(p.column for p in planned), SAMPLE_ROWS))
    return requests


def table_plots(
    version_dir: Path, spec: Spec, out_dir: Path, max_per_table: int = 8, drawn: Drawn | None = None
) -> list[Path]:
    """Draw the planned plots (:func:`plan_plots`) of every table as SVGs in ``out_dir``.

    Returns the paths, one per planned column, named ``<table>.<column>.svg``. ``drawn``: the
    sampled rows as the engine's workers took them (:func:`sample_requests`), else they are read.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for table in spec.table_order():
        planned = plan_plots(spec, table, max_per_table)
        if not planned:
            continue
        data = sample_rows(version_dir, table, [p.column for p in planned], SAMPLE_ROWS, drawn)
        columns = spec.tables[table].columns
        for plot in planned:
            paths.append(_draw(plot, columns[plot.column], data.column(plot.column), out_dir / plot.filename))
    return paths
