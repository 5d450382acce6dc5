"""Diff two dataset versions: generation facts, schemas, rows and column distributions.

``diff_versions`` reads two version directories (``spec.yaml``, ``manifest.json``,
``tables/<table>/part-*.parquet``) and returns a :class:`DiffResult`. The data work
streams through DuckDB (``DUCKDB_THREADS`` threads, ``DUCKDB_MEMORY_LIMIT``, spilling to
a temporary directory), so memory does not grow with the row count; no table is read
whole into Python.

- **schema**: each column's logical type is the spec's (int, float, ..., uuid) when the
  Parquet type agrees with it, else the type read from Parquet; so narrower or wider
  integer encodings are no change, but a column rewritten as float is.
- **rows with a primary key**: a FULL OUTER JOIN of the two tables on the key; a key on
  one side only is added or removed; a key on both is *changed* when DuckDB's 64-bit
  ``hash`` of its other columns differs. Only the columns both versions have enter the
  hash (added and removed columns are reported under ``schema``); a column whose type
  changed inside one family (int/float, date/datetime, category/text/uuid) is cast to a
  common type first, one retyped across families (int -> category) is left out.
- **rows without a primary key** (or with a key missing on one side): the multiset
  difference of row hashes, ``added = sum(max(n_b(h) - n_a(h), 0))`` over the hashes,
  ``removed`` likewise, ``unchanged = sum(min(n_a(h), n_b(h)))``; ``changed`` is None,
  since without a key a changed row is one removed row plus one added row.
- **columns**: :mod:`synthreg.registry.diff_stats` (the primary key is left out: the
  row diff covers it).
"""

from __future__ import annotations

import difflib
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg.errors import NotFoundError, SynthregError
from synthreg.generators.spec import Column, Spec
from synthreg.generators.spec_io import load_spec
from synthreg.registry.diff_stats import ColumnPair, column_stats, quote, view_name

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

__all__ = ["DUCKDB_MEMORY_LIMIT", "DUCKDB_THREADS", "DiffResult", "diff_versions"]

DUCKDB_THREADS = 2
DUCKDB_MEMORY_LIMIT = "1GB"
EXAMPLES = 5

_FAMILY = {"int": "number", "float": "number", "date": "time", "datetime": "time", "bool": "bool"}
_FAMILY |= {"category": "string", "text": "string", "uuid": "string", "llm_text": "string"}
_SQL_TYPE = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE", "datetime": "TIMESTAMP"}
_SQL_TYPE |= {"category": "VARCHAR", "text": "VARCHAR", "uuid": "VARCHAR", "llm_text": "VARCHAR"}
_FAMILY_SQL_TYPE = {"number": "DOUBLE", "time": "TIMESTAMP", "string": "VARCHAR", "bool": "BOOLEAN"}


@dataclass(frozen=True)
class DiffResult:
    """The difference between version ``a`` and version ``b``; ``to_dict()`` is JSON-ready.

    - ``generation``: seed, model, spec_sha256 and content_digest as ``{"a", "b"}``;
      ``params``: changed generation parameters, flattened key -> ``[a, b]``;
      ``spec_diff``: unified diff of the two ``spec.yaml``.
    - ``tables``: per table ``status`` (added/removed/both), ``rows`` {a, b}, ``schema``
      {added, removed, type_changed {col: [a, b]}}, ``rows_diff`` {mode (key or
      row_hash), key, added, removed, changed, unchanged, examples}, ``columns`` {col:
      stats} (see :mod:`synthreg.registry.diff_stats`), ``changed``.
    - ``summary``: counts of changed tables and columns and a one-line ``text``.
    """

    a: str
    b: str
    generation: dict[str, Any]
    tables: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class _Version:
    label: str
    path: Path
    spec: Spec
    spec_text: str
    manifest: dict[str, Any]
    parts: dict[str, list[Path]]


# ---------------------------------------------------------------- loading


