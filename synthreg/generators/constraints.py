"""Constraints and noise: checked before generating, enforced over the whole table.

Row rules (``inequality`` and every noise kind) touch one row at a time, so applying
them to each block as it is made is exact. Group rules (``sum_limit``,
``max_rows_per_group``, ``unique_combination``) need every row of a group: they run
after the table is written, as a shuffle by group hash (``group_rules.py``), and rewrite
its parts.
A rule that cannot hold for the requested rows is refused before anything is made.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthreg.errors import ConstraintError, SpecError
from synthreg.generators.rand import block_rng
from synthreg.generators.spec import Constraint, Noise, Spec

__all__ = [
    "GROUP_KINDS",
    "apply_row_rules",
    "constraint_problems",
    "rewrite_part",
    "widened",
]

GROUP_KINDS = ("sum_limit", "max_rows_per_group", "unique_combination")
_NUMERIC = ("int", "float")
_ORDERED = ("int", "float", "datetime", "date")


class ConstraintViolation(ConstraintError):
    """A constraint with ``action: error`` does not hold; the message says where."""


class _OutOfRange(ArithmeticError):
    """A row rule made numbers its column's type cannot hold (the caller names the rule)."""


# ---------------------------------------------------------------- checks before generating


def _capacity(spec: Spec, table: str, name: str) -> float:
    """How many distinct values a column can take (inf when unbounded)."""
    col = spec.tables[table].columns[name]
    if col.foreign_key:
        parent = spec.tables.get(col.foreign_key.split(".", 1)[0])
        return parent.rows if parent is not None else math.inf  # the missing parent is reported apart
    if col.type == "category":
        return len(col.categories)
    if col.type == "bool":
        return 2
    if col.type == "date" and col.start and col.end:
        from synthreg.generators.spec import _as_datetime

        return (_as_datetime(col.end) - _as_datetime(col.start)).days + 1
    if col.type == "int" and col.min is not None and col.max is not None and not col.distribution:
        return col.max - col.min + 1
    if name == spec.tables[table].primary_key:
        return spec.tables[table].rows
    return math.inf


def _children_after(spec: Spec, table: str) -> set[str]:
    """Columns of ``table`` that a child orders itself after."""
    out = set()
    for other in spec.tables.values():
        for col in other.columns.values():
            if col.after and col.after.split(".", 1)[0] == table:
                out.add(col.after.split(".", 1)[1])
    return out


def _has_children(spec: Spec, table: str) -> list[str]:
    return [t for t, tab in spec.tables.items() for p, _ in tab.foreign_keys().values() if p == table]


def _protected(spec: Spec, table: str) -> set[str]:
    """Columns no rule may rewrite: keys, unique, uuid, what children read, expr inputs."""
    from synthreg.generators.expr import referenced_columns

    tab = spec.tables[table]
    out = {tab.primary_key} if tab.primary_key else set()
    out |= {n for n, c in tab.columns.items() if c.unique or c.type == "uuid"} | _children_after(spec, table)
    for col in tab.columns.values():
        out |= referenced_columns(col.expr) if col.expr else set()
    return {c for c in out if c}


def constraint_problems(spec: Spec, table: str) -> list[tuple[str, str]]:
    """Every problem with a table's constraints and noise, before generating."""
    tab = spec.tables[table]
    problems: list[tuple[str, str]] = []
    for i, rule in enumerate(tab.constraints):
        loc = f"tables.{table}.constraints.{i}"
        missing = [c for c in rule.referenced() if c not in tab.columns]
        if missing:
            problems.append(
                (loc, f"no column {', '.join(missing)} in {table}; columns: {', '.join(tab.columns)}")
            )
            continue
        problems += [(loc, msg) for msg in _rule_problems(spec, table, rule)]
    for i, noise in enumerate(tab.noise):
        loc = f"tables.{table}.noise.{i}"
        problems += [(loc, msg) for msg in _noise_problems(spec, table, noise)]
    return problems


