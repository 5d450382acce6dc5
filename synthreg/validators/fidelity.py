"""Fidelity of synthetic tables to real ones: column shapes, column-pair trends, FK cardinality.

The metrics follow the definitions of SDMetrics (sdv-dev/SDMetrics, MIT), reimplemented over
numpy because sdmetrics 0.32 requires pandas<3 and synthreg runs on pandas 3:

- ``KSComplement`` = 1 - the two-sample Kolmogorov-Smirnov statistic (numbers, dates; nulls dropped);
- ``TVComplement`` = 1 - the total variation distance of the category frequencies (a null is a category);
- ``CorrelationSimilarity`` = 1 - |r_real - r_synthetic| / 2 (Pearson, rows where both are present);
- ``ContingencySimilarity`` = 1 - the total variation distance of the 2-D contingency tables
  (numbers binned into 10 equal-width bins over the real range, as SDMetrics' QualityReport does);
- ``CardinalityShapeSimilarity`` = the KS complement of the children-per-parent counts.

Every score is in [0, 1]; 1 means the same distribution. The overall score is the mean of the
available properties (column shapes, column-pair trends, cardinality), each the mean of its scores.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "PAIR_BINS",
    "ColumnKinds",
    "FidelityResult",
    "contingency_similarity",
    "correlation_similarity",
    "fidelity",
    "ks_complement",
    "ks_complement_counts",
    "tv_complement",
]

#: equal-width bins a numeric column is cut into for a contingency table (as SDMetrics)
PAIR_BINS = 10

#: ``{column: "numeric" | "categorical"}`` for the columns of one table that are compared
ColumnKinds = Mapping[str, str]


def _present(values: Any) -> np.ndarray:
    data = np.asarray(values, dtype="float64")
    return data[~np.isnan(data)]


def ks_complement(real: Any, synthetic: Any) -> float:
    """1 - the KS statistic of two samples of numbers (nulls dropped); 1.0 when both are empty."""
    a, b = np.sort(_present(real)), np.sort(_present(synthetic))
    if not len(a) or not len(b):
        return 1.0 if len(a) == len(b) else 0.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(1.0 - np.max(np.abs(cdf_a - cdf_b)))


def ks_complement_counts(real: Mapping[int, int], synthetic: Mapping[int, int]) -> float:
    """:func:`ks_complement` of two samples given as ``{value: how many times}``."""
    grid = np.array(sorted({*real, *synthetic}), dtype="float64")

    def cdf(hist: Mapping[int, int]) -> np.ndarray:
        if not hist:
            return np.zeros(len(grid))
        keys = np.array(sorted(hist), dtype="float64")
        counts = np.cumsum([hist[k] for k in sorted(hist)]) / sum(hist.values())
        idx = np.searchsorted(keys, grid, side="right") - 1
        return np.where(idx >= 0, counts[np.clip(idx, 0, None)], 0.0)

    if not len(grid):
        return 1.0
    return float(1.0 - np.max(np.abs(cdf(real) - cdf(synthetic))))


def _frequencies(*columns: Any) -> Any:
    """Joint relative frequencies of one or more columns, a null being a value of its own."""
    import pandas as pd

    frame = pd.DataFrame({i: pd.Series(np.asarray(c, dtype="object")) for i, c in enumerate(columns)})
    return frame.fillna("\x00null").value_counts(normalize=True, dropna=False)


def _tv_distance(fr: Any, fs: Any) -> float:
    import pandas as pd

    both = pd.concat([fr.rename("r"), fs.rename("s")], axis=1, sort=False).fillna(0.0)
    return float((both["r"] - both["s"]).abs().sum() / 2.0)


def tv_complement(real: Any, synthetic: Any) -> float:
    """1 - the total variation distance of the category frequencies (null is a category)."""
    return 1.0 - _tv_distance(_frequencies(real), _frequencies(synthetic))


def correlation_similarity(real: tuple[Any, Any], synthetic: tuple[Any, Any]) -> float | None:
    """1 - |r_real - r_synthetic| / 2 with Pearson's r; None when a column is constant or empty."""
    rs = [_pearson(*real), _pearson(*synthetic)]
    if rs[0] is None or rs[1] is None:
        return None
    return float(1.0 - abs(rs[0] - rs[1]) / 2.0)


def _pearson(x: Any, y: Any) -> float | None:
    a, b = np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def contingency_similarity(real: tuple[Any, Any], synthetic: tuple[Any, Any]) -> float:
    """1 - the total variation distance of the joint frequencies of two categorical columns."""
    return 1.0 - _tv_distance(_frequencies(*real), _frequencies(*synthetic))


