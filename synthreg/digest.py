"""Content digests: sha256 over a table's schema and values in row order.

The digest does not depend on block size, row-group size, compression, file
layout or worker count. Rows are cut into fixed digest blocks of
``DIGEST_BLOCK_ROWS``; each block is hashed column by column (validity, value
lengths, value bytes), and the table digest hashes the schema and the block
digests in order. Dictionary columns are hashed by their values, so the encoding
does not matter either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["DIGEST_BLOCK_ROWS", "TableHasher", "combine_digests", "schema_signature", "table_digest"]

DIGEST_BLOCK_ROWS = 1 << 16


def _logical_type(typ: pa.DataType) -> pa.DataType:
    return typ.value_type if pa.types.is_dictionary(typ) else typ


def schema_signature(schema: pa.Schema) -> str:
    """``name:type`` per field, dictionary encoding folded into the value type."""
    return ";".join(f"{f.name}:{_logical_type(f.type)}" for f in schema)


def _column_bytes(column: pa.ChunkedArray | pa.Array) -> Iterable[bytes | memoryview]:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    valid = np.asarray(array.is_valid(), dtype=np.uint8)
    yield valid.tobytes()
    typ = array.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ):
        lengths = np.asarray(pc.fill_null(pc.binary_length(array), 0), dtype=np.int64)
        yield lengths.tobytes()
        array = array.cast(pa.large_binary())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[
            array.offset : array.offset + len(array) + 1
        ]
        data = array.buffers()[2]
        yield b"" if data is None or len(array) == 0 else memoryview(data)[offsets[0] : offsets[-1]]
        return
    if pa.types.is_boolean(typ):
        yield np.asarray(pc.fill_null(array, False), dtype=np.uint8).tobytes()
        return
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        array = array.view(
            pa.int64() if pa.types.is_timestamp(typ) or pa.types.is_date64(typ) else pa.int32()
        )
    filled = pc.fill_null(array, pa.scalar(0, type=array.type)) if array.null_count else array
    yield np.asarray(filled.to_numpy(zero_copy_only=False)).tobytes()


class TableHasher:
    """Feed record batches in row order; read ``hexdigest()`` at the end."""

    def __init__(self, schema: pa.Schema):
        self.schema = schema
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._blocks: list[bytes] = []
        self.rows = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add the next rows."""
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        for b in batches:
            if b.num_rows:
                self._pending.append(b)
                self._pending_rows += b.num_rows
                self.rows += b.num_rows
        while self._pending_rows >= DIGEST_BLOCK_ROWS:
            self._flush(DIGEST_BLOCK_ROWS)

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self._pending[0].schema)
        self._blocks.append(self.hash_block(table.slice(0, rows)))
        rest = table.slice(rows)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    @staticmethod
    def hash_block(table: pa.Table) -> bytes:
        """The digest of one block of rows (however they are chunked)."""
        h = hashlib.sha256(str(table.num_rows).encode())
        for column in table.columns:
            col_hash = hashlib.sha256()
            for chunk in _column_bytes(column):
                col_hash.update(len(chunk).to_bytes(8, "little"))
                col_hash.update(chunk)
            h.update(col_hash.digest())
        return h.digest()

    def block_digests(self) -> list[bytes]:
        """Digests of the blocks seen so far (flushes a last partial block).

        Segments that start on a multiple of ``DIGEST_BLOCK_ROWS`` can be hashed
        separately and their block digests concatenated: see ``table_digest``.
        """
        if self._pending_rows:
            self._flush(self._pending_rows)
        return list(self._blocks)

    def complete_blocks(self) -> tuple[list[bytes], pa.Table | None]:
        """Digests of the complete blocks so far, and the rows after them, not hashed (rows that
        share their block with rows another process has)."""
        rest = pa.Table.from_batches(self._pending, schema=self._pending[0].schema) if self._pending else None
        return list(self._blocks), rest

    def hexdigest(self) -> str:
        """The table digest (flushes the last partial block)."""
        return table_digest(self.schema, self.block_digests())


def table_digest(schema: pa.Schema, blocks: Iterable[bytes]) -> str:
    """The digest of a table from its schema and its block digests in row order."""
    h = hashlib.sha256(schema_signature(schema).encode())
    for block in blocks:
        h.update(block)
    return h.hexdigest()


def combine_digests(tables: Mapping[str, str]) -> str:
    """The content digest of a dataset: its tables' digests, by table name."""
    h = hashlib.sha256()
    for name in sorted(tables):
        h.update(f"{name}\0{tables[name]}\n".encode())
    return h.hexdigest()
