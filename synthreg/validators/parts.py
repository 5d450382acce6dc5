"""A table's Parquet parts (``tables_dir/<table>/*.parquet``), read only as far as a check needs.

Row counts, schemas and null counts come from the footers; rows come in bounded
batches; one column can be read across all parts without the others.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg.errors import NotFoundError
from synthreg.generators.spec import Spec

__all__ = [
    "BATCH_CELLS",
    "LARGE_TABLE_ROWS",
    "TableParts",
    "lean_memory",
    "open_parts",
    "release_unused",
]

#: Values (rows x columns) per batch handed to GX: ~1.6M rows of a 5-column numeric table, so a
#: part of the engine's usual size (~1.3M rows at 10M rows on 2 workers) is one batch; a text
#: value counts as ``_TEXT_CELLS``.
BATCH_CELLS = 1 << 23
_MIN_BATCH_ROWS = 1 << 16
#: A text value's weight in ``BATCH_CELLS``: GX on a 1.6M-row users batch (3 text columns of 5)
#: took ~770 MB; counted 8x, batches are ~320k rows and ~420 MB, in about the same time.
_TEXT_CELLS = 8
_MAX_BATCH_ROWS = 1 << 22
#: Tables past this many rows are checked with memory, not time, as the limit.
LARGE_TABLE_ROWS = 1 << 24


@dataclass(frozen=True)
class TableParts:
    """The Parquet part files of one table, with their footers."""

    name: str
    files: tuple[Path, ...]
    metadata: tuple[pq.FileMetaData, ...]
    schemas: tuple[pa.Schema, ...]

    @property
    def rows(self) -> int:
        """Rows over all parts, from the footers."""
        return sum(md.num_rows for md in self.metadata)

    @property
    def columns(self) -> list[str]:
        """Column names in file order (the first part's, then any only later parts have)."""
        return list(dict.fromkeys(name for schema in self.schemas for name in schema.names))

    def nullable(self) -> set[str]:
        """Columns that have a null somewhere, or whose footers do not say (no statistics)."""
        found: set[str] = set()
        for md in self.metadata:
            for g in range(md.num_row_groups):
                group = md.row_group(g)
                for c in range(group.num_columns):
                    chunk = group.column(c)
                    stats = chunk.statistics
                    if stats is None or not stats.has_null_count or stats.null_count:
                        found.add(chunk.path_in_schema)
        return found

    def batches(self, columns: list[str]) -> Iterator[pa.Table]:
        """``columns`` (those the parts have) in batches of bounded size, in part order.

        A part that fits in a batch is read whole, and consecutive such parts share one batch
        while it stays in bounds (fewer, larger GX runs: GX pays ~20 ms a run for its own
        bookkeeping, whatever the rows; ``bench_gx_runs.py``); a larger part is read in batches of its own.
        An empty table still yields one empty batch, so every check gets a verdict.
        """
        if not self.rows:
            yield self.empty(columns)
            return
        rows = _batch_rows(sum(_cells(self.schemas[0], c) for c in columns))
        pending: list[pa.Table] = []
        for path, schema, md in zip(self.files, self.schemas, self.metadata, strict=True):
            present = [c for c in columns if c in schema.names]
            if 0 < md.num_rows <= rows:
                part = pq.read_table(path, columns=present)
                if pending and (
                    sum(t.num_rows for t in pending) + part.num_rows > rows
                    or not part.schema.equals(pending[0].schema)
                ):
                    yield pa.concat_tables(pending)
                    pending = []
                pending.append(part)
            elif md.num_rows:
                if pending:
                    yield pa.concat_tables(pending)
                    pending = []
                for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=present):
                    yield pa.Table.from_batches([batch])
        if pending:
            yield pa.concat_tables(pending)

    def empty(self, columns: list[str] | None = None) -> pa.Table:
        """No rows, with ``columns`` (default: all) typed as in the first part."""
        schema = self.schemas[0]
        names = [c for c in (columns or self.columns) if c in schema.names]
        return pa.schema([schema.field(c) for c in names]).empty_table()

    def column(self, name: str) -> pa.ChunkedArray:
        """One column over all parts (``KeyError`` if a part lacks it)."""
        typ = self.schemas[0].field(name).type
        chunks: list[pa.Array] = []
        for part in self.column_parts(name):
            chunks += (part if part.type == typ else part.cast(typ)).chunks
        return pa.chunked_array(chunks, type=typ)

    def column_parts(self, name: str) -> Iterator[pa.ChunkedArray]:
        """One column, part by part (``KeyError`` if a part lacks it)."""
        for path, schema in zip(self.files, self.schemas, strict=True):
            if name not in schema.names:
                raise KeyError(f"column '{name}' is not in {path.name}")
            yield pq.read_table(path, columns=[name]).column(name)

    def read(self, columns: list[str]) -> pa.Table:
        """Only ``columns``, over all parts: for checks that need whole columns.

        A column a part lacks comes back null there; differing types are unified.
        """
        tables = [
            pq.read_table(path, columns=[c for c in columns if c in schema.names])
            for path, schema in zip(self.files, self.schemas, strict=True)
        ]
        return pa.concat_tables(tables, promote_options="permissive")


