"""Checks of what the spec declares across rows and tables, in the suite's result format.

- ``category_proportions``: each category's share against the spec's probability,
  within 4 standard errors of a binomial proportion plus 3/n (at least 0.01);
- ``time_order``: every row of a column with ``after: parent.column`` lies at or after
  its parent row's time (joined on the foreign key, whatever rows were disabled);
- ``sum_limit``, ``max_rows_per_group``, ``unique_combination``, ``inequality``: the
  table's declared constraints, judged over the whole table.

Distribution checks are skipped for derived versions (disabling rows shifts them on
purpose); the structural ones always run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synthreg.generators import group_rules
from synthreg.generators.constraints import GROUP_KINDS
from synthreg.generators.group_rules import measure
from synthreg.generators.spec import Constraint, Spec
from synthreg.validators.checks import KeyIndex, key_run
from synthreg.validators.parts import TableParts
from synthreg.validators.results import OUR_SOURCE, CheckResult, jsonable

__all__ = ["constraint_checks", "drift_checks", "proportion_checks", "time_order_checks"]

_DAY_MS = 86_400_000


def _result(
    table: str, check: str, column: str | None, kwargs: dict[str, Any], ok: bool, observed: dict[str, Any]
) -> CheckResult:
    return CheckResult(table, check, column, jsonable(kwargs), bool(ok), jsonable(observed), OUR_SOURCE)


def _tolerance(p: float, n: int) -> float:
    """4 standard errors of a binomial share, plus 3/n where the normal approximation is poor."""
    return max(0.01, 4 * math.sqrt(p * (1 - p) / n) + 3 / n)


def proportion_checks(spec: Spec, parts: TableParts) -> list[CheckResult]:
    """One check per category column with declared (or equal) probabilities."""
    table = spec.tables[parts.name]
    # rows a group rule drops are chosen by the values of the columns it groups by
    dropped_by = {
        c for r in table.constraints if r.kind in GROUP_KINDS and r.action == "drop" for c in r.referenced()
    }
    out = []
    for name, col in table.columns.items():
        if col.type != "category" or any(n.column == name for n in table.noise) or name in dropped_by:
            continue
        counts: dict[Any, int] = {}
        for values in parts.column_parts(name):  # one part at a time: counts are all it keeps
            _count_into(counts, values)
        total = sum(counts.values())
        probs = col.probabilities or [1 / len(col.categories)] * len(col.categories)
        expected = dict(zip(col.categories, probs, strict=True))
        shares = {c: counts.get(c, 0) / total if total else 0.0 for c in col.categories}
        outside = {
            c: round(shares[c] - p, 4)
            for c, p in expected.items()
            if total and abs(shares[c] - p) > _tolerance(p, total)
        }
        out.append(
            _result(
                parts.name,
                "category_proportions",
                name,
                {"expected": expected, "tolerance": "max(0.01, 4 standard errors + 3/n)"},
                not outside,
                {"observed": shares, "outside": outside, "n": total},
            )
        )
    return out


def _ms(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Epoch milliseconds (dates as their midnight), nulls as the int64 minimum."""
    typ = values.type
    if pa.types.is_date32(typ):
        days = np.asarray(pc.fill_null(values.cast(pa.int32()), np.iinfo(np.int32).min), dtype=np.int64)
        return np.where(days == np.iinfo(np.int32).min, np.iinfo(np.int64).min, days * _DAY_MS)
    ms = values.cast(pa.timestamp("ms")).cast(pa.int64())
    return np.asarray(pc.fill_null(ms, np.iinfo(np.int64).min), dtype=np.int64)


#: Child rows compared at a time in ``time_order``: its working arrays stay ~40 MB whatever the
#: part size (a 4M-row part made ~150 MB of them at once).
_TIME_SLICE = 1 << 20
_NULL_MS = np.iinfo(np.int64).min
#: Parent times take less than 8 bytes a row only past this size (16M rows).
_COMPACT_FROM_BYTES = 128 << 20


