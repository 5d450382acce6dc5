"""Bar charts as SVG text: the card's plots without a plotting library.

Matplotlib cost a ``create`` ~1.1 s of CPU for a card's dozen PNGs (its import, text layout,
rasterising, PNG encoding): the largest step of the process after generating. These charts
need only bars, two axes with round ticks, and text, which SVG states directly and any browser,
Markdown viewer or MLflow's artifact view draws. The bytes depend only on the numbers drawn
(coordinates are rounded, nothing is timestamped), so the same data gives the same file.

Text widths are estimated from character counts (the viewer lays the text out), with room to
spare, so margins fit labels without measuring them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import numpy as np

__all__ = [
    "Chart",
    "category_bars",
    "count_ticks",
    "decade_ticks",
    "histogram_bars",
    "linear_ticks",
    "nice_ticks",
    "number_label",
    "share_ticks",
    "text_width",
    "time_ticks",
]

WIDTH, HEIGHT = 600, 350
_FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
_TITLE_PX, _TICK_PX, _VALUE_PX = 13, 11, 10
#: A generous average glyph width of the font above, as a share of its size.
_GLYPH = 0.62
_PAD = 12
_TICK_LEN = 4
_AXIS = "#333333"

_Place = Callable[[float], float]


def text_width(text: str, size: float) -> float:
    """Estimated width in pixels of ``text`` at ``size`` px (on the safe side)."""
    return len(text) * size * _GLYPH


def _num(x: float) -> str:
    """A coordinate: two decimals at most, no trailing zeros, never ``-0``."""
    text = f"{x:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# ---------------------------------------------------------------- ticks


def nice_ticks(low: float, high: float, count: int = 6) -> tuple[list[float], float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) covering ``[low, high]``,
    at most about ``count``; and the step."""
    low = low if math.isfinite(low) else 0.0
    if not math.isfinite(high) or high <= low:
        high = low + 1.0
    raw = (high - low) / max(1, count - 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = [(first + i) * step for i in range(math.floor(high / step + 1e-9) - first + 1)]
    return [0.0 if abs(t) < step * 1e-9 else float(f"{t:.12g}") for t in ticks], step  # 0.3, not 0.30..04


def number_label(value: float, step: float) -> str:
    """``value`` with as many decimals as ``step`` needs, thousands separated."""
    decimals = 0 if step >= 1 else min(10, max(0, -math.floor(math.log10(step) + 1e-9)))
    if step < 1 and round(step * 10**decimals) % 10 == 5:  # 2.5 steps need one more (0.25)
        decimals += 1
    return f"{value:,.{decimals}f}"


_DAY = 86400.0
#: (seconds apart, calendar months apart, label format) from finest to coarsest.
_TIME_STEPS: tuple[tuple[float, int, str], ...] = (
    *((s, 0, "%H:%M:%S") for s in (1, 2, 5, 10, 15, 30)),
    *((m * 60, 0, "%H:%M") for m in (1, 2, 5, 10, 15, 30)),
    *((h * 3600, 0, "%m-%d %H:%M") for h in (1, 2, 3, 6, 12)),
    *((d * _DAY, 0, "%Y-%m-%d") for d in (1, 2, 7, 14)),
    *((0, m, "%Y-%m") for m in (1, 2, 3, 6)),
    *((0, 12 * y, "%Y") for y in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)),
)