def _rule_problems(spec: Spec, table: str, rule: Constraint) -> list[str]:
    tab = spec.tables[table]
    protected = _protected(spec, table)
    if rule.action == "drop" and _has_children(spec, table):
        return [f"action drop would orphan rows of {', '.join(_has_children(spec, table))}: use cap or error"]
    if rule.kind == "inequality":
        assert rule.left and rule.right
        left, right = tab.columns[rule.left], tab.columns[rule.right]
        if (
            left.type not in _ORDERED
            or right.type not in _ORDERED
            or (left.type in _NUMERIC) != (right.type in _NUMERIC)
        ):
            return [
                f"inequality compares numbers with numbers or times with times, "
                f"not {left.type} and {right.type}"
            ]
        if rule.left in protected or left.foreign_key or left.expr:
            return [
                f"inequality would rewrite '{rule.left}', which keys, expressions or child tables rely on; "
                f"swap left and right"
            ]
        return []
    if rule.kind == "sum_limit":
        return _sum_limit_problems(spec, table, rule, protected)
    groups = math.prod(_capacity(spec, table, c) for c in (rule.group_by or rule.columns))
    if rule.action == "error" and rule.kind == "max_rows_per_group" and tab.rows > groups * (rule.limit or 0):
        return [
            f"infeasible: {tab.rows:,} rows cannot fit in at most {groups:,.0f} groups x {rule.limit:g} rows"
        ]
    if rule.action == "error" and rule.kind == "unique_combination" and tab.rows > groups:
        return [f"infeasible: {tab.rows:,} rows cannot be unique over {groups:,.0f} combinations"]
    return []


def _sum_limit_problems(spec: Spec, table: str, rule: Constraint, protected: set[str]) -> list[str]:
    tab = spec.tables[table]
    assert rule.column and rule.limit is not None
    col = tab.columns[rule.column]
    if col.type not in _NUMERIC:
        return [f"sum_limit needs a numeric column; '{rule.column}' is {col.type}"]
    if rule.action in ("cap", "redistribute") and rule.column in protected:
        return [
            f"sum_limit would rewrite '{rule.column}', which keys or expressions rely on: use drop or error"
        ]
    groups = math.prod(_capacity(spec, table, c) for c in rule.group_by)
    floor_value = max(col.min or 0.0, 0.0)
    if tab.rows * floor_value > groups * rule.limit or rule.limit < 0 <= floor_value:
        return [
            f"infeasible: {tab.rows:,} rows with {rule.column} >= {floor_value:g} sum to at least "
            f"{tab.rows * floor_value:,.0f}, but {groups:,.0f} groups x limit {rule.limit:g} allow "
            f"{groups * rule.limit:,.0f}: lower the rows or the minimum, or raise the limit"
        ]
    return []


def _noise_problems(spec: Spec, table: str, noise: Noise) -> list[str]:
    tab = spec.tables[table]
    for name in (noise.column, noise.over):
        if name is not None and name not in tab.columns:
            return [f"no column {name} in {table}; columns: {', '.join(tab.columns)}"]
    col = tab.columns[noise.column] if noise.column else None
    if col is not None and noise.column in _protected(spec, table) | {
        c for c in tab.columns if tab.columns[c].foreign_key
    }:
        return [f"noise would rewrite '{noise.column}', which keys, expressions or child tables rely on"]
    if noise.kind in ("outliers", "drift") and col is not None and col.type not in _NUMERIC:
        return [f"{noise.kind} needs a numeric column; '{noise.column}' is {col.type}"]
    if noise.kind == "typos" and col is not None and col.type != "text":
        return [f"typos need a text column; '{noise.column}' is {col.type}"]
    if noise.kind == "drift" and noise.over and tab.columns[noise.over].type not in ("datetime", "date"):
        return [
            f"drift runs over a datetime or date column; '{noise.over}' is {tab.columns[noise.over].type}"
        ]
    return []


def widened(spec: Spec, table: str, name: str) -> bool:
    """Whether noise can push a column past its declared range (so its type must be wide)."""
    return any(n.column == name and n.kind in ("outliers", "drift") for n in spec.tables[table].noise)


def has_typos(spec: Spec, table: str, name: str) -> bool:
    """Whether a text column gets typos (so it is written as plain strings)."""
    return any(n.column == name and n.kind == "typos" for n in spec.tables[table].noise)


# ---------------------------------------------------------------- row rules, per block


