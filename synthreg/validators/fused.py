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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg.generators.spec import Spec
from synthreg.validators.parts import TableParts
from synthreg.validators.plan import BATCH, Planned, spec_plan, user_expectations

__all__ = ["PartTallies", "PartValidator", "plan_key", "usable"]


@dataclass(frozen=True)
class PartTallies:
    """One part's per-row results: what ``Tally`` folded over its batches, per expectation."""

    plan: str
    nullable: frozenset[str]
    size: int
    mtime_ns: int
    tallies: tuple[dict[str, Any], ...]


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
    if found is None or found.plan != key:
        return False
    try:
        info = os.stat(path)
    except OSError:
        return False
    if (info.st_size, info.st_mtime_ns) != (found.size, found.mtime_ns):
        return False
    return (found.nullable & dtyped) == (nullable & dtyped)


class PartValidator:
    """``observe`` for the engine: the table's per-row suite on a part just written (picklable)."""

    def __init__(self, spec: Spec, source: str) -> None:
        self.spec = spec
        self.source = source

    def __call__(self, table: str, path: Path) -> PartTallies | None:
        try:
            return self._validate(table, Path(path))
        except Exception:  # validate_tables does it again, and raises it there
            return None

    def _validate(self, table: str, path: Path) -> PartTallies | None:
        from synthreg.validators.gx_runner import Tally, no_fingerprint, to_frame

        spec_table = self.spec.tables[table]
        if spec_table.llm is not None:
            return None
        planned, chosen, suite = _suite(self.spec, self.source, table)
        if not chosen:
            return None
        info = os.stat(path)
        parts = TableParts(table, (path,), (pq.read_metadata(path),), (pq.read_schema(path),))
        declared = {name for name, col in spec_table.columns.items() if (col.null_rate or 0) > 0}
        nullable = parts.nullable() | (declared & set(parts.columns))
        tallies = [Tally(planned[i]) for i in chosen]
        with no_fingerprint():
            for batch in parts.batches(parts.columns):
                for tally, result in zip(tallies, suite.run(to_frame(batch, nullable)), strict=True):
                    tally.add(result)
        return PartTallies(
            plan_key(planned, chosen),
            frozenset(nullable),
            info.st_size,
            info.st_mtime_ns,
            tuple(t.state() for t in tallies),
        )


#: Per process (a worker validates many parts): (spec sha256, source, table) -> suite.
_SUITES: dict[tuple[str, str, str], tuple[list[Planned], list[int], Any]] = {}
_RUNNER: list[Any] = []


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