def open_parts(tables_dir: Path, name: str) -> TableParts:
    """The parts of table ``name``; ``NotFoundError`` if it has none."""
    files = tuple(sorted((tables_dir / name).glob("*.parquet")))
    if not files:
        raise NotFoundError(
            f"no Parquet files for table '{name}' under {tables_dir / name}: "
            "generate the data first, or point at the version's tables/ directory"
        )
    metadata = tuple(pq.read_metadata(path) for path in files)
    schemas = tuple(pq.read_schema(path) for path in files)
    return TableParts(name, files, metadata, schemas)


def _batch_rows(cells: int) -> int:
    return max(_MIN_BATCH_ROWS, min(_MAX_BATCH_ROWS, BATCH_CELLS // max(1, cells)))


def _cells(schema: pa.Schema, column: str) -> int:
    """What one value of ``column`` weighs in a batch: a text value costs GX ~850 bytes a row
    (measured on a users batch, against ~8 for a number), so it counts as ``_TEXT_CELLS``
    cells; categories (dictionaries of int8/int16 indices: a few values) count 1."""
    if column not in schema.names:
        return 1
    typ = schema.field(column).type
    if pa.types.is_dictionary(typ):
        if typ.index_type.bit_width <= 16:
            return 1
        typ = typ.value_type
    return _TEXT_CELLS if pa.types.is_string(typ) or pa.types.is_large_string(typ) else 1


def release_unused() -> None:
    """Give back to the system what a table's checks freed, before the next table: Arrow's pool
    and the C heap (NumPy, pandas) keep it otherwise. At 100M rows a validating process sat at
    ~400 MB between tables, ~300 MB after this (psutil, the 100M-row benchmark tables)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None (another C library, or a platform without ``dlopen(NULL)``)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):
        return None


@contextlib.contextmanager
def lean_memory(spec: Spec) -> Iterator[None]:
    """When a table of ``spec`` has more than ``LARGE_TABLE_ROWS``, Arrow allocates from jemalloc
    set to give freed pages back at once, for the ``with`` block; the pool before is restored
    after (a warm server serves the next command with its own).

    Arrow's default pool (mimalloc) keeps what it frees: at 100M rows the validating helper sat
    at ~400 MB between tables, and the tree of a create peaked at 1.20 GB; with this, 0.86-0.89 GB
    (``benchmarks/results/bench_create_100M.txt``). Below the size it is not worth it: as every
    process's pool, jemalloc made a 10M-row create's tree ~70 MB larger. A pyarrow without
    jemalloc keeps its pool.
    """
    if max((t.rows for t in spec.tables.values()), default=0) <= LARGE_TABLE_ROWS:
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        yield
        return
    before = pa.default_memory_pool()
    pa.jemalloc_set_decay_ms(0)  # jemalloc's own setting: the pool before is not affected
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(before)
