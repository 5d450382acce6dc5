"""Per-column statistics of two dataset versions, computed in DuckDB.

Every query streams over the Parquet parts through the views ``a_<table>`` and
``b_<table>`` that :mod:`synthreg.registry.diff` creates; no table is loaded whole
into Python. How each figure is computed:

- **numeric** (int, float, date, datetime; dates and datetimes as epoch seconds):
  count, nulls, mean, sample standard deviation (ddof 1), min, max and the
  quantiles p01, p05, p25, p50, p75, p95, p99 by linear interpolation (DuckDB
  ``quantile_cont``, NumPy's default method).
- ``ks``: the exact two-sample Kolmogorov–Smirnov statistic ``max_x |F_a(x) - F_b(x)|``
  over the pooled non-null values, in one ordered pass: every a-value weighs ``+n_b``
  and every b-value ``-n_a``, and a running sum ordered by value (a RANGE frame, so tied
  values enter together) equals ``n_a * n_b * (F_a(x) - F_b(x))`` in exact integer
  arithmetic at every pooled value.
- ``psi``: population stability index over 10 bins cut at a's deciles (p10..p90,
  repeated edges merged; bin i is ``(e_{i-1}, e_i]``), with both proportions floored at
  ``PSI_EPSILON``: ``sum((p_b - p_a) * ln(p_b / p_a))``.
- **categorical** (category, bool, and text/uuid with at most ``MAX_CATEGORIES``
  distinct values on both sides): proportions of the non-null values, the
  Jensen–Shannon distance between them (base 2, so in [0, 1]), new and vanished
  categories. A column marked ``label: true`` also gets ``label_ratio``.
- **text** (text/uuid with more distinct values): non-null count, distinct count and
  distinct ratio (distinct / non-null), quantiles of the string length, and ``ks`` of
  the lengths.

A column is ``changed`` when any of these holds (``reasons`` says which):
``ks > max(KS_FLOOR, KS_C_ALPHA * sqrt((n_a + n_b) / (n_a * n_b)))`` (an effect of at
least 0.05 that is also beyond sampling noise at alpha = 0.001, so two seeds of one
small spec do not read as a change), ``psi > PSI_LIMIT``, ``js > JS_LIMIT``, a new or
vanished category, a null rate that moved by more than ``NULL_RATE_LIMIT``, a distinct
ratio that moved by more than ``DISTINCT_RATIO_LIMIT``, or a change of type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

__all__ = [
    "DISTINCT_RATIO_LIMIT",
    "JS_LIMIT",
    "KS_C_ALPHA",
    "KS_FLOOR",
    "MAX_CATEGORIES",
    "NULL_RATE_LIMIT",
    "PSI_EPSILON",
    "PSI_LIMIT",
    "ColumnPair",
    "column_stats",
    "histogram",
    "js_distance",
    "ks_threshold",
    "quote",
    "stat_kind",
    "view_name",
]

KS_FLOOR = 0.05
KS_C_ALPHA = 1.949  # sqrt(-ln(alpha / 2) / 2) for alpha = 0.001
PSI_LIMIT = 0.1
PSI_EPSILON = 1e-4
JS_LIMIT = 0.05
NULL_RATE_LIMIT = 0.01
DISTINCT_RATIO_LIMIT = 0.05
MAX_CATEGORIES = 50
HIST_BINS = 40

REPORTED = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
DECILES = tuple(round(0.1 * i, 1) for i in range(1, 10))
_PROBS = sorted(set(REPORTED.values()) | set(DECILES))

_KINDS = {
    "int": "numeric",
    "float": "numeric",
    "date": "numeric",
    "datetime": "numeric",
    "category": "categorical",
    "bool": "categorical",
    "text": "text",
    "llm_text": "text",
    "uuid": "text",
}


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def view_name(side: str, table: str) -> str:
    """The quoted DuckDB view over one side's table (``side`` is ``a`` or ``b``)."""
    return quote(f"{side}_{table}")


def stat_kind(column_type: str) -> str | None:
    """numeric, categorical or text for a logical column type; None when not compared."""
    return _KINDS.get(column_type)


