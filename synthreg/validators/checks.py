"""Our own checks, on a table's Parquet parts: what GX cannot judge one batch at a time.

- Row count: the sum of the parts' footers, against the spec.
- Uniqueness of a key: over the whole column, in GX's result format; a duplicate split across
  two parts is still a duplicate. Keys that increase across the parts are unique without being
  held; a column of more than ``group_rules.BUCKET_ROWS`` rows is counted a bucket of values at a
  time (``group_rules.repeats``); others are read whole.
- Arrow schema: every part's types against the spec's.
- Foreign keys: the parent's key column (read once, cached per run) against each
  child part in turn.

Fixed-width values (integers, floats, times) are sorted with NumPy, which is several
times faster than Arrow's hashing on millions of distinct keys; other types (strings)
use Arrow's ``value_counts`` / ``is_in``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.generators import group_rules
from synthreg.generators.engine import table_schema
from synthreg.generators.spec import Spec
from synthreg.validators.parts import TableParts
from synthreg.validators.plan import Planned
from synthreg.validators.results import EXAMPLES, OUR_SOURCE, CheckResult, jsonable, unexpected_percent

__all__ = [
    "FK_CHECK",
    "SCHEMA_CHECK",
    "KeyIndex",
    "KeySet",
    "fk_by_buckets",
    "fk_check",
    "fk_result",
    "key_run",
    "row_count_check",
    "schema_check",
    "unique_check",
    "unique_result",
]

SCHEMA_CHECK = "arrow_schema"
FK_CHECK = "foreign_key_integrity"


def row_count_check(parts: TableParts, planned: Planned) -> CheckResult:
    """``expect_table_row_count_to_equal`` (or ``_to_be_between``), from the parts' footers."""
    rows = parts.rows
    if "value" in planned.kwargs:
        success = rows == planned.kwargs["value"]
    else:
        low, high = planned.kwargs.get("min_value"), planned.kwargs.get("max_value")
        success = (low is None or rows >= low) and (high is None or rows <= high)
    observed = {"observed_value": rows}
    return CheckResult(parts.name, planned.check, None, planned.kwargs, success, observed, OUR_SOURCE)


# ---------------------------------------------------------------- uniqueness


def unique_check(parts: TableParts, planned: Planned, cluster: str | None = None) -> CheckResult:
    """``expect_column_values_to_be_unique`` over the whole column, reported as GX does (counted by
    buckets as tasks on ``cluster``, a remote Dask cluster, when it is given and the column is
    counted by buckets)."""
    column = planned.column or ""
    try:
        increasing = _increasing_rows(parts, column)
        if increasing is not None:  # unique without holding the column: generated keys are
            return unique_result(parts, planned, increasing, increasing, 0, [])
        if parts.rows > group_rules.BUCKET_ROWS:  # a bucket of values at a time, not the column
            found = group_rules.repeats(parts.files, column, examples=EXAMPLES, cluster=cluster)
            return unique_result(parts, planned, found.rows, found.present, found.unexpected, found.examples)
        values = _decoded(parts.column(column))
    except (KeyError, pa.ArrowException) as exc:
        observed = {"exception": f"cannot read column '{column}': {exc}"}
        return CheckResult(parts.name, planned.check, column, planned.kwargs, False, observed, OUR_SOURCE)
    present = _present(values)
    unexpected, duplicated = _duplicates(present)
    examples = _examples(present, duplicated) if unexpected else []
    return unique_result(parts, planned, len(values), len(present), unexpected, examples)


def unique_result(
    parts: TableParts, planned: Planned, elements: int, present: int, unexpected: int, examples: list[Any]
) -> CheckResult:
    """A uniqueness verdict in GX's format, from its counts (however they were found)."""
    observed = {
        "element_count": elements,
        "unexpected_count": unexpected,
        "unexpected_percent": unexpected_percent(unexpected, present) if elements else None,
        "partial_unexpected_list": jsonable(examples),
        "missing_count": elements - present,
    }
    success = unexpected == 0
    return CheckResult(
        parts.name, planned.check, planned.column, planned.kwargs, success, observed, OUR_SOURCE
    )


