"""What ``registry evaluate`` reads: the version's tables and the real ones, in bounded memory.

Each table is read once, batch by batch, into a seeded uniform sample of at most
:data:`SAMPLE_ROWS` rows (bottom-k on a random key per row, so the sample's order is random too),
while the same pass counts the children per parent of each foreign key and hashes every row for
exact-match counting (8 bytes per row). Real files are Parquet or CSV, one table each, named by
the file stem; they are cast to the types of the version's columns, and a column set that differs
from the version's is refused before anything is computed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.errors import UsageError

__all__ = [
    "PAIR_COLUMNS",
    "PAIR_ROWS",
    "PRIVACY_ROWS",
    "SAMPLE_ROWS",
    "TEXT_CATEGORIES",
    "UTILITY_ROWS",
    "TableData",
    "check_columns",
    "column_kinds",
    "comparison_schema",
    "read_table",
    "real_sources",
]

#: rows per table read into the sample every metric works on (real and synthetic alike)
SAMPLE_ROWS = 100_000
#: rows and columns per table for the column-pair trends (the first ones of the sample)
PAIR_ROWS, PAIR_COLUMNS = 20_000, 16
#: rows per role (training, holdout, synthetic) for the nearest-neighbour privacy metrics
PRIVACY_ROWS = 5_000
#: rows each model of the TSTR/TRTR comparison trains on (and is tested on)
UTILITY_ROWS = 50_000
#: a string column with more distinct values in the real sample is free text: not compared
TEXT_CATEGORIES = 50

_SUFFIXES = (".parquet", ".csv")


@dataclass
class TableData:
    """One table as evaluate sees it: a sample, the row count, FK counts and row hashes."""

    name: str
    sample: Any  # pandas DataFrame, random row order, at most SAMPLE_ROWS rows
    rows: int
    fk_counts: dict[str, Any] = field(default_factory=dict)  # column -> pandas Series value -> count
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="uint64"))


def real_sources(paths: list[Path], option: str, tables: list[str], label: str) -> dict[str, Path]:
    """``{table: file}`` from Parquet/CSV paths named by table; UsageError for anything else."""
    out: dict[str, Path] = {}
    for path in paths:
        if path.suffix.lower() not in _SUFFIXES or not path.is_file():
            what = "does not exist" if not path.exists() else "is not a .parquet or .csv file"
            raise UsageError(f"{option} {path}: {what}; give Parquet or CSV files named by table")
        if path.stem not in tables:
            raise UsageError(
                f"{option} {path}: {label} has no table {path.stem!r}; name each file after a table "
                f"({', '.join(f'{t}.parquet' for t in tables)})"
            )
        if path.stem in out:
            raise UsageError(f"{option}: two files for table {path.stem!r} ({out[path.stem]}, {path})")
        out[path.stem] = path
    return out


def comparison_schema(parts: list[Path]) -> pa.Schema:
    """The version's table schema with dictionary columns as their value type."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])
    fields = [
        pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type) for f in schema
    ]
    return pa.schema(fields)


def _file_columns(path: Path, option: str) -> list[str]:
    try:
        if path.suffix.lower() == ".csv":
            import pyarrow.csv as pcsv

            return list(pcsv.open_csv(path).schema.names)
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise UsageError(
            f"{option} {path}: cannot be read ({exc}); give a valid Parquet or CSV file"
        ) from None


def check_columns(path: Path, option: str, schema: pa.Schema, label: str) -> None:
    """UsageError naming the columns when the file's columns are not the version table's."""
    have, want = _file_columns(path, option), list(schema.names)
    missing, extra = [c for c in want if c not in have], [c for c in have if c not in want]
    if missing or extra:
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"not in the version: {', '.join(extra)}" if extra else "",
        ]
        raise UsageError(
            f"{option} {path}: its columns do not match table {path.stem} of {label} "
            f"({'; '.join(p for p in parts if p)}); give a file with the columns {', '.join(want)}"
        )


def _batches(source: Path | list[Path], schema: pa.Schema, option: str) -> Iterator[pa.RecordBatch]:
    """Batches of ``source`` (a real file or the version's parts), cast to ``schema``."""
    if isinstance(source, list):
        import pyarrow.parquet as pq

        for part in source:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=65_536):
                yield pa.RecordBatch.from_arrays(
                    [_cast(batch.column(n), f) for n, f in zip(schema.names, schema, strict=True)],
                    schema=schema,
                )
        return
    try:
        yield from _real_batches(source, schema)
    except pa.ArrowException as exc:
        raise UsageError(
            f"{option} {source}: cannot be read as table {source.stem} ({exc}); "
            "fix the file so each column holds values of the version's type"
        ) from None


