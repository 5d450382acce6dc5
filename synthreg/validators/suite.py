"""Validate generated tables against their spec: Great Expectations plus our own checks.

``validate_tables`` derives an expectation suite per table from the spec (row count,
column set, nulls, ranges, category sets, date ranges, uniqueness) and adds the
user's own ``expectations``; we add what GX cannot express on one frame: the Arrow
schema and foreign-key integrity across tables. Every check comes back as one
``CheckResult`` per expectation per table, in one format, whatever the number of parts.

A table is a directory of Parquet parts, possibly far larger than memory as one pandas
frame, so no whole table is ever turned into one frame (see ``plan`` for the scopes):

- Per-row expectations (not null, between, in set, the user's column/pair/multicolumn
  map expectations) run in GX on each batch (a whole part when it fits in ~8M values,
  else slices of it) with one suite per table; their counts are summed,
  ``unexpected_percent`` recomputed on the totals, the first 20 offending values kept,
  and ``mostly`` (the null-rate checks) judged on the whole table, never part by part.
- ``expect_table_row_count_to_equal`` is the sum of the parts' Parquet footers
  (source ``synthreg``).
- ``expect_column_values_to_be_unique`` on the spec's keys reads that one column over
  all parts and finds values repeated anywhere in it (source ``synthreg``, GX's format).
- ``expect_table_columns_to_match_set`` runs once in GX, on an empty frame with the
  parts' columns.
- The user's whole-table expectations (mean, quantiles, distinct values, uniqueness,
  z-scores, monotonicity...) run once in GX on the whole table, reading only the
  columns they name (all of them with a ``row_condition``; a row-count one gets a
  column-less frame of the right length, a column-set one an empty frame). Their
  results do not depend on how the table is split into parts; their memory is that of
  those columns, the one place a large table's columns are held whole.
- Foreign keys: the parent key column is read once, then checked against each child
  part in turn.

Only single key columns (uniqueness, foreign keys) are held whole, as Arrow/NumPy
arrays. Those checks run in a thread beside the GX batches. With a single part and a
single batch, every GX result is what GX gives on the whole table.

Great Expectations is imported inside functions: it costs seconds to import.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthreg.generators import group_rules
from synthreg.generators.spec import Spec
from synthreg.validators.checks import (
    KeyIndex,
    KeySet,
    fk_by_buckets,
    fk_check,
    key_run,
    row_count_check,
    schema_check,
    unique_check,
)
from synthreg.validators.fused import (
    PartTallies,
    facts_of,
    fk_from_facts,
    int_like,
    key_range,
    plan_key,
    unique_from_facts,
    usable,
)
from synthreg.validators.gx_runner import GxRunner, Tally, gx_check, import_gx, no_fingerprint, to_frame
from synthreg.validators.parts import (
    LARGE_TABLE_ROWS,
    TableParts,
    lean_memory,
    open_parts,
    release_unused,
)
from synthreg.validators.plan import (
    BATCH,
    ROW_COUNT,
    UNIQUE,
    WHOLE,
    Planned,
    llm_table_plan,
    spec_plan,
    user_expectations,
)
from synthreg.validators.results import CheckResult, ValidationResult
from synthreg.validators.rules import constraint_checks, proportion_checks, time_order_checks

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CheckResult", "ValidationResult", "validate_tables"]

#: Frames for whole-table expectations that name no column.
_ROWS = "<rows>"
#: Tables with more rows validate their per-row GX batches and our checks one after the other.
OVERLAP_MAX_ROWS = LARGE_TABLE_ROWS
_SCHEMA = "<schema>"


@dataclass
class _Run:
    """One ``validate_tables`` call: the GX context and the parent keys already read."""

    gx: GxRunner
    tables_dir: Path
    distributions: bool = True
    keys: dict[tuple[str, str], KeySet] = field(default_factory=dict)
    #: Per-row results the generation workers computed (``fused.PartValidator``), by table.
    from_parts: Mapping[str, list[tuple[str, Any]]] = field(default_factory=dict)
    #: A remote Dask cluster for the checks by buckets (its workers share this filesystem).
    cluster: str | None = None

    def key_set(self, parent: str, key: str) -> KeySet:
        if (parent, key) not in self.keys:
            self.keys[(parent, key)] = KeySet.of_column(open_parts(self.tables_dir, parent), key)
        return self.keys[(parent, key)]

    def by_buckets(self, parts: TableParts, column: str, parent: str, key: str) -> CheckResult | None:
        """The foreign-key check by hash buckets (``fk_by_buckets``) when the child and parent
        have more than ``BUCKET_ROWS`` rows together and the parent's keys are not one
        consecutive run of integers (a run found here is kept as the parent's key set)."""
        if (parent, key) in self.keys:
            return None
        parent_parts = open_parts(self.tables_dir, parent)
        if parts.rows + parent_parts.rows <= group_rules.BUCKET_ROWS:
            return None
        run = key_run(parent_parts, key)
        if run is not None:
            self.keys[(parent, key)] = KeySet.of_index(KeyIndex.of_run(run))
            return None
        return fk_by_buckets(parts, column, parent_parts, key, self.cluster)


def validate_tables(
    spec: Spec,
    tables_dir: Path,
    *,
    source: str = "<spec>",
    distributions: bool = True,
    from_parts: Mapping[str, list[tuple[str, Any]]] | None = None,
    cluster: str | None = None,
) -> ValidationResult:
    """Validate ``tables_dir/<table>/*.parquet`` against ``spec``.

    User expectations are checked (names and arguments) before any data is read;
    a bad one raises ``SpecError`` naming ``tables.<t>.expectations.<i>`` in ``source``.
    A table without Parquet files raises ``NotFoundError``. ``distributions=False``
    skips the checks of declared proportions (for versions derived by disabling rows).
    ``from_parts``: ``GenerationResult.observed`` of a generation run with a
    ``fused.PartValidator``; a table's per-row results are merged from it when they are what
    reading its files here would give (see ``fused``), and computed here otherwise.
    ``cluster``: a remote Dask cluster (``tcp://``, ``tls://``) whose workers see ``tables_dir``:
    uniqueness and foreign keys counted by buckets run there as tasks (their pieces in
    ``.checks`` beside ``tables_dir``); the results are the same.
    """
    gx = import_gx()
    started = time.perf_counter()
    user = user_expectations(spec, source)
    run = _Run(GxRunner(), Path(tables_dir), distributions, from_parts=from_parts or {}, cluster=cluster)
    checks: list[CheckResult] = []
    with no_fingerprint(), lean_memory(spec):
        for name in spec.table_order():
            checks += _validate_table(run, spec, name, user[name])
            release_unused()
    failed = sum(not check.success for check in checks)
    return ValidationResult(
        success=failed == 0,
        evaluated=len(checks),
        failed=failed,
        checks=tuple(checks),
        seconds=round(time.perf_counter() - started, 3),
        engine=f"great_expectations {gx.__version__}",
    )


def _validate_table(run: _Run, spec: Spec, name: str, user: list[Planned]) -> list[CheckResult]:
    parts = open_parts(run.tables_dir, name)
    if spec.tables[name].llm is not None:
        return _llm_table_checks(spec, parts)
    planned = spec_plan(spec.tables[name]) + user
    nullable = parts.nullable()
    # Our checks are Arrow reads and NumPy sorts, which release the GIL: on a second core
    # they overlap the GX batches (~25% off the wall time at 10M rows on 2 cores). Past
    # OVERLAP_MAX_ROWS they run after them: both hold a few hundred MB, and memory is then
    # the limit (at 100M rows: peak RSS 1.23 -> 0.90 GB for 10% more time).
    if parts.rows > OVERLAP_MAX_ROWS:
        found = _run_batches(run, parts, planned, nullable) | _run_whole(run, parts, planned, nullable)
        own, table_checks = _our_checks(run, spec, parts, planned)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthreg-checks") as pool:
            ours = pool.submit(_our_checks, run, spec, parts, planned)
            found = _run_batches(run, parts, planned, nullable) | _run_whole(run, parts, planned, nullable)
            own, table_checks = ours.result()
    found |= own
    return [found[i] for i in range(len(planned))] + table_checks


def _llm_table_checks(spec: Spec, parts: TableParts) -> list[CheckResult]:
    """An LLM-made table has no spec columns to derive expectations from: its row count (at
    most one row per sample) and its Arrow schema (the labeled rows' schema) are checked."""
    return [row_count_check(parts, llm_table_plan(spec.tables[parts.name])), schema_check(spec, parts)]


def _our_checks(
    run: _Run, spec: Spec, parts: TableParts, planned: list[Planned]
) -> tuple[dict[int, CheckResult], list[CheckResult]]:
    """(row count and key uniqueness by plan index, [Arrow schema, foreign keys...])."""
    found: dict[int, CheckResult] = {}
    for i, p in enumerate(planned):
        if p.scope == ROW_COUNT:
            found[i] = row_count_check(parts, p)
        elif p.scope == UNIQUE:
            facts = facts_of(run.from_parts, parts, p.column or "")
            from_facts = unique_from_facts(parts, p, facts) if facts is not None else None
            found[i] = from_facts or unique_check(parts, p, run.cluster)
    checks = [schema_check(spec, parts)]
    for column, (parent, key) in spec.tables[parts.name].foreign_keys().items():
        checks.append(
            _fk_from_workers(run, parts, column, parent, key)
            or run.by_buckets(parts, column, parent, key)
            or fk_check(parts, column, parent, key, functools.partial(run.key_set, parent, key))
        )
    checks += time_order_checks(spec, parts, lambda table: open_parts(run.tables_dir, table), run.cluster)
    checks += constraint_checks(spec, parts)
    if run.distributions:
        checks += proportion_checks(spec, parts)
    return found, checks


def _fk_from_workers(run: _Run, parts: TableParts, column: str, parent: str, key: str) -> CheckResult | None:
    """A foreign key judged from the generation workers' facts of both tables, when they suffice."""
    child = facts_of(run.from_parts, parts, column)
    if child is None:
        return None
    parent_facts = facts_of(run.from_parts, open_parts(run.tables_dir, parent), key)
    keys = key_range(parent_facts) if parent_facts is not None else None
    return fk_from_facts(parts, column, parent, key, child, keys) if keys is not None else None


def _run_batches(
    run: _Run, parts: TableParts, planned: list[Planned], nullable: set[str]
) -> dict[int, CheckResult]:
    """Per-row expectations: one suite, run on every batch of every part, results folded."""
    chosen = [i for i, p in enumerate(planned) if p.scope == BATCH]
    if not chosen:
        return {}
    tallies = [Tally(planned[i]) for i in chosen]
    merged = _merged_parts(run, parts, planned, chosen, nullable)
    if merged is not None:
        for part in merged:
            for tally, state in zip(tallies, part.tallies, strict=True):
                tally.merge(state)
        return {i: tally.check(parts.name) for i, tally in zip(chosen, tallies, strict=True)}
    suite = run.gx.suite(f"{parts.name}.rows", [planned[i] for i in chosen])
    # Every spec column has a per-row check (not null), so every batch needs them all.
    for batch in parts.batches(parts.columns):
        for tally, result in zip(tallies, suite.run(to_frame(batch, nullable)), strict=True):
            tally.add(result)
    return {i: tally.check(parts.name) for i, tally in zip(chosen, tallies, strict=True)}


def _merged_parts(
    run: _Run, parts: TableParts, planned: list[Planned], chosen: list[int], nullable: set[str]
) -> list[PartTallies] | None:
    """The workers' results for every part of the table, in part order, or None when any part's is
    missing or is not what validating its file here would give."""
    seen = dict(run.from_parts.get(parts.name, []))
    if not seen:
        return None
    key, dtyped = plan_key(planned, chosen), int_like(parts)
    found = [seen.get(path.name) for path in parts.files]
    if not all(usable(f, path, key, nullable, dtyped) for f, path in zip(found, parts.files, strict=True)):
        return None
    return [f for f in found if f is not None]


def _run_whole(
    run: _Run, parts: TableParts, planned: list[Planned], nullable: set[str]
) -> dict[int, CheckResult]:
    """Whole-table expectations: one GX run per frame they share (the same columns)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, p in enumerate(planned):
        if p.scope == WHOLE:
            groups.setdefault(_frame_key(p, parts.columns), []).append(i)
    found: dict[int, CheckResult] = {}
    for n, (key, indices) in enumerate(groups.items()):
        suite = run.gx.suite(f"{parts.name}.whole{n}", [planned[i] for i in indices])
        results = suite.run(_whole_frame(parts, key, nullable))
        found |= {i: gx_check(parts.name, planned[i], r) for i, r in zip(indices, results, strict=True)}
    return found


def _frame_key(planned: Planned, columns: list[str]) -> tuple[str, ...]:
    """The columns a whole-table expectation reads; table-level ones need rows or names only."""
    if planned.kwargs.get("row_condition"):
        return tuple(columns)  # the condition may name any column
    reads = planned.reads()
    if reads:
        return reads
    return (_ROWS,) if "row_count" in planned.check else (_SCHEMA,)


def _whole_frame(parts: TableParts, key: tuple[str, ...], nullable: set[str]) -> pd.DataFrame:
    import pandas as pd

    if key == (_ROWS,):
        return pd.DataFrame(index=pd.RangeIndex(parts.rows))
    if key == (_SCHEMA,):
        return to_frame(parts.empty(), nullable)
    return to_frame(parts.read(list(key)), nullable)
