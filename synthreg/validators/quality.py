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
(16 bands x 4 rows); texts sharing a band whose signatures agree on at least
``MIN_AGREEMENT`` of the 64 values are compared by exact Jaccard of their shingle sets and
linked when it is >= ``NEAR_DUPLICATE_THRESHOLD`` (0.7: one edited
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
metrics are still reported, with duplicates counted as identical values (``normalized``:
false): normalising would merge different names or addresses (``a.b@x.org`` and
``ab@xorg``), and it was the costliest step of a 100M-row quality pass (7 of 20 s, on 10M
distinct e-mail addresses). Word diversity (distinct-n) and near duplicates are not measured
on them: names share words and differ by a letter by design (they cost ~0.5 s of a 10M-row
quality pass).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from synthreg.generators.spec import Column, Spec, Table
from synthreg.generators.staging import PartStage
from synthreg.validators.parts import TableParts, lean_memory, open_parts, release_unused

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
#: Candidate pairs whose signatures agree on fewer of the PERMUTATIONS values are not compared:
#: a pair at the threshold's Jaccard (0.7) agrees on 44.8 of 64 on average and on fewer than 24
#: with probability 1.9e-8 (binomial). On short texts from a small vocabulary (a 100k-row
#: `words:` column) it left 0.2-1% of 224k candidate pairs and took the metric from 6.0 to ~1 s.
MIN_AGREEMENT = 24
#: a label column with more distinct values than this gets no balance report.
MAX_CLASSES = 100
#: DuckDB's memory before it spills to disk. At 100M rows (3-table benchmark) 400MB took the same
#: 15.2 s as 1GB and lowered the process's peak RSS from 1.41 to 1.12 GB; 256MB: the 50M-row
#: table's scan in the same ~3.5 s, 390 MB peak RSS instead of 533.
MEMORY_LIMIT = "256MB"
#: DuckDB threads: at least this many even on fewer cores. Its DISTINCT aggregates then
#: partition their hash tables more finely and take about half the CPU time (measured on
#: 2 cores); the results do not depend on it.
MIN_THREADS = 4
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


def table_quality(
    spec: Spec,
    tables_dir: Path,
    cluster: str | None = None,
    *,
    by_parts: bool | None = None,
    observed: Mapping[str, list[tuple[str, Any]]] | None = None,
    stage: PartStage | None = None,
) -> dict[str, Any]:
    """The per-table metrics of :func:`quality_metrics`: everything but the score, which
    :func:`score_quality` adds once the validation is known (``create`` runs the two at once).

    ``by_parts`` (the default with a remote Dask ``cluster``, ``tcp://``, whose workers see
    ``tables_dir``): the counts are taken part by part, as tasks on the cluster (in this
    process without one), and merged (:mod:`quality_parts`): the same numbers, without this
    process reading the tables. ``observed``: the generation's results of a
    ``quality_parts.QualityObserver``, for the parts it counted as they were written; ``stage``:
    the observer's, when the cluster's workers do not see ``tables_dir`` (then a table is counted
    on the cluster only if all its parts were counted as written, here otherwise)."""
    from synthreg.compute.dask import remote

    tables_dir = Path(tables_dir)
    out = {}
    with _connect() as con, lean_memory(spec):
        layouts = {
            name: _layout(spec.tables[name], open_parts(tables_dir, name)) for name in spec.table_order()
        }
        counted: dict[str, Counts] = {}
        if remote(cluster) if by_parts is None else by_parts:
            from synthreg.validators.quality_parts import counts_by_parts

            counted = counts_by_parts(layouts, cluster, observed, stage)
        for name, (layout, parts) in layouts.items():
            counts = counted[name] if name in counted else _counts(con, layout, parts)
            out[name] = _metrics(con, spec.tables[name], layout, counts)
            release_unused()
    return out


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
            "min_signature_agreement": MIN_AGREEMENT,
        },
        "tables": tables,
    }


@contextmanager
def _connect(threads: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection: ``threads`` (at least ``MIN_THREADS`` by default), ``MEMORY_LIMIT``,
    spilling to a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="synthreg-quality-") as spill:
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            con.execute(f"SET threads = {threads or max(MIN_THREADS, _cpus())}")
            con.execute(f"SET temp_directory = '{_sql_str(spill)}'")
            yield con
        finally:
            con.close()


def _cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _sql_str(text: str) -> str:
    return text.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---------------------------------------------------------------- tables and columns