@dataclass(frozen=True)
class ColumnPair:
    """A column both versions have: where to read it and its logical type on each side."""

    table: str
    name: str
    type_a: str
    type_b: str
    label: bool = False

    def view(self, side: str) -> str:
        """The quoted view of ``side``."""
        return view_name(side, self.table)

    def numeric_expr(self) -> str:
        """The column as DOUBLE (dates and datetimes as epoch seconds)."""
        if {self.type_a, self.type_b} & {"date", "datetime"}:
            return f"epoch({quote(self.name)})"
        return f"CAST({quote(self.name)} AS DOUBLE)"


def _num(value: Any) -> float | int | None:
    """A JSON-safe number: NaN and infinities become None."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else None


def _query(con: DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


# ---------------------------------------------------------------- numeric


def numeric_side(con: DuckDBPyConnection, view: str, expr: str) -> dict[str, Any]:
    """count, nulls, mean, std, min, max, quantiles (and a's deciles, for PSI) of one side."""
    probs = ", ".join(repr(p) for p in _PROBS)
    sql = (
        "SELECT count(x), count(*) - count(x), avg(x), stddev_samp(x), min(x), max(x), "
        f"quantile_cont(x, [{probs}]), approx_count_distinct(x) FROM (SELECT {expr} AS x FROM {view})"
    )
    count, nulls, mean, std, lo, hi, qs, distinct = _query(con, sql)[0]
    by_prob = dict(zip(_PROBS, qs or [None] * len(_PROBS), strict=True))
    return {
        "count": count,
        "nulls": nulls,
        "mean": _num(mean),
        "std": _num(std),
        "min": _num(lo),
        "max": _num(hi),
        "quantiles": {k: _num(by_prob[p]) for k, p in REPORTED.items()},
        "approx_distinct": distinct,
        "deciles": [_num(by_prob[p]) for p in DECILES],
    }


def ks_statistic(
    con: DuckDBPyConnection, pair: ColumnPair, expr: str, counts: tuple[int, int], *, grouped: bool
) -> float | None:
    """Exact two-sample KS statistic of ``expr`` (see the module docstring).

    ``grouped`` first sums the weights per distinct value (in parallel), which is much
    faster when values repeat; the running sum over single rows is faster when they do not.
    """
    n_a, n_b = counts
    if not n_a or not n_b:
        return None
    pooled = f"""
        SELECT {expr} AS x, CAST({n_b} AS BIGINT) AS w FROM {pair.view("a")}
        UNION ALL SELECT {expr} AS x, CAST(-{n_a} AS BIGINT) AS w FROM {pair.view("b")}"""
    pooled = f"SELECT x, w FROM ({pooled}) WHERE x IS NOT NULL"
    if grouped:
        totals = f"SELECT x, sum(w) AS w FROM ({pooled}) GROUP BY x"
        running = f"SELECT sum(w) OVER (ORDER BY x ROWS UNBOUNDED PRECEDING) AS f FROM ({totals})"
    else:
        running = f"SELECT sum(w) OVER (ORDER BY x) AS f FROM ({pooled})"  # RANGE frame: ties together
    top = _query(con, f"SELECT max(abs(f)) FROM ({running})")[0][0]
    return int(top) / (n_a * n_b)


def psi(con: DuckDBPyConnection, pair: ColumnPair, expr: str, deciles: list[Any]) -> float | None:
    """Population stability index over bins cut at a's deciles."""
    edges = sorted({float(e) for e in deciles if e is not None})
    bin_expr = " + ".join(f"CAST(x > ${i + 1} AS INTEGER)" for i in range(len(edges))) or "0"
    sql = f"""
        SELECT {bin_expr} AS bin, count(*) FILTER (WHERE s = 0), count(*) FILTER (WHERE s = 1)
        FROM (SELECT {expr} AS x, 0 AS s FROM {pair.view("a")}
              UNION ALL SELECT {expr} AS x, 1 AS s FROM {pair.view("b")})
        WHERE x IS NOT NULL GROUP BY bin"""
    rows = _query(con, sql, edges)
    n_a, n_b = sum(r[1] for r in rows), sum(r[2] for r in rows)
    if not n_a or not n_b:
        return None
    total = 0.0
    for _, ca, cb in rows:
        pa, pb = max(ca / n_a, PSI_EPSILON), max(cb / n_b, PSI_EPSILON)
        total += (pb - pa) * math.log(pb / pa)
    return total


def ks_threshold(n_a: int, n_b: int) -> float:
    """The KS value above which a numeric column counts as changed."""
    if not n_a or not n_b:
        return KS_FLOOR
    return max(KS_FLOOR, KS_C_ALPHA * math.sqrt((n_a + n_b) / (n_a * n_b)))


def numeric_stats(con: DuckDBPyConnection, pair: ColumnPair) -> dict[str, Any]:
    """Numeric statistics of both sides, with KS and PSI."""
    expr = pair.numeric_expr()
    a, b = numeric_side(con, pair.view("a"), expr), numeric_side(con, pair.view("b"), expr)
    deciles = a.pop("deciles")
    b.pop("deciles")
    counts = (a["count"], b["count"])
    repeats = a["approx_distinct"] + b["approx_distinct"] < (counts[0] + counts[1]) / 2
    return {
        "kind": "numeric",
        "a": a,
        "b": b,
        "ks": ks_statistic(con, pair, expr, counts, grouped=repeats),
        "ks_threshold": ks_threshold(a["count"], b["count"]),
        "psi": psi(con, pair, expr, deciles),
    }


# ---------------------------------------------------------------- categorical


def category_counts(con: DuckDBPyConnection, view: str, column: str, limit: int | None = None) -> list[Any]:
    """``(value, count)`` rows of a column as text; the NULL row counts nulls."""
    sql = f"SELECT CAST({quote(column)} AS VARCHAR) AS v, count(*) AS n FROM {view} GROUP BY v"
    return _query(con, sql + (f" LIMIT {int(limit)}" if limit else ""))


def _proportions(rows: list[Any]) -> tuple[dict[str, float], int, int]:
    counts = {str(v): int(n) for v, n in rows if v is not None}
    nulls = sum(int(n) for v, n in rows if v is None)
    total = sum(counts.values())
    shares = {k: n / total for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))}
    return shares, total, nulls