def _binned(real: Any, synthetic: Any) -> tuple[np.ndarray, np.ndarray]:
    """Numbers cut into PAIR_BINS equal-width bins over the real range (nulls stay null)."""
    a, b = np.asarray(real, dtype="float64"), np.asarray(synthetic, dtype="float64")
    present = a[~np.isnan(a)]
    if not len(present):
        return np.full(len(a), np.nan), np.full(len(b), np.nan)
    inner = np.histogram_bin_edges(present, bins=PAIR_BINS)[1:-1]
    return tuple(np.where(np.isnan(v), np.nan, np.digitize(v, inner)) for v in (a, b))  # type: ignore[return-value]


@dataclass
class FidelityResult:
    """Scores per column, per column pair, per foreign key, and the overall score."""

    columns: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # table -> column -> score
    pairs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # table -> [{a, b, metric, score}]
    cardinality: list[dict[str, Any]] = field(default_factory=list)  # [{child, parent, score}]
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # table -> column -> why

    def properties(self) -> dict[str, float | None]:
        """The mean score of each property (None when nothing was measured)."""
        shapes = [c["score"] for t in self.columns.values() for c in t.values()]
        trends = [p["score"] for t in self.pairs.values() for p in t]
        cards = [c["score"] for c in self.cardinality]
        return {
            "column_shapes": _mean(shapes),
            "column_pair_trends": _mean(trends),
            "cardinality": _mean(cards),
        }

    def score(self) -> float | None:
        """The mean of the measured properties."""
        return _mean([v for v in self.properties().values() if v is not None])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "score": self.score(),
            "properties": self.properties(),
            "columns": self.columns,
            "pairs": self.pairs,
            "cardinality": self.cardinality,
            "skipped": self.skipped,
        }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def column_shapes(real: Any, synthetic: Any, kinds: ColumnKinds) -> dict[str, dict[str, Any]]:
    """KS complement of each numeric column and TV complement of each categorical one."""
    out = {}
    for name, kind in kinds.items():
        if kind == "numeric":
            out[name] = {"metric": "KSComplement", "score": ks_complement(real[name], synthetic[name])}
        else:
            out[name] = {"metric": "TVComplement", "score": tv_complement(real[name], synthetic[name])}
    return out


def pair_trends(real: Any, synthetic: Any, kinds: ColumnKinds, max_columns: int) -> list[dict[str, Any]]:
    """Correlation similarity of numeric pairs, contingency similarity of the others."""
    out = []
    for a, b in itertools.combinations(list(kinds)[:max_columns], 2):
        if kinds[a] == kinds[b] == "numeric":
            score = correlation_similarity((real[a], real[b]), (synthetic[a], synthetic[b]))
            if score is not None:
                out.append({"a": a, "b": b, "metric": "CorrelationSimilarity", "score": score})
            continue
        cols_r, cols_s = [real[a], real[b]], [synthetic[a], synthetic[b]]
        for i, col in enumerate((a, b)):
            if kinds[col] == "numeric":
                cols_r[i], cols_s[i] = _binned(real[col], synthetic[col])
        score = contingency_similarity((cols_r[0], cols_r[1]), (cols_s[0], cols_s[1]))
        out.append({"a": a, "b": b, "metric": "ContingencySimilarity", "score": score})
    return out


def fidelity(
    real: Mapping[str, Any],
    synthetic: Mapping[str, Any],
    kinds: Mapping[str, ColumnKinds],
    *,
    pair_rows: int,
    pair_columns: int,
    cardinality: list[dict[str, Any]] | None = None,
) -> FidelityResult:
    """Score ``synthetic`` against ``real`` (``{table: DataFrame}``, samples of each table).

    ``cardinality`` holds ``{child, parent, real, synthetic}`` with children-per-parent
    histograms ``{count: parents}``; pairs use the first ``pair_rows`` rows and the first
    ``pair_columns`` compared columns of each table."""
    result = FidelityResult()
    for table, table_kinds in kinds.items():
        r, s = real[table], synthetic[table]
        result.columns[table] = column_shapes(r, s, table_kinds)
        result.pairs[table] = pair_trends(r.head(pair_rows), s.head(pair_rows), table_kinds, pair_columns)
    for link in cardinality or []:
        score = ks_complement_counts(link["real"], link["synthetic"])
        result.cardinality.append({"child": link["child"], "parent": link["parent"], "score": score})
    return result