@dataclass(frozen=True)
class Layout:
    """What a table's metrics measure: its spec columns that are present (in spec order), the
    key left out of the duplicate-row hash, the label, the text columns, the free-text ones
    (sampled) and the columns whose shares are counted."""

    names: tuple[str, ...]
    missing: tuple[str, ...]
    key: str | None
    label: str | None
    texts: tuple[str, ...]
    free: tuple[str, ...]
    shares: tuple[str, ...]

    @property
    def hashed(self) -> list[str]:
        """The columns of the duplicate-row hash (all but the primary key), quoted."""
        return [_ident(c) for c in self.names if c != self.key]

    def text_label(self, name: str) -> str | None:
        """The label a text column's conflicts are counted against (None for the label itself)."""
        return self.label if self.label != name else None


@dataclass
class Counts:
    """A table's counts, from which :func:`_metrics` computes its metrics (by DuckDB over the
    whole table here, or merged from the parts' by :mod:`quality_parts`)."""

    rows: int
    #: distinct rows, by a 64-bit hash of the non-key columns
    distinct: int
    non_null: dict[str, int]
    #: each text column's (length, count) histogram, by length
    lengths: dict[str, list[tuple[int, int]]]
    #: each share column's (value as text, count) pairs; more than ``MAX_CLASSES`` means too many
    groups: dict[str, list[tuple[str, int]]]
    #: each text column's distinct values, distinct normalised values, and with a label the
    #: normalised texts seen under 2+ labels and the labelled rows that carry them
    texts: dict[str, tuple[int, int, tuple[int, int] | None]]
    #: each free-text column's sampled values (``_wanted`` rows), in row order
    samples: dict[str, list[str]]


def _layout(table: Table, parts: TableParts) -> tuple[Layout, TableParts]:
    present = set(parts.columns)
    names = tuple(c for c in table.columns if c in present)
    texts = tuple(c for c in names if table.columns[c].type in ("text", "llm_text"))
    layout = Layout(
        names=names,
        missing=tuple(c for c in table.columns if c not in present),
        key=table.primary_key if table.primary_key in present else None,
        label=next((c for c in names if table.columns[c].label), None),
        texts=texts,
        free=tuple(c for c in texts if _is_free_text(table.columns[c])),
        shares=tuple(
            c for c in names if table.columns[c].type in ("category", "bool") or table.columns[c].label
        ),
    )
    return layout, parts


def _view(con: duckdb.DuckDBPyConnection, files: Iterable[Path]) -> None:
    listed = ", ".join(f"'{_sql_str(str(p))}'" for p in files)
    con.execute(f"CREATE OR REPLACE VIEW t AS SELECT * FROM read_parquet([{listed}], union_by_name = true)")


def _counts(con: duckdb.DuckDBPyConnection, layout: Layout, parts: TableParts) -> Counts:
    """A table's counts by DuckDB over all its parts."""
    _view(con, parts.files)
    rows, distinct, non_null, lengths = _scan(con, layout, distinct=True)
    return Counts(
        rows=rows,
        distinct=distinct,
        non_null=non_null,
        lengths=lengths,
        groups={name: _groups(con, name) for name in layout.shares},
        texts={
            name: _distinct(con, _ident(name), layout.text_label(name), normalize=name in layout.free)
            for name in layout.texts
        },
        samples=_samples(parts, list(layout.free)),
    )


def _metrics(con: duckdb.DuckDBPyConnection, table: Table, layout: Layout, counts: Counts) -> dict[str, Any]:
    """A table's metrics from its counts (``con`` normalises the samples)."""
    rows = counts.rows
    samples = _normalize(con, counts.samples)
    columns = {}
    for name in layout.names:
        col = table.columns[name]
        metrics = {"type": col.type, **_nulls(rows - counts.non_null[name], rows, col.null_rate)}
        if name in counts.groups:
            metrics |= _proportions(counts.groups[name], col)
        if name in counts.lengths:
            metrics["text"] = _text_metrics(
                col, layout.text_label(name), counts.non_null[name], counts.lengths[name],
                counts.texts[name], samples.get(name),
            )  # fmt: skip
        columns[name] = metrics
    return {
        "rows": rows,
        "declared_rows": table.rows,
        "primary_key": layout.key,
        "duplicate_rows": rows - counts.distinct,
        "duplicate_row_rate": (rows - counts.distinct) / rows if rows else 0.0,
        "missing_columns": list(layout.missing),
        "columns": columns,
    }


