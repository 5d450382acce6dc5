"""Disable rows: derive a version without some rows, keeping referential integrity.

Two steps, both streaming part by part (a part's key columns at a time, never the
whole dataset in memory):

1. :func:`plan_removal` picks the rows of one table (by primary key ``ids`` or a
   ``where`` filter) and cascades down the foreign-key DAG: in parents-first order,
   every row whose foreign key holds a removed parent key is removed too, and so on
   transitively (specs refuse foreign-key cycles, self-references included). The
   plan holds, per table with something to remove, the removed primary-key values,
   or the 0-based row positions (across the sorted parts) of a table without one.
2. :func:`write_without` writes every table to a new directory with the same part
   names, schema (dictionary types included), compression and row groups, minus
   the planned rows; tables with nothing to remove are hard-linked. It hashes the
   written rows in order, so the digests are those of the derived version.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthreg.digest import TableHasher, combine_digests
from synthreg.errors import ConflictError, NotFoundError, UsageError
from synthreg.generators.spec import Spec
from synthreg.registry.predicate import parse_where

__all__ = ["DisableResult", "plan_removal", "table_parts", "write_without"]

_SHOWN_IDS = 5
#: Rows per scanned batch: is_in rebuilds its hash set per call, so fewer, larger calls win.
_SCAN_ROWS = 1 << 20
_INTEGER_RE = re.compile(r"[+-]?[0-9]+")

#: rows of a batch -> which of them are selected
_Selector = Callable[[pa.RecordBatch], pa.BooleanArray]


@dataclass(frozen=True)
class DisableResult:
    """What :func:`write_without` wrote."""

    removed: dict[str, int]  # rows removed per table, cascaded children included
    kept: dict[str, int]  # rows left per table
    digests: dict[str, str]  # table digest of every table of the derived version
    content_digest: str
    files: dict[str, list[Path]]  # written parts per table


def table_parts(version_dir: Path, table: str) -> list[Path]:
    """The Parquet parts of ``table`` in row order, or NotFoundError."""
    parts = sorted((version_dir / "tables" / table).glob("part-*.parquet"))
    if not parts:
        raise NotFoundError(
            f"no parts of table {table} under {version_dir / 'tables' / table}: "
            "is this a complete version directory?"
        )
    return parts


def _normalized(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Keys compared by value: dictionaries decoded, integers widened to int64."""
    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    if pa.types.is_integer(values.type):
        values = pc.cast(values, pa.int64())
    return values


def _batches(parts: list[Path], columns: list[str]) -> Iterator[pa.RecordBatch]:
    for path in parts:
        yield from pq.ParquetFile(path).iter_batches(batch_size=_SCAN_ROWS, columns=columns)


def _select(parts: list[Path], columns: list[str], key: str | None, selected: _Selector) -> pa.Array:
    """Keys of the selected rows: values of column ``key``, or row positions when ``key`` is None."""
    found: list[pa.Array] = []
    offset = 0
    for batch in _batches(parts, sorted(set(columns) | ({key} if key else set()))):
        mask = pc.fill_null(selected(batch), False)
        if key is None:
            positions = np.flatnonzero(mask.to_numpy(zero_copy_only=False)) + offset
            found.append(pa.array(positions, pa.int64()))
        else:
            # a NULL key names no row, and NULL foreign keys must not match it
            found.append(pc.drop_null(_normalized(batch.column(key)).filter(mask)))
        offset += batch.num_rows
    if not found:
        return pa.array([], pa.int64())
    return pc.unique(pa.concat_arrays(found))


def _union(a: pa.Array | None, b: pa.Array) -> pa.Array:
    return b if a is None else pc.unique(pa.concat_arrays([a, b.cast(a.type)]))


def _in(column: str, values: pa.Array) -> _Selector:
    return lambda batch: pc.is_in(_normalized(batch.column(column)), value_set=values)


def _any_of(selectors: list[_Selector]) -> _Selector:
    def selected(batch: pa.RecordBatch) -> pa.BooleanArray:
        masks = [s(batch) for s in selectors]
        out = masks[0]
        for mask in masks[1:]:
            out = pc.or_(out, mask)
        return out

    return selected


# ---------------------------------------------------------------- the root rows