class _ParentTimes:
    """A parent column's epoch milliseconds in key order, held compactly.

    Values are kept relative to the smallest, plus one (0 marks a null): in a ``uint32`` when
    they span under ~49 days, else as a ``uint32`` low word and a ``uint8`` high byte when they
    span under ~34 years (5 bytes a row: 250 MB, not 400, for 50M parents), else as ``int64``;
    and as ``int64`` below ``_COMPACT_FROM_BYTES``, where one gather is faster than two.
    The range comes from the Parquet footers' statistics, checked against every value read
    (a footer that lies, or has none, falls back to ``int64``). ``at(pos)`` gives the exact
    values back (nulls as the int64 minimum), so the checks are exact.
    """

    def __init__(self, parent: TableParts, column: str, order: np.ndarray | None) -> None:
        small = parent.rows * 8 <= _COMPACT_FROM_BYTES  # two gathers cost ~2x one: only when it pays
        ends = None if small else _footer_range(parent, column)
        self.base = ends[0] - 1 if ends else 0
        span = ends[1] - self.base if ends else 1 << 62
        self.low = np.empty(0, dtype=np.uint32)
        self.high: np.ndarray | None = None
        self.whole: np.ndarray | None = None
        if small or span >= 1 << 40 or not self._fill(parent, column, span, ends):
            self.low, self.high = np.empty(0, dtype=np.uint32), None
            self.whole = np.empty(parent.rows, dtype=np.int64)
            self._fill(parent, column, span, None)
        if order is not None:  # keys were not sorted: follow the index's order
            if self.whole is not None:
                self.whole = self.whole[order]
            else:
                self.low = self.low[order]
                self.high = self.high[order] if self.high is not None else None

    def _fill(self, parent: TableParts, column: str, span: int, ends: tuple[int, int] | None) -> bool:
        """Read the column part by part into the arrays; False if a value is outside ``ends``."""
        if self.whole is None:
            self.low = np.empty(parent.rows, dtype=np.uint32)
            self.high = np.empty(parent.rows, dtype=np.uint8) if span >= 1 << 32 else None
        at = 0
        for ms in _ms_slices(parent, column):  # a slice at a time: no whole-table or whole-part copy
            n = len(ms)
            if self.whole is not None:
                self.whole[at : at + n] = ms
                at += n
                continue
            valid = ms != _NULL_MS
            assert ends is not None
            if valid.any() and (
                int(np.min(ms, where=valid, initial=ends[1])) < ends[0]
                or int(np.max(ms, where=valid, initial=ends[0])) > ends[1]
            ):
                return False
            rel = np.where(valid, ms - self.base, 0)
            self.low[at : at + n] = rel
            if self.high is not None:
                self.high[at : at + n] = rel >> 32
            at += n
        return True

    def at(self, pos: np.ndarray) -> np.ndarray:
        """Exact epoch ms at key positions ``pos`` (nulls: the int64 minimum)."""
        if self.whole is not None:
            return self.whole[pos]
        rel = self.low[pos].astype(np.int64)
        if self.high is not None:
            rel |= self.high[pos].astype(np.int64) << 32
        nulls = rel == 0
        rel += self.base
        if nulls.any():
            rel[nulls] = _NULL_MS
        return rel


def _ms_slices(parts: TableParts, column: str) -> Iterator[np.ndarray]:
    """``column`` as epoch ms, ``_TIME_SLICE`` rows at a time, in row order."""
    for part in parts.column_parts(column):
        for at in range(0, len(part), _TIME_SLICE):
            yield _ms(part.slice(at, _TIME_SLICE))


def _footer_range(parts: TableParts, column: str) -> tuple[int, int] | None:
    """(min, max) epoch ms of ``column`` from the parts' row-group statistics; None when a row
    group has values but no statistics (or none has values)."""
    lo: int | None = None
    hi: int | None = None
    for md, schema in zip(parts.metadata, parts.schemas, strict=True):
        if column not in schema.names:
            return None
        typ = schema.field(column).type
        leaves = [md.schema.column(j).path for j in range(md.num_columns)]
        if column not in leaves:
            return None
        i = leaves.index(column)  # the Parquet leaf, not the Arrow field (a struct has several)
        for g in range(md.num_row_groups):
            chunk = md.row_group(g).column(i)
            stats = chunk.statistics
            if chunk.num_values == 0 or (stats is not None and stats.null_count == chunk.num_values):
                continue
            if stats is None or not stats.has_min_max:
                return None
            try:
                low, high = (int(v) for v in _ms(pa.array([stats.min, stats.max], typ)))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):  # e.g. past year 9999
                return None
            lo, hi = (low, high) if lo is None or hi is None else (min(lo, low), max(hi, high))
    return (lo, hi) if lo is not None and hi is not None else None