def time_ticks(low: float, high: float, count: int = 6) -> list[tuple[float, str]]:
    """Round instants (epoch seconds, UTC) within ``[low, high]``: the finest step that gives
    2 to ``count`` of them, labelled as that step needs (``%Y`` for years, ``%H:%M`` for
    minutes); the two ends when no step does."""
    for seconds, months, fmt in _TIME_STEPS:
        if months:
            ticks = _month_ticks(low, high, months, count)
        else:
            first, last = math.ceil(low / seconds), math.floor(high / seconds)
            ticks = [k * seconds for k in range(first, last + 1)] if last - first < count else []
        if 2 <= len(ticks) <= count:
            return [(t, _utc(t).strftime(fmt)) for t in ticks]
    return [(t, _utc(t).strftime("%Y-%m-%d %H:%M:%S")) for t in (low, high)]


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _month_ticks(low: float, high: float, months: int, count: int) -> list[float]:
    """Firsts of months ``months`` apart within ``[low, high]``; [] when more than ``count``."""
    start = _utc(low)
    index = start.year * 12 + start.month - 1
    if (start.day, start.hour, start.minute, start.second, start.microsecond) != (1, 0, 0, 0, 0):
        index += 1
    index = -(-index // months) * months  # the first multiple of ``months`` not before ``low``
    ticks: list[float] = []
    while len(ticks) <= count:
        year, month = divmod(index, 12)
        if not 1 <= year <= 9999:
            break
        t = dt.datetime(year, month + 1, 1, tzinfo=dt.UTC).timestamp()
        if t > high:
            break
        ticks.append(t)
        index += months
    return ticks if len(ticks) <= count else []


# ---------------------------------------------------------------- the chart


@dataclass
class Chart:
    """One plot: a title, a value axis and bars; :meth:`svg` gives the document.

    ``x_ticks`` and ``y_ticks`` are ``(value, label)``; values are in data units, mapped
    linearly (or by ``log10`` when ``log_x``) onto the plot area."""

    title: str
    x_label: str = ""
    y_label: str = ""
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    log_x: bool = False
    #: (x0, x1, y0, y1, colour) in data units
    bars: list[tuple[float, float, float, float, str]] = field(default_factory=list)
    #: (x, y, text, anchor) in data units: values written at the end of a bar
    notes: list[tuple[float, float, str, str]] = field(default_factory=list)
    bar_edge: str = "none"

    def svg(self) -> str:
        left, right, top, bottom = self._margins()
        box = (left, WIDTH - right, top, HEIGHT - bottom)
        fx = _scale(*self.x_range, box[0], box[1], math.log10 if self.log_x else None)
        fy = _scale(*self.y_range, box[3], box[2], None)
        out = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family={quoteattr(_FONT)}>',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
            _text(WIDTH / 2, _PAD + _TITLE_PX, self.title, _TITLE_PX, "middle", fit=WIDTH - 2 * _PAD),
        ]
        edge = "" if self.bar_edge == "none" else f' stroke="{self.bar_edge}" stroke-width="0.5"'
        for x0, x1, y0, y1, colour in self.bars:
            a, b, c, d = fx(x0), fx(x1), fy(y0), fy(y1)
            out.append(
                f'<rect x="{_num(min(a, b))}" y="{_num(min(c, d))}" width="{_num(abs(b - a))}" '
                f'height="{_num(abs(d - c))}" fill="{colour}"{edge}/>'
            )
        for x, y, label, anchor in self.notes:
            dx, dy = (3, _VALUE_PX / 2 - 1) if anchor == "start" else (0, -3)
            out.append(_text(fx(x) + dx, fy(y) + dy, label, _VALUE_PX, anchor))
        out += self._axes(box, fx, fy)
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _margins(self) -> tuple[float, float, float, float]:
        widest_y = max((text_width(label, _TICK_PX) for _, label in self.y_ticks), default=0.0)
        last_x = text_width(self.x_ticks[-1][1], _TICK_PX) / 2 if self.x_ticks else 0.0
        left = _PAD + widest_y + _TICK_LEN + 4 + (_TICK_PX + 6 if self.y_label else 0)
        bottom = _PAD + _TICK_PX + _TICK_LEN + 4 + (_TICK_PX + 6 if self.x_label else 0)
        top = _PAD + _TITLE_PX + 10
        return left, _PAD + last_x, top, bottom

    def _axes(self, box: tuple[float, float, float, float], fx: _Place, fy: _Place) -> list[str]:
        x0, x1, y_top, y0 = box
        out = [
            f'<path d="M{_num(x0)} {_num(y_top)}V{_num(y0)}H{_num(x1)}" fill="none" stroke="{_AXIS}"/>',
        ]
        for value, label in self.x_ticks:
            x = fx(value)
            out.append(f'<path d="M{_num(x)} {_num(y0)}v{_TICK_LEN}" stroke="{_AXIS}"/>')
            out.append(_text(x, y0 + _TICK_LEN + 2 + _TICK_PX, label, _TICK_PX, "middle"))
        for value, label in self.y_ticks:
            y = fy(value)
            out.append(f'<path d="M{_num(x0)} {_num(y)}h-{_TICK_LEN}" stroke="{_AXIS}"/>')
            out.append(_text(x0 - _TICK_LEN - 3, y + _TICK_PX / 2 - 1, label, _TICK_PX, "end"))
        if self.x_label:
            out.append(_text((x0 + x1) / 2, HEIGHT - _PAD, self.x_label, _TICK_PX, "middle"))
        if self.y_label:
            cx, cy = _PAD + _TICK_PX - 2, (y_top + y0) / 2
            out.append(
                f'<text transform="translate({_num(cx)} {_num(cy)}) rotate(-90)" font-size="{_TICK_PX}" '
                f'text-anchor="middle">{escape(self.y_label)}</text>'
            )
        return out