def js_distance(p: dict[str, float], q: dict[str, float]) -> float | None:
    """Jensen–Shannon distance (base 2, in [0, 1]) between two discrete distributions."""
    if not p or not q:
        return None
    total = 0.0
    for key in p.keys() | q.keys():
        pk, qk = p.get(key, 0.0), q.get(key, 0.0)
        mid = (pk + qk) / 2
        if pk > 0:
            total += 0.5 * pk * math.log2(pk / mid)
        if qk > 0:
            total += 0.5 * qk * math.log2(qk / mid)
    return min(1.0, math.sqrt(max(total, 0.0)))


def categorical_stats(rows_a: list[Any], rows_b: list[Any]) -> dict[str, Any]:
    """Proportions, JS distance, new and vanished categories from two count lists."""
    pa, count_a, nulls_a = _proportions(rows_a)
    pb, count_b, nulls_b = _proportions(rows_b)
    return {
        "kind": "categorical",
        "a": {"count": count_a, "nulls": nulls_a, "distinct": len(pa), "proportions": pa},
        "b": {"count": count_b, "nulls": nulls_b, "distinct": len(pb), "proportions": pb},
        "js": js_distance(pa, pb),
        "new": sorted(pb.keys() - pa.keys()),
        "vanished": sorted(pa.keys() - pb.keys()),
    }


def _few_values(con: DuckDBPyConnection, pair: ColumnPair) -> tuple[list[Any], list[Any]] | None:
    """Both sides' value counts when each has at most MAX_CATEGORIES values, else None."""
    sides = []
    for side in ("a", "b"):
        approx = _query(con, f"SELECT approx_count_distinct({quote(pair.name)}) FROM {pair.view(side)}")
        if approx[0][0] > 2 * MAX_CATEGORIES:
            return None
        rows = category_counts(con, pair.view(side), pair.name, MAX_CATEGORIES + 2)
        if sum(1 for v, _ in rows if v is not None) > MAX_CATEGORIES:
            return None
        sides.append(rows)
    return sides[0], sides[1]


# ---------------------------------------------------------------- text