def _increasing_rows(parts: TableParts, column: str) -> int | None:
    """The rows of ``column`` when it has no null and strictly increases across the parts in order
    (then it is unique), read one part at a time; None when it does not, or is not fixed-width
    (the caller then checks the whole column)."""
    last: Any = None
    total = 0
    for part in parts.column_parts(column):
        values = _decoded(part)
        if values.null_count or not _fixed_width(values.type) or pa.types.is_floating(values.type):
            return None
        array = values.to_numpy()
        if not len(array):
            continue
        if (last is not None and not array[0] > last) or not bool((array[1:] > array[:-1]).all()):
            return None
        last, total = array[-1], total + len(array)
    return total


def _decoded(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(values, values.type.value_type) if pa.types.is_dictionary(values.type) else values


def _present(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Without nulls, nor NaN (pandas, hence GX, counts NaN as missing)."""
    present = pc.drop_null(values)
    if pa.types.is_floating(present.type):
        present = present.filter(pc.invert(pc.is_nan(present)))
    return present


def _fixed_width(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_temporal(typ)


def _duplicates(values: pa.ChunkedArray) -> tuple[int, pa.Array]:
    """(rows whose value occurs more than once, those values)."""
    if _fixed_width(values.type):
        ordered = values.to_numpy()
        if len(ordered) < 2 or bool((ordered[1:] > ordered[:-1]).all()):  # keys come sorted
            return 0, pa.array([], type=values.type)
        ordered = np.sort(ordered)
        same = ordered[1:] == ordered[:-1]
        if not same.any():
            return 0, pa.array([], type=values.type)
        in_run = np.zeros(len(ordered), dtype=bool)
        in_run[1:] |= same
        in_run[:-1] |= same
        return int(in_run.sum()), pa.array(np.unique(ordered[1:][same]), type=values.type)
    counts = pc.value_counts(values)
    repeated = pc.greater(counts.field("counts"), 1)
    total = pc.sum(counts.field("counts").filter(repeated)).as_py() or 0
    return int(total), counts.field("values").filter(repeated)


def _examples(values: pa.ChunkedArray, among: pa.Array) -> list[Any]:
    """The first values (in row order) that are in ``among``, as GX lists them."""
    found: list[Any] = []
    for chunk in values.chunks:
        found += chunk.filter(pc.is_in(chunk, value_set=among)).slice(0, EXAMPLES - len(found)).to_pylist()
        if len(found) >= EXAMPLES:
            break
    return found


# ---------------------------------------------------------------- schema


def schema_check(spec: Spec, parts: TableParts) -> CheckResult:
    """Each column's Arrow type (dictionary folded to its values), in every part, is the spec's."""
    expected = {f.name: str(_value_type(f.type)) for f in table_schema(spec, parts.name)}
    observed: dict[str, str] | None = None
    mismatched: dict[str, dict[str, str]] = {}
    for schema in parts.schemas:
        types = {f.name: str(_value_type(f.type)) for f in schema}
        wrong = {
            name: {"expected": typ, "observed": types.get(name, "missing")}
            for name, typ in expected.items()
            if types.get(name) != typ
        }
        if observed is None or (wrong and not mismatched):
            observed = types  # the first part's types, or the first part that shows a mismatch
        mismatched = {**wrong, **mismatched}
    return CheckResult(
        table=parts.name,
        check=SCHEMA_CHECK,
        column=None,
        kwargs={"schema": expected},
        success=not mismatched,
        observed={"observed_value": observed or {}, "mismatched": mismatched},
        source=OUR_SOURCE,
    )


def _value_type(typ: pa.DataType) -> pa.DataType:
    return typ.value_type if pa.types.is_dictionary(typ) else typ


# ---------------------------------------------------------------- foreign keys


#: Keys checked at a time for a consecutive run (int64 copies of 8 MB, not of a whole part).
_RUN_SLICE = 1 << 20


def _consecutive_after(values: pa.ChunkedArray, last: int | None) -> bool:
    """Whether integer ``values`` (no nulls) go up by exactly one, starting at ``last + 1``."""
    for at in range(0, len(values), _RUN_SLICE):
        array = values.slice(at, _RUN_SLICE).to_numpy().astype(np.int64, copy=False)
        if (last is not None and array[0] != last + 1) or not bool((np.diff(array) == 1).all()):
            return False
        last = int(array[-1])
    return True


class KeyIndex:
    """Sorted int64 keys, for finding where child values sit among them.

    Generated keys come sorted and are usually one run of consecutive integers: then only the
    first and last key are kept, and a value's position is the value minus the first key, O(1)
    per value. Otherwise the values looked up are sorted first, which makes the binary searches
    cache-friendly (random values into millions of keys miss the cache on every probe: ~10x
    slower at 5M keys).
    """

    def __init__(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        self.order: np.ndarray | None = None
        if len(keys) > 1 and not bool((keys[1:] >= keys[:-1]).all()):
            self.order = np.argsort(keys, kind="stable")
            keys = keys[self.order]
        span = int(keys[-1]) - int(keys[0]) if len(keys) else -1
        dense = len(keys) > 0 and span == len(keys) - 1 and bool((np.diff(keys) == 1).all())
        self.range: tuple[int, int] | None = (int(keys[0]), int(keys[-1])) if dense else None
        self._keys = None if dense else keys

    @classmethod
    def of_column(cls, parts: TableParts, column: str) -> KeyIndex:
        """The index of an integer key column with no null, read one part at a time when the keys
        are one consecutive run (nothing held but its ends), else whole."""
        run = key_run(parts, column)
        if run is not None:
            return cls.of_run(run)
        # a null key keeps its row (callers align other columns by row) and matches no value
        keys = pc.fill_null(_decoded(parts.column(column)).cast(pa.int64()), np.iinfo(np.int64).min)
        return cls(np.asarray(keys))

    @classmethod
    def of_run(cls, run: tuple[int, int] | tuple[None, None]) -> KeyIndex:
        """The index of keys that are one consecutive run (``key_run``): only its ends are kept."""
        index = cls(np.empty(0, dtype=np.int64))
        index.range = None if run[0] is None or run[1] is None else (run[0], run[1])
        return index

    @property
    def keys(self) -> np.ndarray:
        """Every key, sorted (made on demand for a consecutive run)."""
        if self.range is not None:
            return np.arange(self.range[0], self.range[1] + 1, dtype=np.int64)
        assert self._keys is not None
        return self._keys

    def positions(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pos, found)``: ``self.keys[pos] == values`` where ``found`` (pos is in range)."""
        values = np.asarray(values, dtype=np.int64)
        if self.range is not None:
            first, last = self.range
            found = (values >= first) & (values <= last)
            return np.where(found, values - first, 0), found
        keys = self.keys
        if not len(keys):
            return np.zeros(len(values), dtype=np.int64), np.zeros(len(values), dtype=bool)
        order = np.argsort(values, kind="stable")
        pos = np.empty(len(values), dtype=np.int64)
        pos[order] = np.minimum(np.searchsorted(keys, values[order]), len(keys) - 1)
        return pos, keys[pos] == values


def key_run(parts: TableParts, column: str) -> tuple[int, int] | tuple[None, None] | None:
    """(first, last) when an integer key column without nulls is one consecutive run over the
    parts in order ((None, None) when it has no rows), read one part at a time; None when not
    (it stops reading at the first part that breaks the run)."""
    first = last = None
    for part in parts.column_parts(column):
        values = _decoded(part)
        if values.null_count or not pa.types.is_integer(values.type) or not _consecutive_after(values, last):
            return None
        if len(values):
            first = int(values[0].as_py()) if first is None else first
            last = int(values[-1].as_py())
    return (first, last) if first is not None and last is not None else (None, None)


class KeySet:
    """A parent table's key values, ready for membership tests of child values."""

    def __init__(self, keys: pa.ChunkedArray) -> None:
        present = pc.drop_null(_decoded(keys))
        self.index: KeyIndex | None = None
        self.arrow: pa.Array | None = None
        if pa.types.is_integer(present.type):
            self.index = KeyIndex(present.to_numpy())
        else:
            self.arrow = present.combine_chunks()

    @classmethod
    def of_column(cls, parts: TableParts, key: str) -> KeySet:
        """The key column of a parent table; an integer one is indexed part by part."""
        typ = parts.schemas[0].field(key).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if not pa.types.is_integer(typ):
            return cls(parts.column(key))
        return cls.of_index(KeyIndex.of_column(parts, key))

    @classmethod
    def of_index(cls, index: KeyIndex) -> KeySet:
        """The keys an integer index holds."""
        keys = cls(pa.chunked_array([], type=pa.int64()))
        keys.index = index
        return keys

    def absent(self, values: pa.ChunkedArray) -> pa.ChunkedArray:
        """The non-null ``values`` that are not keys, in row order."""
        values = pc.drop_null(_decoded(values))
        if self.index is None or not pa.types.is_integer(values.type):
            keys = self.arrow if self.arrow is not None or self.index is None else pa.array(self.index.keys)
            return values.filter(pc.invert(pc.is_in(values, value_set=keys)))
        if not len(values):
            return values
        _, found = self.index.positions(values.to_numpy())
        if found.all():
            return values.slice(0, 0)
        return values.filter(pa.array(~found))


def fk_check(
    parts: TableParts, column: str, parent: str, key: str, keys: Callable[[], KeySet]
) -> CheckResult:
    """Every non-null child value, in every part, is a key of the parent table (``keys()``)."""
    kwargs = {"parent_table": parent, "parent_column": key}
    try:
        parent_keys = keys()
        total = nulls = count = 0
        examples: list[Any] = []
        for values in parts.column_parts(column):
            absent = parent_keys.absent(values)
            total, nulls, count = total + len(values), nulls + values.null_count, count + len(absent)
            examples += absent.slice(0, EXAMPLES - len(examples)).to_pylist()
    except (KeyError, pa.ArrowException) as exc:
        observed: dict[str, Any] = {"exception": f"cannot read the key columns: {exc}"}
        return CheckResult(parts.name, FK_CHECK, column, kwargs, False, observed, OUR_SOURCE)
    return fk_result(parts, column, parent, key, (total, nulls, count), examples)


def fk_by_buckets(
    parts: TableParts, column: str, parent: TableParts, key: str, cluster: str | None = None
) -> CheckResult:
    """``fk_check`` with both columns split by a hash of the value and looked up a bucket at a
    time (``group_rules.absent``), so no key column is held whole: for large tables whose parent
    keys are not one consecutive run of integers. ``cluster``: a remote Dask cluster whose
    workers share this filesystem, to run the split and lookup tasks on."""
    found = group_rules.absent(parts.files, column, parent.files, key, examples=EXAMPLES, cluster=cluster)
    return fk_result(parts, column, parent.name, key, (found.rows, found.nulls, found.absent), found.examples)


def fk_result(
    parts: TableParts, column: str, parent: str, key: str, counts: tuple[int, int, int], examples: list[Any]
) -> CheckResult:
    """A foreign-key verdict from its counts ``(values, nulls, not keys)``, however they were found."""
    total, nulls, count = counts
    observed = {
        "element_count": total,
        "missing_count": nulls,
        "unexpected_count": count,
        "unexpected_percent": unexpected_percent(count, total - nulls) or 0.0,
        "partial_unexpected_list": jsonable(examples),
    }
    kwargs = {"parent_table": parent, "parent_column": key}
    return CheckResult(parts.name, FK_CHECK, column, kwargs, count == 0, observed, OUR_SOURCE)