def _scale(
    low: float, high: float, start: float, end: float, transform: Callable[[float], float] | None
) -> Callable[[float], float]:
    f = transform or (lambda v: v)
    a, b = f(low), f(high)
    span = (b - a) or 1.0

    def place(value: float) -> float:
        return start + (f(value) - a) / span * (end - start)

    return place


def _text(x: float, y: float, text: str, size: int, anchor: str, fit: float = 0.0) -> str:
    """A line of text; with ``fit``, squeezed into that many pixels when it would be wider."""
    squeeze = ""
    if fit and text_width(text, size) > fit:
        squeeze = f' textLength="{_num(fit)}" lengthAdjust="spacingAndGlyphs"'
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}"{squeeze}>'
        f"{escape(text)}</text>"
    )


def histogram_bars(
    counts: np.ndarray, edges: np.ndarray, colour: str
) -> list[tuple[float, float, float, float, str]]:
    """One bar per bin with rows (empty bins are left out)."""
    return [
        (float(edges[i]), float(edges[i + 1]), 0.0, float(c), colour) for i, c in enumerate(counts) if c > 0
    ]


def count_ticks(top: float) -> tuple[list[tuple[float, str]], float]:
    """Whole-number ticks from 0 for a count axis, and the axis top."""
    ticks, step = nice_ticks(0.0, max(top, 1.0))
    step = max(step, 1.0)
    ticks = [t for t in ticks if float(t).is_integer()]
    # 5% head room above the tallest bar, as matplotlib leaves
    return [(t, number_label(t, step)) for t in ticks], max(top * 1.05, ticks[-1] if ticks else 1.0)


def share_ticks(top: float) -> list[tuple[float, str]]:
    """Percent ticks from 0 to ``top`` (a share, 0-1)."""
    ticks, step = nice_ticks(0.0, top, 5)
    percent = step * 100
    return [(t, f"{number_label(t * 100, percent)}%") for t in ticks if t <= top + 1e-12]


def linear_ticks(low: float, high: float, *, integer: bool = False) -> list[tuple[float, str]]:
    """Round ticks within ``[low, high]``, labelled with the decimals the step needs; only whole
    numbers when ``integer``."""
    ticks, step = nice_ticks(low, high)
    if integer and step < 1:
        ticks, step = [float(t) for t in range(math.ceil(low), math.floor(high) + 1)], 1.0
    return [(t, number_label(t, step)) for t in ticks if low - 1e-9 * step <= t <= high + 1e-9 * step]


def decade_ticks(low: float, high: float, label: Callable[[float], str]) -> list[tuple[float, str]]:
    """Powers of ten within ``[low, high]`` (both > 0)."""
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    return [(10.0**k, label(10.0**k)) for k in range(first, last + 1)]


def category_bars(
    shares: Sequence[float], colour: str, *, horizontal: bool
) -> tuple[list[tuple[float, float, float, float, str]], list[tuple[float, float, str, str]]]:
    """Bars (0.8 wide, share ``i`` in slot ``i``) with the share written at their end."""
    bars, notes = [], []
    for i, share in enumerate(shares):
        s = float(share)
        if horizontal:
            bars.append((0.0, s, i - 0.4, i + 0.4, colour))
            notes.append((s, float(i), f"{s:.1%}", "start"))
        else:
            bars.append((i - 0.4, i + 0.4, 0.0, s, colour))
            notes.append((float(i), s, f"{s:.1%}", "middle"))
    return bars, notes