def _id_values(spec: Spec, table: str, ids: list[Any]) -> pa.Array:
    """The ids as primary-key values: strings converted to the key's type, blanks skipped."""
    key = spec.tables[table].primary_key
    assert key is not None
    ktype = spec.tables[table].columns[key].type
    raw = [v.strip() if isinstance(v, str) else v for v in ids]
    raw = [v for v in raw if v != ""]
    if ktype == "int":
        bad = [v for v in raw if isinstance(v, str) and not _INTEGER_RE.fullmatch(v)]
        if bad:
            raise UsageError(
                f"{len(bad)} ids are not integers, as {table}.{key} is: "
                f"{', '.join(repr(v) for v in bad[:_SHOWN_IDS])}; fix them (one integer per line)"
            )
        values = [int(v) for v in raw]
        if any(abs(v) >= 2**63 for v in values):
            raise UsageError(f"an id is out of range for {table}.{key}: ids fit in 64 bits; check the ids")
        return pc.unique(pa.array(values, pa.int64()))
    if ktype in ("text", "uuid", "category"):
        return pc.unique(pa.array([str(v) for v in raw], pa.string()))
    raise UsageError(f"--ids needs an int or text primary key; {table}.{key} is {ktype}: use --where instead")


def _root_by_ids(parts: list[Path], spec: Spec, table: str, ids: list[Any]) -> pa.Array:
    wanted = _id_values(spec, table, ids)
    key = spec.tables[table].primary_key
    assert key is not None
    found = _select(parts, [key], key, _in(key, wanted))
    missing = pc.filter(wanted, pc.invert(pc.is_in(wanted, value_set=found))).to_pylist()
    if missing:
        shown = ", ".join(str(v) for v in missing[:_SHOWN_IDS]) + (
            ", ..." if len(missing) > _SHOWN_IDS else ""
        )
        raise UsageError(
            f"{len(missing):,} of {len(wanted):,} ids are not in {table}.{key}: {shown}; "
            "remove them from the ids, or check that they belong to this table and version"
        )
    return found


def _root_by_where(parts: list[Path], spec: Spec, table: str, where: str) -> pa.Array:
    columns = {name: col.type for name, col in spec.tables[table].columns.items()}
    predicate = parse_where(where, columns)
    key = spec.tables[table].primary_key
    return _select(parts, list(predicate.columns), key, predicate.mask)


