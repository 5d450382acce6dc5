"""Quality metrics of a version's tables, and one ``quality_score`` in [0, 1].

Every table is read from its Parquet parts by DuckDB, which streams them and spills
to a temporary directory past ``MEMORY_LIMIT``; text-diversity and near-duplicate
metrics use a bounded, deterministic sample (``SAMPLE_VALUES`` rows, evenly spaced in
row order). Same data, same numbers: nothing depends on time, threads or Python's
salted ``hash``.

Per column: null rate against the declared ``null_rate``. Category and bool columns:
observed proportions (over non-null values) against the spec's, as the largest
absolute deviation and the total variation distance (TVD = half the L1 distance);
label columns also get their balance (``imbalance_ratio`` = largest / smallest class
share). Text columns: length quantiles (nearest rank), distinct ratio, exact
duplicate rate after normalisation (lower case, punctuation and symbols removed,
whitespace collapsed; counted by 64-bit hash), distinct-1/distinct-2 (unique word
unigrams/bigrams over all of them, on the sample), the near-duplicate rate (below)
and, in a table with a label column, the texts seen under two different labels.
Per table: rows and the exact duplicate row rate (a hash of every column but the
primary key; ``(rows - distinct) / rows``).

Near duplicates: the distinct normalised texts of the sample are shingled into
character 5-grams, MinHashed (64 fixed seeded 64-bit hash functions) and banded
(16 bands x 4 rows); texts sharing a band are compared by exact Jaccard of their
shingle sets and linked when it is >= ``NEAR_DUPLICATE_THRESHOLD`` (0.7: one edited
character inside a 40-character text gives 31/41 = 0.76). With N sampled values,
D distinct texts and C linked clusters, ``near_duplicate_rate = (D - C) / N``: the
sampled values that only repeat another text with small edits (exact copies are
the exact duplicate rate's). Each text is checked against at most ``PROBES``
earlier texts per bucket, which keeps the work linear.

The score (``FORMULA``, also in every result)::

    quality_score = sum(w_k * c_k) / sum(w_k), over the components k present
    validation            (w 0.30) = validation success ratio (when given)
    categories            (w 0.15) = 1 - mean TVD of category/bool columns
    duplicate_rows        (w 0.15) = 1 - mean exact duplicate row rate of the tables
    nulls                 (w 0.10) = 1 - mean null-rate excess (observed - declared, >= 0)
    text_duplicates       (w 0.10) = 1 - mean exact duplicate rate of free-text columns
    text_near_duplicates  (w 0.10) = 1 - mean near-duplicate rate of free-text columns
    label_conflicts       (w 0.10) = 1 - mean share of free-text rows whose text has 2+ labels

Free-text columns are text columns except patterns and ``STRUCTURED_VOCABS`` (names,
places, identifiers), where repeats and shared substrings are by design; their text
metrics are still reported.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from synthreg.generators.spec import Column, Spec, Table
from synthreg.validators.parts import TableParts, open_parts

__all__ = [
    "FORMULA",
    "NEAR_DUPLICATE_THRESHOLD",
    "SAMPLE_VALUES",
    "STRUCTURED_VOCABS",
    "WEIGHTS",
    "quality_metrics",
    "score_quality",
    "table_quality",
]

SAMPLE_VALUES = 20_000
SHINGLE = 5
PERMUTATIONS = 64
BANDS = 16
ROWS_PER_BAND = PERMUTATIONS // BANDS
NEAR_DUPLICATE_THRESHOLD = 0.7
PROBES = 8
#: a label column with more distinct values than this gets no balance report.
MAX_CLASSES = 100
MEMORY_LIMIT = "1GB"
QUANTILES = {"p5": 0.05, "p50": 0.5, "p95": 0.95}
STRUCTURED_VOCABS = frozenset(
    {
        "first_name", "last_name", "full_name", "email", "username", "city", "country",
        "street_address", "phone", "company", "job", "product", "url",
    }
)  # fmt: skip
WEIGHTS = {
    "validation": 0.30,
    "categories": 0.15,
    "duplicate_rows": 0.15,
    "nulls": 0.10,
    "text_duplicates": 0.10,
    "text_near_duplicates": 0.10,
    "label_conflicts": 0.10,
}
_DESCRIPTIONS = {
    "validation": "validation success ratio",
    "categories": "1 - mean TVD of category/bool columns vs the spec",
    "duplicate_rows": "1 - mean exact duplicate row rate (primary key excluded)",
    "nulls": "1 - mean null-rate excess over the declared null_rate",
    "text_duplicates": "1 - mean normalised exact duplicate rate of free-text columns",
    "text_near_duplicates": "1 - mean near-duplicate rate of free-text columns",
    "label_conflicts": "1 - mean share of free-text rows whose text has 2+ labels",
}
FORMULA = "quality_score = sum(w_k * c_k) / sum(w_k) over the components present; " + "; ".join(
    f"{k} (w {w:.2f}) = {_DESCRIPTIONS[k]}" for k, w in WEIGHTS.items()
)
# RE2 (DuckDB's regex engine): \pP punctuation, \pS symbols, \pZ Unicode spaces.
_NORMALIZE = r"trim(regexp_replace(regexp_replace(lower({}), '[\pP\pS]+', '', 'g'), '[\s\pZ]+', ' ', 'g'))"
_U64 = np.uint64
_SENTINEL = 0x110000  # past the last code point: pads texts shorter than a shingle


def quality_metrics(spec: Spec, tables_dir: Path, validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """Quality metrics of every table under ``tables_dir`` (``<table>/*.parquet``) against ``spec``.

    ``validation`` is ``validate_tables(...).to_dict()``; its success ratio joins the
    score when given. The result is JSON-serialisable and deterministic; a table
    without parts raises ``NotFoundError``.
    """
    return score_quality(table_quality(spec, tables_dir), validation)


def table_quality(spec: Spec, tables_dir: Path) -> dict[str, Any]:
    """The per-table metrics of :func:`quality_metrics`: everything but the score, which
    :func:`score_quality` adds once the validation is known (``create`` runs the two at once)."""
    with _connect() as con:
        return {
            name: _table_metrics(con, spec.tables[name], open_parts(Path(tables_dir), name))
            for name in spec.table_order()
        }


def score_quality(tables: dict[str, Any], validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """quality.json from :func:`table_quality`'s tables and the validation (when given)."""
    components = _components(tables, validation)
    total = sum(c["weight"] for c in components.values())
    score = sum(c["weight"] * c["value"] for c in components.values()) / total if total else 1.0
    return {
        "quality_score": min(1.0, max(0.0, score)),
        "formula": FORMULA,
        "components": components,
        "params": {
            "sample_values": SAMPLE_VALUES,
            "shingle": SHINGLE,
            "permutations": PERMUTATIONS,
            "bands": BANDS,
            "rows_per_band": ROWS_PER_BAND,
            "near_duplicate_threshold": NEAR_DUPLICATE_THRESHOLD,
            "probes": PROBES,
        },
        "tables": tables,
    }


@contextmanager
def _connect() -> Iterator[duckdb.DuckDBPyConnection]:
    with tempfile.TemporaryDirectory(prefix="synthreg-quality-") as spill:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory = '{_sql_str(spill)}'")
            yield con
        finally:
            con.close()


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- tables and columns


def _table_metrics(con: duckdb.DuckDBPyConnection, table: Table, parts: TableParts) -> dict[str, Any]:
    files = ", ".join(f"'{_sql_str(str(p))}'" for p in parts.files)
    con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet([{files}], union_by_name = true)")
    present = set(parts.columns)
    names = [c for c in table.columns if c in present]
    key = table.primary_key if table.primary_key in present else None
    rows, distinct, non_null = _scan(con, names, key)
    label = next((c for c in names if table.columns[c].label), None)
    columns = {}
    for name in names:
        col = table.columns[name]
        metrics = {"type": col.type, **_nulls(rows - non_null[name], rows, col.null_rate)}
        if col.type in ("category", "bool") or col.label:
            metrics |= _proportions(con, name, col)
        if col.type in ("text", "llm_text"):
            metrics["text"] = _text_metrics(con, parts, name, col, label if label != name else None)
        columns[name] = metrics
    return {
        "rows": rows,
        "declared_rows": table.rows,
        "primary_key": key,
        "duplicate_rows": rows - distinct,
        "duplicate_row_rate": (rows - distinct) / rows if rows else 0.0,
        "missing_columns": [c for c in table.columns if c not in present],
        "columns": columns,
    }


def _scan(
    con: duckdb.DuckDBPyConnection, names: list[str], key: str | None
) -> tuple[int, int, dict[str, int]]:
    """Rows, distinct rows (by a hash of the non-key columns) and non-null counts, in one pass."""
    others = [_ident(c) for c in names if c != key]
    distinct = f"count(DISTINCT hash({', '.join(others)}))" if others else "count(*)"
    counts = ", ".join(f"count({_ident(c)})" for c in names)
    row = con.execute(f"SELECT count(*), {distinct}{', ' if counts else ''}{counts} FROM t").fetchone()
    assert row is not None
    rows = int(row[0])
    return rows, int(row[1]) if rows else 0, {c: int(v) for c, v in zip(names, row[2:], strict=True)}


def _nulls(nulls: int, rows: int, declared: float) -> dict[str, Any]:
    rate = nulls / rows if rows else 0.0
    return {
        "nulls": nulls,
        "null_rate": rate,
        "declared_null_rate": declared,
        "null_rate_diff": rate - declared,
        "null_excess": max(0.0, rate - declared),
    }


def _expected(col: Column) -> dict[str, float] | None:
    if col.type == "category":
        cats = col.categories
        probs = col.probabilities or [1.0 / len(cats)] * len(cats)
        return dict(zip(cats, probs, strict=True))
    if col.type == "bool" and col.expr is None:
        p = 0.5 if col.p is None else col.p
        return {"true": p, "false": 1.0 - p}
    return None


def _proportions(con: duckdb.DuckDBPyConnection, name: str, col: Column) -> dict[str, Any]:
    """Observed shares of the non-null values against the spec's; label balance for labels."""
    q = _ident(name)
    groups = con.execute(
        f"SELECT CAST({q} AS VARCHAR) AS v, count(*) FROM t WHERE {q} IS NOT NULL "
        f"GROUP BY v ORDER BY v LIMIT {MAX_CLASSES + 1}"
    ).fetchall()
    if len(groups) > MAX_CLASSES:
        return {"classes_over": MAX_CLASSES}
    total = sum(n for _, n in groups)
    observed = {str(v): n / total for v, n in groups} if total else {}
    expected = _expected(col)
    out: dict[str, Any] = {"proportions": observed, "expected": expected}
    if expected is not None and total:
        keys = list(expected) + sorted(set(observed) - set(expected))
        diffs = [abs(observed.get(k, 0.0) - expected.get(k, 0.0)) for k in keys]
        out |= {"max_abs_deviation": max(diffs), "tvd": 0.5 * sum(diffs)}
    if col.label:
        missing = [k for k in expected or {} if k not in observed]
        shares = list(observed.values())
        ratio = max(shares) / min(shares) if shares and not missing else None
        out["label_balance"] = {"proportions": observed, "imbalance_ratio": ratio, "missing_classes": missing}
    return out


# ---------------------------------------------------------------- text


def _is_free_text(col: Column) -> bool:
    if col.type == "llm_text":
        return True
    return col.type == "text" and col.pattern is None and col.vocab not in STRUCTURED_VOCABS


def _text_metrics(
    con: duckdb.DuckDBPyConnection, parts: TableParts, name: str, col: Column, label: str | None
) -> dict[str, Any]:
    q = _ident(name)
    norm = _NORMALIZE.format(q)
    row = con.execute(
        f"SELECT count(*), count(DISTINCT hash({q})), count(DISTINCT hash({norm})) "
        f"FROM t WHERE {q} IS NOT NULL"
    )
    values, distinct, norm_distinct = (int(v) for v in row.fetchone() or (0, 0, 0))
    hist = con.execute(
        f"SELECT length({q}) AS n, count(*) FROM t WHERE {q} IS NOT NULL GROUP BY n ORDER BY n"
    ).fetchall()
    sample = _normalize(con, _sample(parts, name))
    out: dict[str, Any] = {
        "scored": _is_free_text(col),
        "values": values,
        "length": _quantiles(hist, values),
        "distinct_ratio": distinct / values if values else None,
        "exact_duplicate_rate": (values - norm_distinct) / values if values else 0.0,
        **_diversity(sample),
        **_near_duplicates(sample),
    }
    if label is not None:
        out["label_conflicts"] = _label_conflicts(con, norm, q, label, values)
    return out


def _quantiles(hist: list[tuple[int, int]], total: int) -> dict[str, int | None]:
    """Nearest-rank quantiles (NumPy's ``inverted_cdf``) from a length histogram."""
    if not total:
        return dict.fromkeys(QUANTILES)
    lengths = np.array([n for n, _ in hist], dtype=np.int64)
    cumulative = np.cumsum([c for _, c in hist])
    return {
        name: int(lengths[np.searchsorted(cumulative, q * total, side="left")])
        for name, q in QUANTILES.items()
    }


def _sample(parts: TableParts, name: str) -> list[str]:
    """Non-null values of up to ``SAMPLE_VALUES`` rows, evenly spaced over the row order."""
    rows = parts.rows
    k = min(rows, SAMPLE_VALUES)
    wanted = (np.arange(k, dtype=np.int64) * rows) // max(k, 1)
    out: list[str] = []
    offset = 0
    for batch in parts.batches([name]):
        if offset > (wanted[-1] if k else -1):
            break
        lo, hi = np.searchsorted(wanted, [offset, offset + batch.num_rows])
        if hi > lo:
            taken = batch.column(name).take(pa.array(wanted[lo:hi] - offset))
            out += [v for v in taken.to_pylist() if v is not None]
        offset += batch.num_rows
    return out


def _normalize(con: duckdb.DuckDBPyConnection, values: list[str]) -> list[str]:
    """The same normalisation DuckDB applies to whole columns, on the sample."""
    con.register("quality_sample", pa.table({"v": pa.array(values, type=pa.string())}))
    try:
        rows = con.execute(f"SELECT {_NORMALIZE.format('v')} FROM quality_sample").fetchall()
    finally:
        con.unregister("quality_sample")
    return [r[0] for r in rows]


def _diversity(texts: list[str]) -> dict[str, Any]:
    unigrams: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    n1 = n2 = 0
    for text in texts:
        words = text.split()
        unigrams.update(words)
        bigrams.update(itertools.pairwise(words))
        n1 += len(words)
        n2 += max(0, len(words) - 1)
    return {
        "distinct_1": len(unigrams) / n1 if n1 else None,
        "distinct_2": len(bigrams) / n2 if n2 else None,
    }


def _label_conflicts(
    con: duckdb.DuckDBPyConnection, norm: str, q: str, label: str, values: int
) -> dict[str, Any]:
    """Normalised texts seen under 2+ distinct labels, and the rows that carry them."""
    lab = _ident(label)
    row = con.execute(
        f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT {norm} AS k, count(*) AS n FROM t "
        f"WHERE {q} IS NOT NULL AND {lab} IS NOT NULL GROUP BY k HAVING count(DISTINCT {lab}) > 1)"
    ).fetchone()
    texts, rows = (int(v) for v in row or (0, 0))
    return {"label": label, "texts": texts, "rows": rows, "rate": rows / values if values else 0.0}


# ---------------------------------------------------------------- near duplicates (MinHash + LSH)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-mixing 64-bit hash (uint64 arithmetic wraps)."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _shingles(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every character 5-gram of every text, and where each text's hashes start."""
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    padded = np.maximum(lengths, SHINGLE)
    pstart = np.concatenate(([0], np.cumsum(padded)[:-1]))
    codes = np.full(int(padded.sum()), _SENTINEL, dtype=np.uint64)
    points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    lstart = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    codes[np.repeat(pstart - lstart, lengths) + np.arange(points.size)] = points
    windows = padded - SHINGLE + 1
    first = np.repeat(pstart, windows) + (
        np.arange(int(windows.sum())) - np.repeat(np.cumsum(windows) - windows, windows)
    )
    h = codes[first]
    for j in range(1, SHINGLE):
        h = h * _U64(0x100000001B3) + codes[first + j]
    return _mix(h), np.concatenate(([0], np.cumsum(windows)[:-1]))


def _signatures(hashes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    seeds = _mix(np.arange(1, PERMUTATIONS + 1, dtype=np.uint64) * _U64(0x9E3779B97F4A7C15))
    sig = np.empty((starts.size, PERMUTATIONS), dtype=np.uint64)
    for k, seed in enumerate(seeds):
        sig[:, k] = np.minimum.reduceat(_mix(hashes ^ seed), starts)
    return sig


def _buckets(sig: np.ndarray) -> Iterator[np.ndarray]:
    """Groups (2+ members, ascending) of texts whose signatures agree on a whole band."""
    for b in range(BANDS):
        band = sig[:, b * ROWS_PER_BAND : (b + 1) * ROWS_PER_BAND]
        key = band[:, 0]
        for j in range(1, ROWS_PER_BAND):
            key = _mix(key) ^ band[:, j]
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        heads = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
        sizes = np.diff(np.concatenate((heads, [ordered.size])))
        for head, size in zip(heads[sizes > 1], sizes[sizes > 1], strict=True):
            yield np.sort(order[head : head + size])


def _clusters(texts: list[str]) -> int:
    """Connected components of distinct ``texts`` linked by shingle Jaccard >= the threshold."""
    if len(texts) < 2:
        return len(texts)
    hashes, starts = _shingles(texts)
    ends = np.append(starts[1:], hashes.size)
    sets: dict[int, frozenset[int]] = {}
    parent = list(range(len(texts)))

    def shingle_set(i: int) -> frozenset[int]:
        if i not in sets:
            sets[i] = frozenset(hashes[starts[i] : ends[i]].tolist())
        return sets[i]

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def similar(a: int, b: int) -> bool:
        x, y = shingle_set(a), shingle_set(b)
        inter = len(x & y)
        return inter >= NEAR_DUPLICATE_THRESHOLD * (len(x) + len(y) - inter)

    for group in _buckets(_signatures(hashes, starts)):
        for pos in range(1, group.size):
            a = int(group[pos])
            for b in (int(v) for v in group[max(0, pos - PROBES) : pos][::-1]):
                if find(a) == find(b):
                    break
                if similar(a, b):
                    parent[find(a)] = find(b)
                    break
    return len({find(i) for i in range(len(texts))})


def _near_duplicates(sample: list[str]) -> dict[str, Any]:
    distinct = sorted(set(sample))  # sorted: the result must not depend on row order
    clusters = _clusters(distinct)
    n = len(sample)
    return {
        "sample": n,
        "sample_distinct": len(distinct),
        "near_duplicate_texts": len(distinct) - clusters,
        "near_duplicate_rate": (len(distinct) - clusters) / n if n else 0.0,
    }


# ---------------------------------------------------------------- score


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _components(tables: dict[str, Any], validation: dict[str, Any] | None) -> dict[str, Any]:
    """Each score component (in [0, 1], higher is better) with its weight and what it measures."""
    columns = [c for t in tables.values() for c in t["columns"].values()]
    free = [c["text"] for c in columns if "text" in c and c["text"]["scored"]]
    bad: dict[str, float | None] = {
        "categories": _mean([c["tvd"] for c in columns if "tvd" in c]),
        "duplicate_rows": _mean([t["duplicate_row_rate"] for t in tables.values() if t["rows"]]),
        "nulls": _mean([c["null_excess"] for c in columns]),
        "text_duplicates": _mean([t["exact_duplicate_rate"] for t in free]),
        "text_near_duplicates": _mean([t["near_duplicate_rate"] for t in free]),
        "label_conflicts": _mean([t["label_conflicts"]["rate"] for t in free if "label_conflicts" in t]),
    }
    values = {k: 1.0 - min(1.0, v) for k, v in bad.items() if v is not None}
    if validation is not None:
        values["validation"] = _success_ratio(validation)
    return {
        k: {"value": values[k], "weight": w, "description": _DESCRIPTIONS[k]}
        for k, w in WEIGHTS.items()
        if k in values
    }


def _success_ratio(validation: dict[str, Any]) -> float:
    if validation.get("success_ratio") is not None:
        return float(validation["success_ratio"])
    evaluated = int(validation.get("evaluated", 0))
    return (evaluated - int(validation.get("failed", 0))) / evaluated if evaluated else 1.0
