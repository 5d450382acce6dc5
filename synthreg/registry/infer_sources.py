"""Real tables for ``registry spec infer``: Parquet, CSV, DuckDB and SQLite files, opened in DuckDB.

Every table becomes a view or table of one DuckDB connection backed by a file in a temporary
directory, with a memory limit, so statistics are computed by SQL aggregates that spill to disk
instead of holding a whole table in memory. Parquet files and DuckDB databases are read in place;
CSV and SQLite tables are copied into the temporary database once (SQLite in batches: DuckDB has no
SQLite reader offline).
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthreg.errors import UsageError, first_line

__all__ = ["Sources", "open_sources", "quote", "table_name"]

_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".tsv", ".txt")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BATCH = 50_000
_SUPPORTED = "Parquet (.parquet), CSV (.csv, .tsv), a DuckDB database or a SQLite database"


def quote(name: str) -> str:
    """A SQL identifier, double-quoted."""
    return '"' + name.replace('"', '""') + '"'


def table_name(raw: str) -> str:
    """A spec-safe name (``^[A-Za-z_][A-Za-z0-9_]{0,63}$``) for a file stem or a column."""
    name = re.sub(r"\W", "_", raw, flags=re.ASCII).strip("_") or "t"
    if name[0].isdigit():
        name = "t_" + name
    return name[:64]


@dataclass
class Sources:
    """The tables found: spec name -> where they came from, in a DuckDB connection."""

    con: Any
    origin: dict[str, str] = field(default_factory=dict)  # table -> "path" or "path:table"
    renamed: dict[str, str] = field(default_factory=dict)  # spec name -> real name, where they differ
    files: list[str] = field(default_factory=list)  # file names, as given


def _kind(path: Path) -> str:
    if not path.exists():
        raise UsageError(f"{path}: no such file: check the path")
    if not path.is_file():
        raise UsageError(f"{path}: not a file: give a {_SUPPORTED} file")
    with path.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(_SQLITE_MAGIC):
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    if head.startswith(b"PAR1") or path.suffix.lower() in _PARQUET:
        return "parquet"
    if path.suffix.lower() in _CSV:
        return "csv"
    raise UsageError(f"{path}: unsupported format: give a {_SUPPORTED} file")


@contextmanager
def open_sources(paths: list[Path], memory_limit: str = "1GB") -> Iterator[Sources]:
    """Every table of ``paths`` in one DuckDB connection (closed and deleted on exit)."""
    import duckdb

    if not paths:
        raise UsageError("give at least one file: a Parquet or CSV file per table, or a database")
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?B)", memory_limit, flags=re.IGNORECASE):
        raise UsageError(f"--memory-limit {memory_limit!r}: give a size such as 512MB or 2GB")
    with tempfile.TemporaryDirectory(prefix="synthreg-infer-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "infer.duckdb"))
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{Path(tmp) / 'spill'}'")
            con.execute("SET preserve_insertion_order = false")
            sources = Sources(con)
            for path in paths:
                _add(sources, Path(path), len(sources.origin))
            yield sources
        finally:
            con.close()


def _add(sources: Sources, path: Path, index: int) -> None:
    kind = _kind(path)
    sources.files.append(path.name)
    if kind in ("parquet", "csv"):
        name = _claim(sources, path.stem, str(path))
        _single(sources.con, name, path, kind)
        return
    tables = _sqlite_tables(path) if kind == "sqlite" else _duckdb_tables(sources.con, path, index)
    if not tables:
        raise UsageError(f"{path}: the database has no tables: give one that holds the real tables")
    for real in tables:
        name = _claim(sources, real, f"{path}:{real}")
        if kind == "sqlite":
            _copy_sqlite(sources.con, path, real, name)
        else:
            sources.con.execute(f"CREATE VIEW {quote(name)} AS SELECT * FROM src{index}.{quote(real)}")


def _claim(sources: Sources, raw: str, origin: str) -> str:
    name = table_name(raw)
    if name in sources.origin:
        raise UsageError(
            f"{origin}: a second table named '{name}' (the first came from {sources.origin[name]}): "
            "rename one of the files"
        )
    sources.origin[name] = origin
    if name != raw:
        sources.renamed[name] = raw
    return name


def _single(con: Any, name: str, path: Path, kind: str) -> None:
    import duckdb

    literal = "'" + str(path).replace("'", "''") + "'"
    try:
        if kind == "parquet":
            con.execute(f"CREATE VIEW {quote(name)} AS SELECT * FROM read_parquet({literal})")
            con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()
        else:
            con.execute(f"CREATE TABLE {quote(name)} AS SELECT * FROM read_csv({literal}, header = true)")
            _recheck_csv(con, name, literal)
    except duckdb.Error as exc:
        fix = (
            "check that it is a valid Parquet file (rewrite it with pyarrow or DuckDB)"
            if kind == "parquet"
            else "check the delimiter, the quoting and that every row has the header's columns"
        )
        raise UsageError(f"{path}: cannot be read as {kind.upper()} ({first_line(exc)}): {fix}") from None


def _recheck_csv(con: Any, name: str, literal: str) -> None:
    """One column whose header holds a delimiter: the sniffer gave up on ragged rows; read strictly."""
    described = con.execute(f"DESCRIBE {quote(name)}").fetchall()
    delim = next((d for d in ",;\t|" if d in described[0][0]), None)
    if len(described) == 1 and delim is not None:
        con.execute(f"DROP TABLE {quote(name)}")
        sql = f"SELECT * FROM read_csv({literal}, header = true, delim = '{delim}', quote = '\"')"
        con.execute(f"CREATE TABLE {quote(name)} AS {sql}")


def _duckdb_tables(con: Any, path: Path, index: int) -> list[str]:
    import duckdb

    literal = "'" + str(path).replace("'", "''") + "'"
    try:
        con.execute(f"ATTACH {literal} AS src{index} (READ_ONLY)")
    except duckdb.Error as exc:
        raise UsageError(
            f"{path}: cannot open the DuckDB database ({first_line(exc)}): "
            "check that it was written by DuckDB 1.x or later and is not locked by a writer"
        ) from None
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main' "
        "ORDER BY table_name",
        [f"src{index}"],
    ).fetchall()
    return [r[0] for r in rows]


def _sqlite(path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise UsageError(f"{path}: cannot open the SQLite database ({exc}): check the file") from None


def _sqlite_tables(path: Path) -> list[str]:
    db = _sqlite(path)
    try:
        rows = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: cannot read the SQLite database ({exc}): check the file") from None
    finally:
        db.close()
    return [r[0] for r in rows]


def _sqlite_types(db: sqlite3.Connection, table: str, columns: list[str]) -> list[str]:
    """An Arrow type per column from the values' storage classes (SQLite types are per value)."""
    out = []
    for col in columns:
        classes = {r[0] for r in db.execute(f"SELECT DISTINCT typeof({quote(col)}) FROM {quote(table)}")}
        classes.discard("null")
        if classes == {"integer"}:
            out.append("BIGINT")
        elif classes and classes <= {"integer", "real"}:
            out.append("DOUBLE")
        elif classes == {"blob"}:
            out.append("BLOB")
        else:
            out.append("VARCHAR")
    return out