def _scan(
    con: duckdb.DuckDBPyConnection, layout: Layout, *, distinct: bool
) -> tuple[int, int, dict[str, int], dict[str, list[tuple[int, int]]]]:
    """Rows, distinct rows (by a hash of the non-key columns; the rows when not ``distinct``),
    non-null counts and the length histogram of every text column, in one pass."""
    names, texts, hashed = layout.names, layout.texts, layout.hashed
    aggregates = [
        "count(*)",
        f"count(DISTINCT hash({', '.join(hashed)}))" if hashed and distinct else "count(*)",
    ]
    aggregates += [f"count({_ident(c)})" for c in names]
    aggregates += [f"histogram(length({_ident(c)}))" for c in texts]
    row = next(
        iter(con.execute(f"SELECT {', '.join(aggregates)} FROM t").fetchall()), None
    )  # whole: the result is done
    assert row is not None
    rows = int(row[0])
    non_null = {c: int(v) for c, v in zip(names, row[2 : 2 + len(names)], strict=True)}
    hists = row[2 + len(names) :]
    lengths = {
        c: sorted((int(n), int(k)) for n, k in (h or {}).items()) for c, h in zip(texts, hists, strict=True)
    }
    return rows, int(row[1]) if rows else 0, non_null, lengths


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


def _groups(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, int]]:
    """The non-null values of a column as text and their counts (``MAX_CLASSES + 1`` at most)."""
    q = _ident(name)
    return [
        (str(v), int(n))
        for v, n in con.execute(
            f"SELECT CAST({q} AS VARCHAR) AS v, count(*) FROM t WHERE {q} IS NOT NULL "
            f"GROUP BY v ORDER BY v LIMIT {MAX_CLASSES + 1}"
        ).fetchall()
    ]


def _proportions(counted: list[tuple[str, int]], col: Column) -> dict[str, Any]:
    """Observed shares of the non-null values against the spec's; label balance for labels."""
    if len(counted) > MAX_CLASSES:
        return {"classes_over": MAX_CLASSES}
    groups = sorted(counted)  # by value (code points: DuckDB's order of its UTF-8 bytes)
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
    col: Column,
    label: str | None,
    values: int,
    lengths: list[tuple[int, int]],
    distinct: tuple[int, int, tuple[int, int] | None],
    sample: list[str] | None,
) -> dict[str, Any]:
    """A text column's metrics; word diversity and near duplicates only for free text (``sample``
    is then its normalised sample; None for structured text)."""
    free = _is_free_text(col)
    raw, norm_distinct, conflicts = distinct
    out: dict[str, Any] = {
        "scored": free,
        "normalized": free,
        "values": values,
        "length": _quantiles(lengths, values),
        "distinct_ratio": raw / values if values else None,
        "exact_duplicate_rate": (values - norm_distinct) / values if values else 0.0,
        **(_diversity(sample) | _near_duplicates(sample) if sample is not None else {}),
    }
    if conflicts is not None:
        texts, rows = conflicts
        out["label_conflicts"] = {
            "label": label,
            "texts": texts,
            "rows": rows,
            "rate": rows / values if values else 0.0,
        }
    return out


def _distinct(
    con: duckdb.DuckDBPyConnection, q: str, label: str | None, *, normalize: bool = True
) -> tuple[int, int, tuple[int, int] | None]:
    """Distinct values and distinct normalised values (both by 64-bit hash) of a text column
    and, with a ``label``, the normalised texts seen under 2+ distinct labels and the labelled
    rows that carry them.

    The normalisation (two regular expressions, the costly part) runs once per distinct
    value, or per distinct (value, label) pair, not once per row; DuckDB spreads it over
    its threads even when the column is a single row group. ``normalize=False`` (structured
    text) counts identical values: both counts are then the distinct values.
    """
    norm = _NORMALIZE.format("v") if normalize else "v"
    if label is None and not normalize:
        row = con.execute(f"SELECT count(DISTINCT hash({q})) FROM t WHERE {q} IS NOT NULL").fetchone()
        distinct = int(row[0]) if row else 0
        return distinct, distinct, None
    if label is None:
        row = con.execute(
            f"SELECT count(DISTINCT hash(v)), count(DISTINCT hash({norm})) "
            f"FROM (SELECT DISTINCT {q} AS v FROM t WHERE {q} IS NOT NULL)"
        ).fetchone()
        distinct, norm_distinct = (int(v) for v in row or (0, 0))
        return distinct, norm_distinct, None
    texts = (
        f"SELECT {norm} AS k, count(DISTINCT l) AS labels, sum(n) FILTER (WHERE l IS NOT NULL) AS n "
        f"FROM ({_pairs(q, label)}) GROUP BY k"
    )
    row = con.execute(
        f"SELECT (SELECT count(DISTINCT hash({q})) FROM t WHERE {q} IS NOT NULL), count(DISTINCT hash(k)), "
        f"count(*) FILTER (WHERE labels > 1), coalesce(sum(n) FILTER (WHERE labels > 1), 0) FROM ({texts})"
    ).fetchone()
    distinct, norm_distinct, texts_n, rows = (int(v) for v in row or (0, 0, 0, 0))
    return distinct, norm_distinct, (texts_n, rows)