def _parts(path: Path, table: str, label: str) -> list[Path]:
    parts = sorted((path / "tables" / table).glob("*.parquet"))
    if not parts:
        raise NotFoundError(
            f"{label}: no Parquet parts under {path / 'tables' / table}: the version is incomplete; "
            "run 'registry verify' on it"
        )
    return parts


def _load_version(path: Path, label: str) -> _Version:
    if not path.is_dir():
        raise NotFoundError(
            f"{label}: version directory {path} does not exist: check the ref with 'registry list'"
        )
    for name in ("spec.yaml", "manifest.json"):
        if not (path / name).is_file():
            raise NotFoundError(
                f"{label}: {path / name} is missing: the version is incomplete; run 'registry doctor'"
            )
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SynthregError(
            f"{label}: {path / 'manifest.json'} is not valid JSON ({exc}): run 'registry doctor'"
        ) from None
    spec = load_spec(path / "spec.yaml")
    parts = {t: _parts(path, t, label) for t in spec.tables}
    return _Version(label, path, spec, (path / "spec.yaml").read_text(encoding="utf-8"), manifest, parts)


# ---------------------------------------------------------------- generation


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _generation_diff(a: _Version, b: _Version) -> dict[str, Any]:
    """Seeds, models, spec hashes, digests, changed parameters and the spec diff."""
    gen_a, gen_b = a.manifest.get("generation") or {}, b.manifest.get("generation") or {}
    params_a, params_b = _flatten(gen_a.get("params") or {}), _flatten(gen_b.get("params") or {})
    params = {
        k: [params_a.get(k), params_b.get(k)]
        for k in dict.fromkeys([*params_a, *params_b])
        if params_a.get(k) != params_b.get(k)
    }
    diff = difflib.unified_diff(
        a.spec_text.splitlines(),
        b.spec_text.splitlines(),
        f"{a.label}/spec.yaml",
        f"{b.label}/spec.yaml",
        lineterm="",
    )
    return {
        "seed": {"a": a.manifest.get("seed", a.spec.seed), "b": b.manifest.get("seed", b.spec.seed)},
        "model": {"a": gen_a.get("model"), "b": gen_b.get("model")},
        "spec_sha256": {"a": a.manifest.get("spec_sha256"), "b": b.manifest.get("spec_sha256")},
        "content_digest": {"a": a.manifest.get("content_digest"), "b": b.manifest.get("content_digest")},
        "params": params,
        "spec_changed": a.spec.model_dump(exclude={"seed"}) != b.spec.model_dump(exclude={"seed"}),
        "spec_diff": "\n".join(diff),
    }


# ---------------------------------------------------------------- schema