def _copy_sqlite(con: Any, path: Path, table: str, name: str) -> None:
    """Copy a SQLite table into DuckDB batch by batch (bounded memory)."""
    import pyarrow as pa

    db = _sqlite(path)
    try:
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({quote(table)})")]
        types = _sqlite_types(db, table, columns)
        arrow = {"BIGINT": pa.int64(), "DOUBLE": pa.float64(), "BLOB": pa.binary(), "VARCHAR": pa.string()}
        ddl = ", ".join(f"{quote(c)} {t}" for c, t in zip(columns, types, strict=True))
        con.execute(f"CREATE TABLE {quote(name)} ({ddl})")
        cursor = db.execute(f"SELECT * FROM {quote(table)}")
        while rows := cursor.fetchmany(_BATCH):
            arrays = [pa.array([_as(r[i], t) for r in rows], type=arrow[t]) for i, t in enumerate(types)]
            con.register("_sqlite_batch", pa.table(arrays, names=[f"c{i}" for i in range(len(columns))]))
            con.execute(f"INSERT INTO {quote(name)} SELECT * FROM _sqlite_batch")
            con.unregister("_sqlite_batch")
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: cannot read table '{table}' ({exc}): check the file") from None
    finally:
        db.close()


def _as(value: Any, typ: str) -> Any:
    if value is None:
        return None
    if typ == "DOUBLE":
        return float(value)
    if typ == "VARCHAR" and not isinstance(value, str):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return value