def time_order_checks(
    spec: Spec, parts: TableParts, open_table: Any, cluster: str | None = None
) -> list[CheckResult]:
    """Each ``after:`` column against its parent row's time, joined on the foreign key.

    When the parent's keys are one consecutive run (generated keys), a child value's parent row
    is found by subtraction; otherwise, over more than ``BUCKET_ROWS`` rows of child and parent
    together, both are split by a hash of the key and compared a bucket at a time
    (``group_rules.late``, as tasks on ``cluster`` when given), and below that the parent's keys
    and times are held. The counts and examples are the same either way."""
    from synthreg.generators.columns import via_column

    out = []
    for name, col in spec.tables[parts.name].columns.items():
        if not col.after:
            continue
        ptable, pcol = col.after.split(".", 1)
        via = via_column(spec, parts.name, name)
        pkey = spec.tables[ptable].primary_key or ""
        parent = open_table(ptable)
        big = parts.rows + parent.rows > group_rules.BUCKET_ROWS
        run = key_run(parent, pkey) if big else None
        if big and run is None:
            found = group_rules.late(parts.files, via, name, parent.files, pkey, pcol, _ms, cluster=cluster)
            bad, checked, examples = found.unexpected, found.checked, list(found.examples)
        else:
            index = KeyIndex.of_run(run) if run is not None else KeyIndex.of_column(parent, pkey)
            bad, checked, examples = _late_rows(
                parts, via, name, index, _ParentTimes(parent, pcol, index.order)
            )
        out.append(
            _result(
                parts.name,
                "time_order",
                name,
                {"after": col.after, "via": via},
                bad == 0,
                {"checked": checked, "unexpected_count": bad, "parent_keys": examples},
            )
        )
    return out


def _late_rows(
    parts: TableParts, via: str, name: str, index: KeyIndex, times: _ParentTimes
) -> tuple[int, int, list[int]]:
    """(earlier than the parent, compared, the first 5 earlier rows' keys) with the parent's keys
    and times held (``index``, ``times``), the child read ``_TIME_SLICE`` rows at a time."""
    bad, checked = 0, 0
    examples: list[int] = []
    for fk_part, child_part in zip(parts.column_parts(via), parts.column_parts(name), strict=True):
        for at in range(0, len(fk_part), _TIME_SLICE):
            fk = fk_part.slice(at, _TIME_SLICE)
            fk_values = np.asarray(pc.fill_null(fk, -1).cast(pa.int64()))
            child_ms = _ms(child_part.slice(at, _TIME_SLICE))
            pos, found = index.positions(fk_values)
            known = (fk_values >= 0) & found & (child_ms != _NULL_MS)
            late = known & (child_ms < times.at(pos))
            bad, checked = bad + int(late.sum()), checked + int(known.sum())
            examples += fk_values[late][: 5 - len(examples)].tolist()
    return bad, checked, examples


def constraint_checks(spec: Spec, parts: TableParts) -> list[CheckResult]:
    """The table's declared constraints, each over the whole table."""
    return [
        _inequality(parts, rule) if rule.kind == "inequality" else _group_check(spec, parts, rule)
        for rule in spec.tables[parts.name].constraints
    ]


def _group_check(spec: Spec, parts: TableParts, rule: Constraint) -> CheckResult:
    """A group rule measured a bucket of groups at a time (``group_rules.measure``), never the
    rule's columns of the whole table at once."""
    facts = measure(spec, parts.name, rule, parts.files, slack=1e-6)
    if rule.kind == "sum_limit":
        assert rule.limit is not None
        return _result(
            parts.name,
            "sum_limit",
            rule.column,
            {"group_by": rule.group_by, "limit": rule.limit},
            not facts.over,
            {"groups": facts.groups, "groups_over": facts.over, "max_sum": facts.largest},
        )
    if rule.kind == "max_rows_per_group":
        return _result(
            parts.name,
            "max_rows_per_group",
            None,
            {"group_by": rule.group_by, "limit": rule.limit},
            not facts.over,
            {"groups_over": facts.over, "max_rows": int(facts.largest)},
        )
    return _result(
        parts.name,
        "unique_combination",
        None,
        {"columns": rule.columns},
        not facts.over,
        {"repeated_combinations": facts.over},
    )


