"""Per-row expectations run where each part is written, merged by ``validate_tables``.

``create`` can hand the engine a :class:`PartValidator`: a generation worker (a pool process or a
Dask task) that has just written a part runs the table's per-row suite on it, in Great
Expectations, batch by batch exactly as ``validate_tables`` would, and sends back only the folded
counts and first examples (:class:`PartTallies`). ``validate_tables(..., from_parts=...)`` then
merges them part by part instead of reading every part again: GX stays the validator of record,
the work is spread over the workers (and over a cluster's machines), and what comes back is a few
hundred bytes per part.

The merged results are the ones ``validate_tables`` computes itself, or they are not used:

- the same batches (the part is read back the same way, and batches never span parts);
- the same pandas dtypes: a worker sees one part, so it calls an integer or bool column nullable
  when the part has a null or the spec declares a null rate; when that differs from the whole
  table's footers for any such column, the table is validated again from its files;
- the same expectations (their checks and arguments are compared), and the same files (name,
  size and modification time): a part rewritten after the worker saw it is read again.

Anything that fails in a worker (a bad user expectation, a GX error) makes that part's result
None, and ``validate_tables`` then validates the table itself, raising what it raises.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg.generators.spec import Spec
from synthreg.validators.checks import fk_result, unique_result
from synthreg.validators.parts import TableParts
from synthreg.validators.plan import BATCH, UNIQUE, Planned, spec_plan, user_expectations
from synthreg.validators.results import CheckResult

__all__ = [
    "KeyFacts",
    "PartTallies",
    "PartValidator",
    "facts_of",
    "fk_from_facts",
    "key_range",
    "plan_key",
    "unique_from_facts",
    "usable",
]


@dataclass(frozen=True)
class KeyFacts:
    """One part's facts about an integer key column: enough to judge uniqueness and foreign keys
    over all parts without reading the column again, when the keys come in order."""

    rows: int
    nulls: int
    first: int | None
    last: int | None
    low: int | None
    high: int | None
    increasing: bool
    """Strictly increasing (no null)."""
    consecutive: bool
    """Each value one more than the previous (no null)."""


@dataclass(frozen=True)
class PartTallies:
    """One part's per-row results: what ``Tally`` folded over its batches, per expectation; and
    the facts of its key columns (primary key, unique and foreign-key columns)."""

    plan: str
    nullable: frozenset[str]
    size: int
    mtime_ns: int
    tallies: tuple[dict[str, Any], ...]
    keys: dict[str, KeyFacts]


def plan_key(planned: list[Planned], chosen: list[int]) -> str:
    """The per-row expectations a result is for: their checks, columns and arguments."""
    return json.dumps(
        [[planned[i].check, planned[i].column, planned[i].kwargs] for i in chosen],
        sort_keys=True,
        default=str,
    )


def int_like(parts: TableParts) -> set[str]:
    """Columns whose pandas dtype depends on being nullable (integers and bools)."""
    out = set()
    for schema in parts.schemas:
        for f in schema:
            typ = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
            if pa.types.is_integer(typ) or pa.types.is_boolean(typ):
                out.add(f.name)
    return out


def usable(found: PartTallies | None, path: Path, key: str, nullable: set[str], dtyped: set[str]) -> bool:
    """Whether a worker's result for ``path`` is what validating the file here would give."""
    if found is None or found.plan != key or not _same_file(found, path):
        return False
    return (found.nullable & dtyped) == (nullable & dtyped)


def _same_file(found: PartTallies, path: Path) -> bool:
    """``path`` is still the file the worker saw (same size and modification time)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (info.st_size, info.st_mtime_ns) == (found.size, found.mtime_ns)


class PartValidator:
    """``observe`` for the engine: the table's per-row suite on a part just written (picklable)."""

    def __init__(self, spec: Spec, source: str) -> None:
        self.spec = spec
        self.source = source

    def __call__(self, table: str, path: Path, first_row: int = 0) -> PartTallies | None:
        try:
            return self._validate(table, Path(path))
        except Exception:  # validate_tables does it again, and raises it there
            return None

    def _validate(self, table: str, path: Path) -> PartTallies | None:
        from synthreg.validators.gx_runner import Tally, no_fingerprint, to_frame

        spec_table = self.spec.tables[table]
        if spec_table.llm is not None:
            return None
        info = os.stat(path)
        parts = TableParts(table, (path,), (pq.read_metadata(path),), (pq.read_schema(path),))
        declared = {name for name, col in spec_table.columns.items() if (col.null_rate or 0) > 0}
        nullable = parts.nullable() | (declared & set(parts.columns))
        # One GX context per process: a Dask worker with several threads runs them one at a time
        # (GX keeps the last frame per asset, so two threads would validate each other's frames).
        with _GX_LOCK:
            planned, chosen, suite = _suite(self.spec, self.source, table)
            tallies = [Tally(planned[i]) for i in chosen]
            with no_fingerprint():
                for batch in parts.batches(parts.columns) if chosen else ():
                    for tally, result in zip(tallies, suite.run(to_frame(batch, nullable)), strict=True):
                        tally.add(result)
        unique = (p.column for p in planned if p.scope == UNIQUE)
        columns = {spec_table.primary_key, *spec_table.foreign_keys(), *unique}
        keys = {c: _key_facts(parts, c) for c in sorted(c for c in columns if isinstance(c, str))}
        return PartTallies(
            plan_key(planned, chosen),
            frozenset(nullable),
            info.st_size,
            info.st_mtime_ns,
            tuple(t.state() for t in tallies),
            {c: f for c, f in keys.items() if f is not None},
        )