def text_side(con: DuckDBPyConnection, view: str, column: str) -> dict[str, Any]:
    """Non-null count, nulls, distinct count and ratio, length quantiles of one side."""
    probs = ", ".join(repr(p) for p in REPORTED.values())
    col = quote(column)
    sql = (
        f"SELECT count({col}), count(*) - count({col}), count(DISTINCT {col}), "
        f"quantile_cont(length(CAST({col} AS VARCHAR)), [{probs}]) FROM {view}"
    )
    count, nulls, distinct, qs = _query(con, sql)[0]
    return {
        "count": count,
        "nulls": nulls,
        "distinct": distinct,
        "distinct_ratio": distinct / count if count else None,
        "length": {k: _num(q) for k, q in zip(REPORTED, qs or [None] * len(REPORTED), strict=True)},
    }


def text_stats(con: DuckDBPyConnection, pair: ColumnPair) -> dict[str, Any]:
    """Text statistics of both sides, with the KS statistic of the lengths."""
    a, b = text_side(con, pair.view("a"), pair.name), text_side(con, pair.view("b"), pair.name)
    expr = f"CAST(length(CAST({quote(pair.name)} AS VARCHAR)) AS DOUBLE)"
    return {
        "kind": "text",
        "a": a,
        "b": b,
        "ks": ks_statistic(con, pair, expr, (a["count"], b["count"]), grouped=True),
        "ks_threshold": ks_threshold(a["count"], b["count"]),
    }


# ---------------------------------------------------------------- per column


def _label_ratio(con: DuckDBPyConnection, pair: ColumnPair, stats: dict[str, Any]) -> dict[str, Any] | None:
    if stats["kind"] == "categorical":
        pa, pb = stats["a"]["proportions"], stats["b"]["proportions"]
    else:
        few = _few_values(con, pair)
        if few is None:
            return None  # a regression target: its numeric statistics say it all
        pa, pb = _proportions(few[0])[0], _proportions(few[1])[0]
    delta = {k: pb.get(k, 0.0) - pa.get(k, 0.0) for k in dict.fromkeys([*pa, *pb])}
    return {"a": pa, "b": pb, "delta": delta}


def column_stats(con: DuckDBPyConnection, pair: ColumnPair) -> dict[str, Any]:
    """Statistics of one column on both sides, with ``changed`` and its ``reasons``."""
    kind_a, kind_b = stat_kind(pair.type_a), stat_kind(pair.type_b)
    types: str | list[str] = pair.type_b if pair.type_a == pair.type_b else [pair.type_a, pair.type_b]
    if kind_a is None or kind_a != kind_b:
        return {
            "type": types,
            "kind": None,
            "changed": pair.type_a != pair.type_b,
            "reasons": ["type changed"],
        }
    stats: dict[str, Any]
    if kind_a == "numeric":
        stats = numeric_stats(con, pair)
    else:
        few = _few_values(con, pair)
        stats = categorical_stats(*few) if few is not None else text_stats(con, pair)
    if pair.label:
        stats["label_ratio"] = _label_ratio(con, pair, stats)
    reasons = change_reasons(stats)
    if pair.type_a != pair.type_b:
        reasons.insert(0, "type changed")
    return {"type": types, **stats, "changed": bool(reasons), "reasons": reasons}


def _null_rate(side: dict[str, Any]) -> float:
    total = side["count"] + side["nulls"]
    return side["nulls"] / total if total else 0.0


def change_reasons(stats: dict[str, Any]) -> list[str]:
    """Why a column counts as changed (empty when it does not); thresholds in the module docstring."""
    a, b = stats["a"], stats["b"]
    reasons = []
    ks = stats.get("ks")
    if ks is not None and ks > stats["ks_threshold"]:
        what = "KS of lengths" if stats["kind"] == "text" else "KS"
        reasons.append(f"{what} {ks:.3f} > {stats['ks_threshold']:.3f}")
    if (stats.get("psi") or 0.0) > PSI_LIMIT:
        reasons.append(f"PSI {stats['psi']:.3f} > {PSI_LIMIT}")
    if (stats.get("js") or 0.0) > JS_LIMIT:
        reasons.append(f"JS {stats['js']:.3f} > {JS_LIMIT}")
    for key in ("new", "vanished"):
        if stats.get(key):
            reasons.append(f"{len(stats[key])} {key} categories")
    if abs(_null_rate(a) - _null_rate(b)) > NULL_RATE_LIMIT:
        reasons.append(f"null rate {_null_rate(a):.3f} -> {_null_rate(b):.3f}")
    ratio_a, ratio_b = a.get("distinct_ratio"), b.get("distinct_ratio")
    if ratio_a is not None and ratio_b is not None and abs(ratio_a - ratio_b) > DISTINCT_RATIO_LIMIT:
        reasons.append(f"distinct ratio {ratio_a:.3f} -> {ratio_b:.3f}")
    return reasons