def apply_row_rules(spec: Spec, table: str, block: int, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Inequalities, then noise, on one block (exact: each touches one row at a time)."""
    tab = spec.tables[table]
    if not tab.noise and not any(r.kind == "inequality" for r in tab.constraints):
        return batch
    columns = dict(zip(batch.schema.names, batch.columns, strict=True))
    for i, rule in enumerate(tab.constraints):
        if rule.kind == "inequality":
            try:
                _inequality(rule, columns, table)
            except _OutOfRange as exc:
                fix = f"give {rule.left} a range (min/max) that holds {rule.right}'s values, or swap them"
                raise _spec_error(spec, f"tables.{table}.constraints.{i}", f"{exc}: {fix}") from None
    for i, noise in enumerate(tab.noise):
        rng = block_rng(spec.seed, table, f"noise#{i}", block, "noise")
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                _NOISE[noise.kind](spec, table, noise, columns, rng)
        except _OutOfRange as exc:
            fix = "lower its factor" if noise.kind == "outliers" else "lower its change"
            raise _spec_error(spec, f"tables.{table}.noise.{i}", f"{exc}: {fix}") from None
    return pa.RecordBatch.from_arrays([columns[n] for n in batch.schema.names], schema=batch.schema)


def _spec_error(spec: Spec, loc: str, message: str) -> SpecError:
    return SpecError(spec.source, [(loc, message)])


def _as_numbers(array: pa.Array) -> tuple[np.ndarray, pa.DataType]:
    typ = array.type
    storage = (
        array.view(pa.int64())
        if pa.types.is_timestamp(typ)
        else (array.view(pa.int32()) if pa.types.is_date32(typ) else array)
    )
    return np.asarray(pc.fill_null(storage, 0).to_numpy(zero_copy_only=False)), typ


def _from_numbers(values: np.ndarray, typ: pa.DataType, like: pa.Array) -> pa.Array:
    if pa.types.is_timestamp(typ) or pa.types.is_date32(typ):
        storage, dtype = (pa.int64(), np.int64) if pa.types.is_timestamp(typ) else (pa.int32(), np.int32)
        out = pa.array(values.astype(dtype), type=storage).view(typ)
    else:
        from synthreg.generators.columns import out_of_range

        why = out_of_range(values, typ)
        if why:
            raise _OutOfRange(f"it makes {why}")
        out = pa.array(values.astype(np.dtype(str(typ))), type=typ)
    return pc.if_else(like.is_valid(), out, pa.scalar(None, type=typ)) if like.null_count else out


def _inequality(rule: Constraint, columns: dict[str, pa.Array], table: str) -> None:
    assert rule.left and rule.right
    left, typ = _as_numbers(columns[rule.left])
    right, _ = _as_numbers(columns[rule.right])
    eps = 1 if left.dtype.kind in "iu" else 1e-9
    target = {">=": right, ">": right + eps, "<=": right, "<": right - eps}[rule.op or ">="]
    broken = left < target if rule.op in (">=", ">") else left > target
    if rule.action == "error" and broken.any():
        raise ConstraintViolation(
            f"{table}: {int(broken.sum())} rows break {rule.left} {rule.op} {rule.right}"
        )
    fixed = np.where(broken, target, left)
    columns[rule.left] = _from_numbers(fixed, typ, columns[rule.left])


def _outliers(
    spec: Spec, table: str, noise: Noise, columns: dict[str, pa.Array], rng: np.random.Generator
) -> None:
    assert noise.column
    values, typ = _as_numbers(columns[noise.column])
    hit = rng.random(len(values)) < noise.rate
    out = np.where(hit, values * noise.factor, values)
    columns[noise.column] = _from_numbers(
        np.rint(out) if values.dtype.kind in "iu" else out, typ, columns[noise.column]
    )


def _drift(
    spec: Spec, table: str, noise: Noise, columns: dict[str, pa.Array], rng: np.random.Generator
) -> None:
    assert noise.column and noise.over
    over = spec.tables[table].columns[noise.over]
    assert over.start and over.end
    from synthreg.generators.columns import epoch_ms

    times, _ = _as_numbers(columns[noise.over])
    scale = 86_400_000.0 if over.type == "date" else 1.0
    lo, hi = epoch_ms(over.start), epoch_ms(over.end)
    frac = np.clip((times.astype(np.float64) * scale - lo) / max(hi - lo, 1), 0.0, 1.0)
    values, typ = _as_numbers(columns[noise.column])
    out = values * (1.0 + noise.change * frac)
    columns[noise.column] = _from_numbers(
        np.rint(out) if values.dtype.kind in "iu" else out, typ, columns[noise.column]
    )


def _typos(
    spec: Spec, table: str, noise: Noise, columns: dict[str, pa.Array], rng: np.random.Generator
) -> None:
    """Swap two adjacent bytes in a share of ASCII values: vectorized on the data buffer."""
    assert noise.column
    array = columns[noise.column]
    if pa.types.is_dictionary(array.type):
        array = array.dictionary.take(array.indices)
    array = pa.concat_arrays([array.cast(pa.string())])  # offset 0, own buffers
    lengths = np.asarray(pc.fill_null(pc.utf8_length(array), 0).to_numpy(zero_copy_only=False))
    ascii_ok = np.asarray(pc.fill_null(pc.string_is_ascii(array), False).to_numpy(zero_copy_only=False))
    hit = (rng.random(len(array)) < noise.rate) & ascii_ok & (lengths >= 2)
    at = (rng.random(len(array)) * np.maximum(lengths - 1, 1)).astype(np.int64)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[: len(array) + 1]
    data = (
        np.frombuffer(array.buffers()[2], dtype=np.uint8).copy()
        if array.buffers()[2]
        else np.zeros(0, np.uint8)
    )
    pos = offsets[:-1][hit].astype(np.int64) + at[hit]
    data[pos], data[pos + 1] = data[pos + 1], data[pos].copy()
    columns[noise.column] = pa.Array.from_buffers(
        pa.string(),
        len(array),
        [array.buffers()[0], array.buffers()[1], pa.py_buffer(data)],
        array.null_count,
    )


def _duplicates(
    spec: Spec, table: str, noise: Noise, columns: dict[str, pa.Array], rng: np.random.Generator
) -> None:
    """A share of rows repeat an earlier row of the block, except keys and what must stay unique."""
    rows = len(next(iter(columns.values())))
    hit = rng.random(rows) < noise.rate
    hit[0] = False
    source = (rng.random(rows) * np.arange(rows)).astype(np.int64)
    take = pa.array(np.where(hit, source, np.arange(rows)))
    keep = _protected(spec, table) | {
        n for n, c in spec.tables[table].columns.items() if c.foreign_key and c.after
    }
    for name in list(columns):
        if name not in keep:
            columns[name] = columns[name].take(take)


_NOISE: dict[str, Any] = {"outliers": _outliers, "drift": _drift, "typos": _typos, "duplicates": _duplicates}


# ---------------------------------------------------------------- rewriting a part


def rewrite_part(path: Path, part: pa.Table, target: Path | None = None) -> None:
    """Write ``part`` over the engine's part file ``path`` (or to ``target``) with the engine's
    options: its row group size, and dictionary encoding only for dictionary columns."""
    with part_writer(path, part.schema, target) as write:
        write(part)


@contextlib.contextmanager
def part_writer(
    path: Path, schema: pa.Schema, target: Path | None = None, meta: pq.FileMetaData | None = None
) -> Iterator[Callable[[pa.Table], None]]:
    """``write(table)`` for each piece of a new ``path`` (or ``target``), in order, with the
    engine's options (see ``rewrite_part``); row groups are filled across pieces, so the file is
    the one writing their concatenation at once gives. ``path``'s options are read first (from
    ``meta``, its footer, when given: then ``path`` itself need not be here)."""
    meta = meta if meta is not None else pq.ParquetFile(path).metadata
    size = max(meta.row_group(0).num_rows if meta.num_row_groups else 1 << 20, 1)
    dictionary = [f.name for f in schema if pa.types.is_dictionary(f.type)] or False
    pending: list[pa.Table] = []
    wrote = False
    with pq.ParquetWriter(target or path, schema, use_dictionary=dictionary) as writer:

        def write(table: pa.Table) -> None:
            nonlocal wrote
            pending.append(table)
            if sum(t.num_rows for t in pending) >= size:
                whole = pa.concat_tables(pending)
                full = whole.num_rows // size * size
                writer.write_table(whole.slice(0, full), row_group_size=size)
                pending[:] = [whole.slice(full)]
                wrote = True

        yield write
        rest = pa.concat_tables(pending) if pending else schema.empty_table()
        if rest.num_rows or not wrote:  # an empty part is written as pq.write_table writes it
            writer.write_table(rest, row_group_size=size)