def _inequality(parts: TableParts, rule: Constraint) -> CheckResult:
    assert rule.left and rule.right and rule.op
    compare = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal}[rule.op]
    bad = 0
    for left, right in zip(parts.column_parts(rule.left), parts.column_parts(rule.right), strict=True):
        held = compare(left, right)
        bad += int(pc.sum(pc.invert(pc.fill_null(held, True))).as_py() or 0)
    return _result(
        parts.name,
        "inequality",
        rule.left,
        {"left": rule.left, "op": rule.op, "right": rule.right},
        bad == 0,
        {"unexpected_count": bad},
    )


# ---------------------------------------------------------------- drift against the parent version


def _quantiles(values: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        values = pa.chunked_array([_ms(c) for c in values.chunks]) if values.num_chunks else values
    q = pc.quantile(values, q=[0.1, 0.5, 0.9], skip_nulls=True)
    return np.asarray(q.to_numpy(zero_copy_only=False), dtype=np.float64)


def _count_into(counts: dict[Any, int], values: pa.ChunkedArray) -> None:
    """Add the non-null values' counts to ``counts``. Dictionary-encoded values are counted by
    their codes, chunk by chunk, not decoded first (5M category values: ~6 ms against 39 ms),
    and the codes' counts added up by the value they stand for: chunks may have different
    dictionaries, and a dictionary may hold a value twice or a null (Arrow's ``value_counts`` of
    a dictionary array miscounts a value a dictionary holds twice)."""
    if not pa.types.is_dictionary(values.type):
        for d in pc.value_counts(values.drop_null()).to_pylist():
            counts[d["values"]] = counts.get(d["values"], 0) + d["counts"]
        return
    for chunk in values.chunks:
        words = chunk.dictionary.to_pylist()
        for d in pc.value_counts(chunk.indices.drop_null()).to_pylist():
            word = words[d["values"]]
            if word is not None:
                counts[word] = counts.get(word, 0) + d["counts"]


def _shares(values: pa.ChunkedArray) -> dict[Any, float]:
    counts: dict[Any, int] = {}
    _count_into(counts, values)
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.items()}


def _drift(column: str, typ: str, new: TableParts, old: TableParts) -> tuple[float, dict[str, Any]]:
    if typ in ("category", "bool"):
        a, b = _shares(old.column(column)), _shares(new.column(column))
        tvd = 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))
        return tvd, {"metric": "total variation distance", "parent": a, "new": b}
    qa, qb = _quantiles(old.column(column)), _quantiles(new.column(column))
    spread = max(float(qa[2] - qa[0]), 1e-12)
    shift = float(np.max(np.abs(qb - qa)) / spread)
    return shift, {
        "metric": "max |quantile shift| / parent p10-p90 spread",
        "parent_q10_50_90": qa,
        "new_q10_50_90": qb,
    }


def drift_checks(spec: Spec, new_dir: Any, parent_dir: Any, tolerance: float) -> list[CheckResult]:
    """One check per numeric, date and category column shared with the parent version."""
    from synthreg.validators.parts import open_parts

    out = []
    for tname in spec.table_order():
        if not (parent_dir / tname).is_dir():
            continue
        new, old = open_parts(new_dir, tname), open_parts(parent_dir, tname)
        for name, col in spec.tables[tname].columns.items():
            kinds = ("int", "float", "date", "datetime", "category", "bool")
            if col.type not in kinds or name == spec.tables[tname].primary_key or col.foreign_key:
                continue
            if name not in old.columns:
                continue
            value, observed = _drift(name, col.type, new, old)
            out.append(
                _result(
                    tname,
                    "parent_drift",
                    name,
                    {"tolerance": tolerance},
                    value <= tolerance,
                    {"drift": value, **observed},
                )
            )
    return out