# ---------------------------------------------------------------- plot data


def _hist_range(integral: bool, sides: list[dict[str, Any]]) -> tuple[float, float, int, bool]:
    """Range, bin count and whether the range is whole (else p01..p99, tails left out).

    Integral values get whole-number bins centred on the integers, so no bin holds
    more integers than its neighbours.
    """
    lo = min(s["min"] for s in sides if s["min"] is not None)
    hi = max(s["max"] for s in sides if s["max"] is not None)
    whole = True
    qlo = [s["p01"] for s in sides if s["p01"] is not None]
    qhi = [s["p99"] for s in sides if s["p99"] is not None]
    narrow = integral and hi - lo <= HIST_BINS * 1.5
    if not narrow and qlo and qhi and min(qlo) < max(qhi):
        lo, hi, whole = min(qlo), max(qhi), False
    if integral:
        lo, hi = math.floor(lo), math.ceil(hi)
        width = max(1, math.ceil((hi - lo + 1) / HIST_BINS))
        bins = math.ceil((hi - lo + 1) / width)
        return lo - 0.5, lo - 0.5 + bins * width, bins, whole
    return (lo, hi, HIST_BINS, whole) if hi > lo else (lo - 0.5, lo + 0.5, 1, whole)


def _hist_input(pair: ColumnPair, stats: dict[str, Any]) -> tuple[str, bool, list[dict[str, Any]]]:
    """The SQL expression, whether it is integral, and each side's min/max/p01/p99."""
    if stats["kind"] == "text":
        expr = f"CAST(length(CAST({quote(pair.name)} AS VARCHAR)) AS DOUBLE)"
        lengths = [stats[s]["length"] for s in "ab"]
        return (
            expr,
            True,
            [{"min": q["p01"], "max": q["p99"], "p01": q["p01"], "p99": q["p99"]} for q in lengths],
        )
    sides = [
        {**stats[s], "p01": stats[s]["quantiles"]["p01"], "p99": stats[s]["quantiles"]["p99"]} for s in "ab"
    ]
    return pair.numeric_expr(), {pair.type_a, pair.type_b} == {"int"}, sides


def histogram(con: DuckDBPyConnection, pair: ColumnPair, stats: dict[str, Any]) -> dict[str, Any] | None:
    """Shares of values per common bin for both sides (numeric columns, or text lengths).

    Shares are of each side's non-null values, so sides with different row counts
    compare; ``whole`` is False when the range is p01..p99 and the tails are left out
    (always, for text lengths, whose min and max are not computed).
    """
    expr, integral, sides = _hist_input(pair, stats)
    if all(s["min"] is None for s in sides):
        return None
    lo, hi, bins, whole = _hist_range(integral, sides)
    whole = whole and stats["kind"] != "text"
    width = (hi - lo) / bins
    shares = {}
    for side in ("a", "b"):
        sql = (
            f"SELECT CAST(floor((x - $1) / $2) AS BIGINT) AS i, count(*) FROM (SELECT {expr} AS x "
            f"FROM {pair.view(side)}) WHERE x >= $1 AND x <= $3 GROUP BY i"
        )
        counts = [0] * bins
        for i, n in _query(con, sql, [lo, width, hi]):
            counts[min(int(i), bins - 1)] += n
        total = stats[side]["count"]
        shares[side] = [c / total if total else 0.0 for c in counts]
    time_axis = stats["kind"] == "numeric" and bool({pair.type_a, pair.type_b} & {"date", "datetime"})
    edges = [lo + i * width for i in range(bins + 1)]
    return {"edges": edges, "a": shares["a"], "b": shares["b"], "time": time_axis, "whole": whole}