def _arrow_logical(arrow_type: pa.DataType) -> str:
    checks = [
        (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"),
        (pa.types.is_decimal, "float"),
        (pa.types.is_boolean, "bool"),
        (pa.types.is_timestamp, "datetime"),
        (pa.types.is_date, "date"),
        (pa.types.is_dictionary, "category"),
        (pa.types.is_string, "text"),
        (pa.types.is_large_string, "text"),
    ]
    return next((name for check, name in checks if check(arrow_type)), str(arrow_type))


def _column_types(version: _Version, table: str) -> dict[str, str]:
    """Logical type of every column in the Parquet files (see the module docstring)."""
    declared: dict[str, Column] = version.spec.tables[table].columns
    out = {}
    for field in pq.read_schema(version.parts[table][0]):
        inferred = _arrow_logical(field.type)
        spec_col = declared.get(field.name)
        same = spec_col is not None and _FAMILY.get(spec_col.type) == _FAMILY.get(inferred)
        out[field.name] = spec_col.type if same and spec_col is not None else inferred
    return out


def _schema_diff(types_a: dict[str, str], types_b: dict[str, str]) -> dict[str, Any]:
    return {
        "added": [c for c in types_b if c not in types_a],
        "removed": [c for c in types_a if c not in types_b],
        "type_changed": {
            c: [types_a[c], types_b[c]] for c in types_a if c in types_b and types_a[c] != types_b[c]
        },
    }


def _hash_exprs(types_a: dict[str, str], types_b: dict[str, str], key: str | None) -> list[str]:
    """Each comparable common column, cast to one SQL type on both sides."""
    exprs = []
    for col, ta in types_a.items():
        tb = types_b.get(col)
        if col == key or tb is None:
            continue
        if ta == tb:
            sql_type = _SQL_TYPE.get(ta)
        elif _FAMILY.get(ta) is not None and _FAMILY.get(ta) == _FAMILY.get(tb):
            sql_type = _FAMILY_SQL_TYPE[_FAMILY[ta]]
        else:
            continue
        exprs.append(f"CAST({quote(col)} AS {sql_type})" if sql_type else quote(col))
    return exprs


# ---------------------------------------------------------------- rows


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def _rows_by_key(con: DuckDBPyConnection, table: str, key: str, exprs: list[str]) -> dict[str, Any]:
    row_hash = f"hash({', '.join(exprs)})" if exprs else "0"
    sql = f"""
        WITH a AS (SELECT {quote(key)} AS k, {row_hash} AS h, TRUE AS present FROM {view_name("a", table)}),
             b AS (SELECT {quote(key)} AS k, {row_hash} AS h, TRUE AS present FROM {view_name("b", table)})
        SELECT count(*) FILTER (WHERE a.present IS NULL),
               count(*) FILTER (WHERE b.present IS NULL),
               count(*) FILTER (WHERE a.h <> b.h),
               count(*) FILTER (WHERE a.h = b.h),
               min(b.k, {EXAMPLES}) FILTER (WHERE a.present IS NULL),
               min(a.k, {EXAMPLES}) FILTER (WHERE b.present IS NULL),
               min(a.k, {EXAMPLES}) FILTER (WHERE a.h <> b.h)
        FROM a FULL OUTER JOIN b ON a.k = b.k"""
    added, removed, changed, unchanged, *examples = con.execute(sql).fetchall()[0]
    names = ("added", "removed", "changed")
    return {
        "mode": "key",
        "key": key,
        "added": added,
        "removed": removed,
        "changed": changed,
        "unchanged": unchanged,
        "examples": {n: [_jsonable(v) for v in (e or [])] for n, e in zip(names, examples, strict=True)},
    }


def _rows_by_hash(con: DuckDBPyConnection, table: str, exprs: list[str]) -> dict[str, Any]:
    row_hash = f"hash({', '.join(exprs)})" if exprs else "0"
    sql = f"""
        WITH a AS (SELECT {row_hash} AS h, count(*) AS n FROM {view_name("a", table)} GROUP BY h),
             b AS (SELECT {row_hash} AS h, count(*) AS n FROM {view_name("b", table)} GROUP BY h)
        SELECT sum(greatest(coalesce(b.n, 0) - coalesce(a.n, 0), 0)),
               sum(greatest(coalesce(a.n, 0) - coalesce(b.n, 0), 0)),
               sum(least(coalesce(a.n, 0), coalesce(b.n, 0)))
        FROM a FULL OUTER JOIN b ON a.h = b.h"""
    added, removed, unchanged = (int(v or 0) for v in con.execute(sql).fetchall()[0])
    return {
        "mode": "row_hash",
        "key": None,
        "added": added,
        "removed": removed,
        "changed": None,
        "unchanged": unchanged,
    }


def _key(
    a: _Version, b: _Version, table: str, types_a: dict[str, str], types_b: dict[str, str]
) -> str | None:
    """The primary key when both specs declare the same one and both sides have it."""
    key_a, key_b = a.spec.tables[table].primary_key, b.spec.tables[table].primary_key
    return key_a if key_a and key_a == key_b and key_a in types_a and key_a in types_b else None


# ---------------------------------------------------------------- tables


def _row_count(parts: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts)


def _one_sided(version: _Version, table: str, status: str) -> dict[str, Any]:
    """A table only one version has: every row added (or removed)."""
    rows = _row_count(version.parts[table])
    columns = list(_column_types(version, table))
    key = version.spec.tables[table].primary_key
    added = status == "added"
    return {
        "status": status,
        "rows": {"a": 0 if added else rows, "b": rows if added else 0},
        "schema": {
            "added": columns if added else [],
            "removed": [] if added else columns,
            "type_changed": {},
        },
        "rows_diff": {
            "mode": "key" if key else "row_hash",
            "key": key,
            "added": rows if added else 0,
            "removed": 0 if added else rows,
            "changed": 0 if key else None,
            "unchanged": 0,
        },
        "columns": {},
        "changed": True,
    }


def _pairs(
    a: _Version, b: _Version, table: str, types_a: dict[str, str], types_b: dict[str, str]
) -> list[ColumnPair]:
    """The columns both sides have, primary keys (of either spec) left out."""
    keys = {a.spec.tables[table].primary_key, b.spec.tables[table].primary_key}
    pairs = []
    for col, ta in types_a.items():
        if col in keys or col not in types_b:
            continue
        labels = [v.spec.tables[table].columns.get(col) for v in (a, b)]
        label = any(c is not None and c.label for c in labels)
        pairs.append(ColumnPair(table, col, ta, types_b[col], label))
    return pairs


def _table_diff(
    con: DuckDBPyConnection, a: _Version, b: _Version, table: str
) -> tuple[dict[str, Any], list[ColumnPair]]:
    """One table present in both versions; also the column pairs compared."""
    types_a, types_b = _column_types(a, table), _column_types(b, table)
    schema = _schema_diff(types_a, types_b)
    key = _key(a, b, table, types_a, types_b)
    exprs = _hash_exprs(types_a, types_b, key)
    rows_diff = _rows_by_key(con, table, key, exprs) if key else _rows_by_hash(con, table, exprs)
    pairs = _pairs(a, b, table, types_a, types_b)
    columns = {p.name: column_stats(con, p) for p in pairs}
    moved = any(rows_diff[k] for k in ("added", "removed", "changed"))
    changed = moved or any(schema.values()) or any(c["changed"] for c in columns.values())
    result = {
        "status": "both",
        "rows": {"a": _row_count(a.parts[table]), "b": _row_count(b.parts[table])},
        "schema": schema,
        "rows_diff": rows_diff,
        "columns": columns,
        "changed": changed,
    }
    return result, pairs


# ---------------------------------------------------------------- DuckDB


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def _connect(threads: int, memory_limit: str) -> Iterator[DuckDBPyConnection]:
    """An in-memory DuckDB that spills to a temporary directory removed afterwards."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="synthreg-diff-") as spill:
        config = {
            "threads": threads,
            "memory_limit": memory_limit,
            "temp_directory": spill,
            "preserve_insertion_order": False,
        }
        con = duckdb.connect(config=config)  # type: ignore[arg-type]
        con.execute("SET enable_progress_bar = false")  # the library never prints
        try:
            yield con
        finally:
            con.close()


def _create_views(con: DuckDBPyConnection, side: str, version: _Version) -> None:
    for table, parts in version.parts.items():
        files = ", ".join(_sql_string(str(p)) for p in parts)
        con.execute(f"CREATE VIEW {view_name(side, table)} AS SELECT * FROM read_parquet([{files}])")


# ---------------------------------------------------------------- summary


def _summary(
    result_tables: dict[str, dict[str, Any]], generation: dict[str, Any], labels: tuple[str, str]
) -> dict[str, Any]:
    statuses = [t["status"] for t in result_tables.values()]
    schema = [t["schema"] for t in result_tables.values() if t["status"] == "both"]
    changed_columns = [
        f"{name}.{col}"
        for name, t in result_tables.items()
        for col, s in t["columns"].items()
        if s["changed"]
    ]
    counts = {
        "tables": len(result_tables),
        "tables_added": statuses.count("added"),
        "tables_removed": statuses.count("removed"),
        "tables_changed": sum(1 for t in result_tables.values() if t["changed"]),
        "columns_compared": sum(len(t["columns"]) for t in result_tables.values()),
        "columns_changed": len(changed_columns),
        "columns_added": sum(len(s["added"]) for s in schema),
        "columns_removed": sum(len(s["removed"]) for s in schema),
        "columns_retyped": sum(len(s["type_changed"]) for s in schema),
        "rows": {side: sum(t["rows"][side] for t in result_tables.values()) for side in ("a", "b")},
    }
    return {**counts, "changed_columns": changed_columns, "text": _summary_text(counts, generation, labels)}


def _summary_text(counts: dict[str, Any], generation: dict[str, Any], labels: tuple[str, str]) -> str:
    head = f"{labels[0]} -> {labels[1]}: "
    seed = generation["seed"]
    if not counts["tables_changed"] and not generation["spec_diff"] and seed["a"] == seed["b"]:
        return head + "no changes"
    parts = [f"{counts['tables_changed']} of {counts['tables']} tables changed"]
    if counts["tables_added"] or counts["tables_removed"]:
        parts.append(f"{counts['tables_added']} added, {counts['tables_removed']} removed")
    parts.append(f"{counts['columns_changed']} of {counts['columns_compared']} columns changed")
    schema = counts["columns_added"] + counts["columns_removed"] + counts["columns_retyped"]
    if schema:
        parts.append(f"{schema} schema changes")
    parts.append(f"rows {counts['rows']['a']:,} -> {counts['rows']['b']:,}")
    if seed["a"] != seed["b"]:
        parts.append(f"seed {seed['a']} -> {seed['b']}")
    if generation["spec_changed"]:
        parts.append("spec changed (besides the seed)")
    return head + "; ".join(parts)


# ---------------------------------------------------------------- entry point


def diff_versions(
    dir_a: Path,
    dir_b: Path,
    label_a: str,
    label_b: str,
    *,
    plots_dir: Path | None = None,
    threads: int = DUCKDB_THREADS,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
) -> DiffResult:
    """Compare version directory ``dir_a`` with ``dir_b`` (see the module docstring).

    ``label_a``/``label_b`` name the versions (``fitness@v1``). With ``plots_dir``, the
    most changed columns are plotted there as PNG (``<table>.<column>.png``). Raises
    ``NotFoundError`` when a directory, its spec, manifest or Parquet parts are missing.
    """
    started = time.perf_counter()
    a, b = _load_version(Path(dir_a), label_a), _load_version(Path(dir_b), label_b)
    names = list(dict.fromkeys([*a.spec.tables, *b.spec.tables]))
    tables: dict[str, dict[str, Any]] = {}
    pairs: list[ColumnPair] = []
    with _connect(threads, memory_limit) as con:
        _create_views(con, "a", a)
        _create_views(con, "b", b)
        for name in names:
            if name not in b.spec.tables:
                tables[name] = _one_sided(a, name, "removed")
            elif name not in a.spec.tables:
                tables[name] = _one_sided(b, name, "added")
            else:
                tables[name], table_pairs = _table_diff(con, a, b, name)
                pairs.extend(table_pairs)
        if plots_dir is not None:
            from synthreg.registry.diff_report import make_plots

            make_plots(con, tables, pairs, Path(plots_dir), (label_a, label_b))
    generation = _generation_diff(a, b)
    summary = _summary(tables, generation, (label_a, label_b))
    return DiffResult(label_a, label_b, generation, tables, summary, time.perf_counter() - started)