def _check_request(spec: Spec, table: str, ids: list[Any] | None, where: str | None) -> None:
    if table not in spec.tables:
        close = difflib.get_close_matches(table, list(spec.tables), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise UsageError(f"no table named '{table}'; {hint}tables: {', '.join(spec.tables)}")
    if (ids is None) == (where is None):
        raise UsageError("say which rows to disable with exactly one of ids (--ids FILE) or --where")
    if ids is not None and spec.tables[table].primary_key is None:
        raise UsageError(f"table {table} has no primary key, so ids cannot name its rows: use --where")


def _check_amount(what: str, table: str, chosen: int, total: int) -> None:
    if chosen == 0:
        raise UsageError(
            f"{what} on {table} matches no rows: nothing to disable; check the filter or the ids"
        )
    if chosen >= total:
        raise ConflictError(
            f"{what} would disable every row of {table}: refused ({total:,} rows); "
            "narrow it so that some rows remain"
        )


# ---------------------------------------------------------------- cascade


def _children_selectors(spec: Spec, table: str, removal: dict[str, pa.Array]) -> list[_Selector]:
    """Rows of ``table`` whose foreign key holds a removed key of another table."""
    return [
        _in(column, removal[parent])
        for column, (parent, _) in spec.tables[table].foreign_keys().items()
        if parent != table and parent in removal
    ]


def _cascade(src_dir: Path, spec: Spec, removal: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """Add to ``removal`` every row that references a removed row, parents first."""
    for table in spec.table_order():
        selectors = _children_selectors(spec, table, removal)
        if not selectors:
            continue
        columns = [c for c, (p, _) in spec.tables[table].foreign_keys().items() if p in removal]
        key = spec.tables[table].primary_key
        more = _select(table_parts(src_dir, table), columns, key, _any_of(selectors))
        if len(more):
            removal[table] = _union(removal.get(table), more)
    return removal


def plan_removal(
    src_dir: Path,
    spec: Spec,
    table: str,
    *,
    ids: list[Any] | None = None,
    where: str | None = None,
) -> dict[str, pa.Array]:
    """The rows to remove from the version at ``src_dir``, cascaded down the foreign keys.

    Exactly one of ``ids`` (primary-key values of ``table``; strings are converted to
    the key's type) or ``where`` (a :mod:`synthreg.registry.predicate` filter over
    ``table``'s columns). Returns, per table with something to remove, its removed
    primary-key values (integers as int64) or, without a primary key, its removed
    0-based row positions. Raises UsageError for unknown ids or when nothing
    matches, ConflictError when every row of ``table`` would go.
    """
    _check_request(spec, table, ids, where)
    parts = table_parts(src_dir, table)
    if ids is not None:
        root, what = _root_by_ids(parts, spec, table, ids), "the list of ids"
    else:
        assert where is not None
        root, what = _root_by_where(parts, spec, table, where), f'--where "{where}"'
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    _check_amount(what, table, len(root), total)
    return _cascade(src_dir, spec, {table: root})


# ---------------------------------------------------------------- writing


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not supported
        shutil.copy2(src, dst)


def _hash_files(paths: list[Path]) -> tuple[str, int]:
    schema = pq.ParquetFile(paths[0]).schema_arrow
    hasher = TableHasher(schema)
    for batch in _batches(paths, schema.names):
        hasher.update(batch)
    return hasher.hexdigest(), hasher.rows


def _keep_mask(batch: pa.Table, key: str | None, removed: pa.Array, offset: int) -> pa.BooleanArray:
    if key is None:
        positions = pa.array(np.arange(offset, offset + batch.num_rows), pa.int64())
        return pc.invert(pc.is_in(positions, value_set=removed))
    values = _normalized(batch.column(key))
    return pc.invert(pc.is_in(values, value_set=removed))


def _write_options(source: pq.ParquetFile) -> dict[str, Any]:
    """Writer settings that reproduce the source part: compression, dictionary columns."""
    schema = source.schema_arrow
    compression = "snappy"
    if source.metadata.num_row_groups and source.metadata.num_columns:
        compression = source.metadata.row_group(0).column(0).compression.lower()
    dict_columns = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    return {"compression": compression, "use_dictionary": dict_columns or False, "write_statistics": True}


def _filter_part(
    src: Path, dst: Path, key: str | None, removed: pa.Array, hasher: TableHasher, offset: int
) -> int:
    """Write ``src`` minus the removed rows to ``dst``, row group by row group; the rows read."""
    source = pq.ParquetFile(src)
    with pq.ParquetWriter(dst, source.schema_arrow, **_write_options(source)) as writer:
        for index in range(source.num_row_groups):
            group = source.read_row_group(index)
            kept = group.filter(_keep_mask(group, key, removed, offset))
            offset += group.num_rows
            if kept.num_rows:
                hasher.update(kept)
                writer.write_table(kept, row_group_size=group.num_rows)
    return source.metadata.num_rows


def _write_table(
    parts: list[Path], out_dir: Path, key: str | None, removed: pa.Array | None
) -> tuple[str, int, int, list[Path]]:
    """Copy one table's parts into ``out_dir``: (digest, rows kept, rows read, files)."""
    out_dir.mkdir(parents=True, exist_ok=False)
    files = [out_dir / p.name for p in parts]
    if removed is None or not len(removed):
        for src, dst in zip(parts, files, strict=True):
            _link_or_copy(src, dst)
        digest, rows = _hash_files(files)
        return digest, rows, rows, files
    hasher = TableHasher(pq.ParquetFile(parts[0]).schema_arrow)
    read = 0
    for src, dst in zip(parts, files, strict=True):
        read += _filter_part(src, dst, key, removed, hasher, read)
    return hasher.hexdigest(), hasher.rows, read, files


def write_without(src_dir: Path, dst_dir: Path, spec: Spec, removal: dict[str, Any]) -> DisableResult:
    """Write every table of ``src_dir`` to ``dst_dir/tables/<table>/`` without the rows in ``removal``.

    ``removal`` is what :func:`plan_removal` returned. Part names, schemas,
    compression and row groups follow the source; tables with nothing removed are
    hard-linked (copied across filesystems). ``dst_dir/tables`` must not exist yet.
    """
    if (dst_dir / "tables").exists():
        raise ConflictError(
            f"{dst_dir / 'tables'} already exists: write the derived version to a new directory"
        )
    unknown = sorted(set(removal) - set(spec.tables))
    if unknown:
        raise UsageError(f"the removal plan names tables the spec does not have: {', '.join(unknown)}")
    removed: dict[str, int] = {}
    kept: dict[str, int] = {}
    digests: dict[str, str] = {}
    files: dict[str, list[Path]] = {}
    for table in spec.table_order():
        parts = table_parts(src_dir, table)
        key = spec.tables[table].primary_key
        plan = removal.get(table)
        values = None if plan is None else _normalized(pa.array(plan) if isinstance(plan, list) else plan)
        digest, rows, read, written = _write_table(parts, dst_dir / "tables" / table, key, values)
        removed[table], kept[table], digests[table], files[table] = read - rows, rows, digest, written
    return DisableResult(removed, kept, digests, combine_digests(digests), files)