def _pairs(q: str, label: str) -> str:
    """SQL: each distinct (text, label) pair of the non-null texts, with its rows."""
    return f"SELECT {q} AS v, {_ident(label)} AS l, count(*) AS n FROM t WHERE {q} IS NOT NULL GROUP BY v, l"


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


def _wanted(rows: int) -> np.ndarray:
    """The sampled rows of a table of ``rows`` rows: up to ``SAMPLE_VALUES``, evenly spaced."""
    k = min(rows, SAMPLE_VALUES)
    return (np.arange(k, dtype=np.int64) * rows) // k if k else np.zeros(0, dtype=np.int64)


def _samples(parts: TableParts, names: list[str]) -> dict[str, list[str]]:
    """Per column, the non-null values of up to ``SAMPLE_VALUES`` rows, evenly spaced over the
    row order; only the row groups that hold those rows are read (all columns at once), one at
    a time: a 10M-row text column is not held whole (it was 0.6 GB at 100M rows)."""
    out: dict[str, list[str]] = {name: [] for name in names}
    wanted = _wanted(parts.rows)
    if not names or not wanted.size:
        return out
    offset = 0
    for path, md in zip(parts.files, parts.metadata, strict=True):
        lo, hi = np.searchsorted(wanted, [offset, offset + md.num_rows])
        for name, values in _picked(path, md, names, wanted[lo:hi] - offset).items():
            out[name] += values
        offset += md.num_rows
    return out


def _picked(path: Path, md: Any, names: list[str], rows: np.ndarray) -> dict[str, list[str]]:
    """The non-null values of ``names`` at ``rows`` (ascending) of one part, reading only the row
    groups that hold them (a column the part lacks gives none)."""
    import pyarrow.parquet as pq

    out: dict[str, list[str]] = {name: [] for name in names}
    present = [c for c in names if c in md.schema.to_arrow_schema().names]
    if not present or not len(rows):
        return out
    reader = pq.ParquetFile(path)
    start = 0
    for g in range(md.num_row_groups):
        n = md.row_group(g).num_rows
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            picked = np.ascontiguousarray(rows[lo:hi] - start, dtype=np.int64)
            # from a buffer: pa.array(ndarray) would import pandas (~0.4 s) only to check the type
            index = pa.Array.from_buffers(pa.int64(), picked.size, [None, pa.py_buffer(picked)])
            data = reader.read_row_group(g, columns=present)
            for name in present:
                out[name] += [v for v in data.column(name).take(index).to_pylist() if v is not None]
        start += n
    return out


def _normalize(con: duckdb.DuckDBPyConnection, samples: dict[str, list[str]]) -> dict[str, list[str]]:
    """The same normalisation DuckDB applies to whole columns, on the samples: once per
    distinct value, all columns in one query (a list parameter, no DataFrame)."""
    if not samples:
        return {}
    distinct = [list(dict.fromkeys(values)) for values in samples.values()]
    lists = ", ".join(
        f"list_transform(${i + 1}::VARCHAR[], lambda v: {_NORMALIZE.format('v')})"
        for i in range(len(distinct))
    )
    row = con.execute(f"SELECT {lists}", distinct).fetchone()
    assert row is not None
    out = {}
    for (name, values), keys, normalized in zip(samples.items(), distinct, row, strict=True):
        mapping = dict(zip(keys, normalized or [], strict=True))
        out[name] = [mapping[v] for v in values]
    return out


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


