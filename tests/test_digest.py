"""Content digests: layout-independent, value-sensitive."""

from __future__ import annotations

import pyarrow as pa
import pytest

from synthreg.digest import DIGEST_BLOCK_ROWS, TableHasher, combine_digests


def _digest(table: pa.Table, batch_rows: int) -> str:
    hasher = TableHasher(table.schema)
    for batch in table.to_batches(max_chunksize=batch_rows):
        hasher.update(batch)
    return hasher.hexdigest()


@pytest.fixture
def table() -> pa.Table:
    n = DIGEST_BLOCK_ROWS + 1234
    return pa.table(
        {
            "i": pa.array(range(n), pa.int32()),
            "s": pa.array([f"v{i % 97}" if i % 13 else None for i in range(n)]),
            "b": pa.array([i % 3 == 0 for i in range(n)]),
            "t": pa.array(range(n), pa.timestamp("ms")),
        }
    )


@pytest.mark.parametrize("batch_rows", [1000, 65536, 7, 200_000])
def test_same_digest_for_any_batching(table: pa.Table, batch_rows: int) -> None:
    assert _digest(table, batch_rows) == _digest(table, 4096)


def test_dictionary_encoding_does_not_matter(table: pa.Table) -> None:
    encoded = table.set_column(1, "s", table.column("s").dictionary_encode())
    hasher = TableHasher(encoded.schema)
    hasher.update(encoded)
    assert hasher.hexdigest() == _digest(table, 4096)


def test_one_changed_value_changes_the_digest(table: pa.Table) -> None:
    values = table.column("i").to_pylist()
    values[-1] += 1
    changed = table.set_column(0, "i", pa.array(values, pa.int32()))
    assert _digest(changed, 4096) != _digest(table, 4096)


def test_null_differs_from_empty_string() -> None:
    a = pa.table({"s": pa.array(["x", None])})
    b = pa.table({"s": pa.array(["x", ""])})
    assert _digest(a, 10) != _digest(b, 10)


def test_type_is_part_of_the_digest() -> None:
    a = pa.table({"x": pa.array([1, 2], pa.int32())})
    b = pa.table({"x": pa.array([1, 2], pa.int64())})
    assert _digest(a, 10) != _digest(b, 10)


def test_combined_digest_depends_on_names_not_order() -> None:
    assert combine_digests({"a": "1", "b": "2"}) == combine_digests({"b": "2", "a": "1"})
    assert combine_digests({"a": "1", "b": "2"}) != combine_digests({"a": "2", "b": "1"})