def _real_batches(path: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    if path.suffix.lower() == ".csv":
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(path, convert_options=pcsv.ConvertOptions(column_types=schema))
        batches: Iterator[pa.RecordBatch] = iter(reader)
    else:
        import pyarrow.parquet as pq

        batches = pq.ParquetFile(path).iter_batches(batch_size=65_536, columns=schema.names)
    for batch in batches:
        columns = [_cast(batch.column(batch.schema.get_field_index(f.name)), f) for f in schema]
        yield pa.RecordBatch.from_arrays(columns, schema=schema)


def _cast(array: Any, to: pa.Field) -> Any:
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array if array.type == to.type else pc.cast(array, to.type)


def _numeric_frame(table: pa.Table) -> Any:
    """The sample as pandas, dates and times as int64 (so KS and correlations apply)."""
    columns = []
    for f, col in zip(table.schema, table.columns, strict=True):
        temporal = pa.types.is_temporal(f.type)
        columns.append(pc.cast(col, pa.int64()) if temporal else col)
    return pa.table(columns, names=table.schema.names).to_pandas()


def read_table(
    name: str,
    source: Path | list[Path],
    schema: pa.Schema,
    *,
    seed: int,
    role: str,
    fk_columns: list[str],
    hash_columns: list[str],
    option: str = "",
) -> TableData:
    """One streaming pass: a SAMPLE_ROWS sample, the row count, FK counts and row hashes."""
    import pandas as pd

    from synthreg.validators.privacy import row_hashes

    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), zlib.crc32(role.encode())])
    kept: pa.Table | None = None
    keys = np.zeros(0)
    rows, counts, hashes = 0, {c: [] for c in fk_columns}, []  # type: ignore[var-annotated]
    for batch in _batches(source, schema, option):
        rows += batch.num_rows
        for col in fk_columns:
            vc = pc.value_counts(batch.column(col).drop_null())
            counts[col].append(pd.Series(vc.field("counts").to_numpy(), index=vc.field("values").to_pandas()))
        if hash_columns:
            hashes.append(row_hashes(pa.table(batch.select(hash_columns)).to_pandas()))
        table = pa.Table.from_batches([batch])
        kept = table if kept is None else pa.concat_tables([kept, table])
        keys = np.concatenate([keys, rng.random(batch.num_rows)])
        if len(keys) > SAMPLE_ROWS:
            pick = np.argpartition(keys, SAMPLE_ROWS)[:SAMPLE_ROWS]
            kept, keys = kept.take(pick), keys[pick]
    order = np.argsort(keys, kind="stable")
    sample = (kept or schema.empty_table()).take(order) if kept is not None else schema.empty_table()
    fk = {
        c: (pd.concat(s).groupby(level=0).sum() if s else pd.Series(dtype="int64")) for c, s in counts.items()
    }
    return TableData(
        name,
        _numeric_frame(sample),
        rows,
        fk,
        np.concatenate(hashes) if hashes else np.zeros(0, dtype="uint64"),
    )


def column_kinds(
    schema: pa.Schema, keys: set[str], real_sample: Any
) -> tuple[dict[str, str], dict[str, str]]:
    """``({column: numeric|categorical}, {column: why it is skipped})`` for one table."""
    kinds, skipped = {}, {}
    for f in schema:
        t = f.type
        if f.name in keys:
            skipped[f.name] = "a key (see the cardinality scores)"
        elif pa.types.is_boolean(t):
            kinds[f.name] = "categorical"
        elif (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_temporal(t)
        ):
            kinds[f.name] = "numeric"
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            distinct = int(real_sample[f.name].nunique(dropna=True)) if len(real_sample) else 0
            if distinct > TEXT_CATEGORIES:
                skipped[f.name] = f"free text ({distinct:,} distinct real values > {TEXT_CATEGORIES})"
            else:
                kinds[f.name] = "categorical"
        else:
            skipped[f.name] = f"type {t} is not compared"
    return kinds, skipped