def _buckets(sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Groups (2+ members, ascending) of texts whose signatures agree on a whole band, band
    after band and, within a band, by band key: all members in that order, and each one's
    position in its group."""
    members: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    for b in range(BANDS):
        band = sig[:, b * ROWS_PER_BAND : (b + 1) * ROWS_PER_BAND]
        key = band[:, 0]
        for j in range(1, ROWS_PER_BAND):
            key = _mix(key) ^ band[:, j]
        order = np.argsort(key, kind="stable")  # stable: a group's members stay ascending
        ordered = key[order]
        head = np.concatenate(([True], ordered[1:] != ordered[:-1]))
        group = np.cumsum(head) - 1
        heads = np.flatnonzero(head)
        kept = np.bincount(group)[group] > 1
        members.append(order[kept])
        positions.append((np.arange(order.size) - heads[group])[kept])
    return np.concatenate(members), np.concatenate(positions)


def _clusters(texts: list[str]) -> int:
    """Connected components of distinct ``texts`` linked by shingle Jaccard >= the threshold.

    Group by group (as :func:`_buckets` orders them), each member is checked against the
    up to ``PROBES`` members before it, nearest first, until one is already in its cluster
    (stop) or is similar (join its cluster, stop). Every window pair's similarity is
    computed up front, once per distinct pair; only members with a similar pair in their
    window can join anything, so only those are walked.
    """
    n = len(texts)
    if n < 2:
        return n
    hashes, starts = _shingles(texts)
    sig = _signatures(hashes, starts)
    members, positions = _buckets(sig)
    rows = [np.flatnonzero(positions >= d) for d in range(1, PROBES + 1)]
    later = np.concatenate([members[r] for r in rows])
    earlier = np.concatenate([members[r - d] for d, r in enumerate(rows, start=1)])
    pairs, inverse = np.unique(later * n + earlier, return_inverse=True)
    a, b = pairs // n, pairs % n
    linked = np.zeros(pairs.size, dtype=bool)
    compared = np.flatnonzero(_agreement(sig, a, b) >= MIN_AGREEMENT)
    linked[compared] = _similar(hashes, starts, a[compared], b[compared])
    similar = np.zeros((members.size, PROBES), dtype=bool)
    similar[np.concatenate(rows), np.repeat(np.arange(PROBES), [r.size for r in rows])] = linked[
        inverse.ravel()
    ]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    member = members.tolist()
    position = positions.tolist()
    for i in np.flatnonzero(similar.any(axis=1)).tolist():
        a = member[i]
        for d in range(1, min(position[i], PROBES) + 1):
            root, other = find(a), find(member[i - d])
            if root == other:
                break
            if similar[i, d - 1]:
                parent[root] = other
                break
    return sum(1 for i in range(n) if find(i) == i)


def _agreement(sig: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """For each pair, on how many of the signature values texts ``a[k]`` and ``b[k]`` agree."""
    out = np.empty(a.size, dtype=np.int64)
    for at in range(0, a.size, chunk):
        out[at : at + chunk] = (sig[a[at : at + chunk]] == sig[b[at : at + chunk]]).sum(axis=1)
    return out


def _similar(hashes: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether texts ``a[k]`` and ``b[k]`` have shingle-set Jaccard >= the threshold."""
    if a.size > 8 * starts.size:  # many pairs per text (short, look-alike codes): vectorised
        size, inter = _intersections(hashes, starts, a, b)
    else:
        bounds = np.append(starts, hashes.size).tolist()
        values = hashes.tolist()
        sets = [frozenset[int]()] * starts.size
        for i in set(a.tolist()) | set(b.tolist()):
            sets[i] = frozenset(values[bounds[i] : bounds[i + 1]])
        inter = np.array(
            [len(sets[i] & sets[j]) for i, j in zip(a.tolist(), b.tolist(), strict=True)], dtype=np.int64
        )
        size = np.array([len(x) for x in sets], dtype=np.int64)
    # the float arithmetic of ``inter >= t * (|x| + |y| - inter)`` on Python ints, elementwise
    return inter >= NEAR_DUPLICATE_THRESHOLD * (size[a] + size[b] - inter)


def _intersections(
    hashes: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every text's number of distinct shingles, and ``|set(a[k]) & set(b[k])|`` for every k:
    the smaller set's shingles are looked up in the larger one's (sorted) with one search."""
    texts = starts.size
    unique, dense = np.unique(hashes, return_inverse=True)
    m = np.int64(unique.size)
    owner = np.repeat(np.arange(texts, dtype=np.int64), np.diff(np.append(starts, hashes.size)))
    keys = np.unique(owner * m + dense.ravel())  # (text, shingle), each once, sorted
    size = np.bincount(keys // m, minlength=texts)
    first = np.cumsum(size) - size
    smaller = size[a] <= size[b]
    x, y = np.where(smaller, a, b), np.where(smaller, b, a)
    counts = size[x]
    offsets = np.cumsum(counts) - counts
    picked = np.repeat(first[x] - offsets, counts) + np.arange(int(counts.sum()))
    queries = np.repeat(y * m, counts) + keys[picked] % m
    found = np.searchsorted(keys, queries)
    hit = keys[np.minimum(found, keys.size - 1)] == queries
    return size, np.add.reduceat(hit.astype(np.int64), offsets)


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