def _key_facts(parts: TableParts, column: str) -> KeyFacts | None:
    """An integer column's facts in this one part; None for other types (or a missing column)."""
    import numpy as np
    import pyarrow.compute as pc

    if column not in parts.schemas[0].names:
        return None
    values = next(parts.column_parts(column))
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not pa.types.is_integer(values.type):
        return None
    present = np.asarray(pc.drop_null(values).to_numpy(), dtype=np.int64)
    steps = np.diff(present)
    whole = not values.null_count
    return KeyFacts(
        rows=len(values),
        nulls=values.null_count,
        first=int(present[0]) if whole and len(present) else None,
        last=int(present[-1]) if whole and len(present) else None,
        low=int(present.min()) if len(present) else None,
        high=int(present.max()) if len(present) else None,
        increasing=whole and bool((steps > 0).all()),
        consecutive=whole and bool((steps == 1).all()),
    )


def facts_of(
    from_parts: Mapping[str, list[tuple[str, Any]]], parts: TableParts, column: str
) -> list[KeyFacts] | None:
    """The workers' facts of ``column`` for every part of the table, in part order; None when a
    part has none or its file is not the one the worker saw."""
    seen = dict(from_parts.get(parts.name, []))
    out = []
    for path in parts.files:
        found = seen.get(path.name)
        if not isinstance(found, PartTallies) or column not in found.keys or not _same_file(found, path):
            return None
        out.append(found.keys[column])
    return out


#: Per process (a worker validates many parts): (spec sha256, source, table) -> suite.
_SUITES: dict[tuple[str, str, str], tuple[list[Planned], list[int], Any]] = {}
_RUNNER: list[Any] = []
_GX_LOCK = threading.Lock()


def _suite(spec: Spec, source: str, table: str) -> tuple[list[Planned], list[int], Any]:
    key = (spec.sha256(), source, table)
    if key not in _SUITES:
        from synthreg.validators.gx_runner import GxRunner

        if not _RUNNER:
            _RUNNER.append(GxRunner())
        planned = spec_plan(spec.tables[table]) + user_expectations(spec, source)[table]
        chosen = [i for i, p in enumerate(planned) if p.scope == BATCH]
        name = f"{table}.rows.{len(_SUITES)}"
        suite = _RUNNER[0].suite(name, [planned[i] for i in chosen]) if chosen else None
        _SUITES[key] = (planned, chosen, suite)
    return _SUITES[key]


# ---------------------------------------------------------------- checks from the facts


def unique_from_facts(parts: TableParts, planned: Planned, facts: list[KeyFacts]) -> CheckResult | None:
    """``expect_column_values_to_be_unique`` when the parts' keys strictly increase across the
    parts (then they are unique), as ``checks.unique_check`` reports it; None otherwise."""
    last: int | None = None
    for f in facts:
        if f.nulls or not f.increasing:
            return None
        if f.rows:
            if last is not None and f.first is not None and f.first <= last:
                return None
            last = f.last
    rows = sum(f.rows for f in facts)
    return unique_result(parts, planned, rows, rows, 0, [])


def key_range(facts: list[KeyFacts]) -> tuple[int, int] | None:
    """The parent's keys as one consecutive run over its parts ``(first, last)``; None otherwise."""
    first: int | None = None
    last: int | None = None
    for f in facts:
        if f.nulls or not f.consecutive:
            return None
        if not f.rows or f.first is None or f.last is None:
            continue
        if last is not None and f.first != last + 1:
            return None
        first = f.first if first is None else first
        last = f.last
    return None if first is None or last is None else (first, last)


def fk_from_facts(
    parts: TableParts, column: str, parent: str, key: str, child: list[KeyFacts], keys: tuple[int, int]
) -> CheckResult | None:
    """Foreign-key integrity when every child value lies in the parent's consecutive key run, as
    ``checks.fk_check`` reports it; None when some may not (then the values are read)."""
    first, last = keys
    for f in child:
        if f.rows > f.nulls and (f.low is None or f.high is None or f.low < first or f.high > last):
            return None
    counts = (sum(f.rows for f in child), sum(f.nulls for f in child), 0)
    return fk_result(parts, column, parent, key, counts, [])
