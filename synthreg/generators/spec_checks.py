"""Checks across a spec: references between tables and columns, and feasibility.

Run after the pydantic models accepted each part on its own; every problem is a
``(path inside the file, message with the fix)`` pair.
"""

from __future__ import annotations

import datetime as dt
import math

from synthreg.generators.spec import NAME_RE, Column, Spec, Table, _as_datetime
from synthreg.generators.spec import _suggest as suggest

__all__ = ["reference_problems"]


def reference_problems(spec: Spec) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for tname, table in spec.tables.items():
        base = f"tables.{tname}"
        if not NAME_RE.match(tname):
            problems.append((base, "table names must be identifiers ([A-Za-z_][A-Za-z0-9_]*)"))
        if table.llm is not None:
            problems += _llm_problems(tname, table)
            continue
        if not table.columns:
            problems.append((f"{base}.columns", "a table needs at least one column: add one under 'columns'"))
        problems += _column_problems(spec, tname, table)
        problems += _derived_cycle_problems(tname, table)
        problems += _llm_reference_problems(tname, table)
        from synthreg.generators.constraints import constraint_problems

        problems += constraint_problems(spec, tname)
        if table.primary_key is not None:
            pk = table.columns.get(table.primary_key)
            if pk is None:
                problems.append(
                    (
                        f"{base}.primary_key",
                        f"primary key '{table.primary_key}' is not a column of {tname}; "
                        f"columns: {', '.join(table.columns)}",
                    )
                )
            elif pk.type != "int" or (pk.distribution and pk.distribution.kind != "sequence"):
                problems.append(
                    (
                        f"{base}.columns.{table.primary_key}",
                        "a primary key must be an int column with distribution: sequence (or none)",
                    )
                )
            elif pk.null_rate:
                problems.append((f"{base}.columns.{table.primary_key}", "a primary key cannot be null"))
    problems += _cycle_problems(spec)
    return problems


def _llm_problems(tname: str, table: Table) -> list[tuple[str, str]]:
    """A table made by the LLM stage declares only ``llm`` (and ``rows`` = its samples)."""
    assert table.llm is not None
    loc = f"tables.{tname}.llm"
    problems = []
    extra = [k for k in ("columns", "constraints", "noise", "expectations") if getattr(table, k)]
    if extra:
        problems.append(
            (
                loc,
                f"a table made by an LLM ('llm') cannot have {', '.join(extra)}: remove them "
                "(its columns are the labeled text, provenance and curation columns)",
            )
        )
    if table.primary_key is not None:
        problems.append((loc, "a table made by an LLM ('llm') has no primary key: remove primary_key"))
    if table.rows != table.llm.samples:
        problems.append(
            (
                f"{loc}.samples",
                f"rows ({table.rows}) differs from llm.samples ({table.llm.samples}): "
                "omit rows (it defaults to samples) or make them equal",
            )
        )
    return problems


def _column_problems(spec: Spec, tname: str, table: Table) -> list[tuple[str, str]]:
    problems = []
    for cname, col in table.columns.items():
        loc = f"tables.{tname}.columns.{cname}"
        if not NAME_RE.match(cname):
            problems.append((loc, "column names must be identifiers ([A-Za-z_][A-Za-z0-9_]*)"))
        for src in col.from_ or []:
            if src not in table.columns:
                problems.append(
                    (f"{loc}.from", f"'{src}' is not a column of {tname}{suggest(src, list(table.columns))}")
                )
            elif table.columns[src].type != "text":
                problems.append((f"{loc}.from", f"'{src}' must be a text column"))
        problems += _unique_problems(table, cname, col, loc)
        problems += _int_range_problems(table, cname, col, loc)
        problems += _expr_problems(table, cname, col, loc)
        problems += _after_problems(spec, tname, col, loc)
        problems += _children_problems(spec, tname, col, loc)
        problems += _llm_text_problems(table, tname, col, loc)
        if col.foreign_key:
            problems += _fk_problems(spec, loc, col.foreign_key)
    return problems


def _llm_reference_problems(tname: str, table: Table) -> list[tuple[str, str]]:
    """Nothing the engine computes may read an ``llm_text`` column: it is empty until the LLM
    stage fills it, after the engine (constraints, derived columns and noise would see nulls)."""
    llm = {n for n, c in table.columns.items() if c.type == "llm_text"}
    if not llm:
        return []
    from synthreg.generators.expr import referenced_columns

    uses: list[tuple[str, set[str]]] = []
    for cname, col in table.columns.items():
        reads = set(col.from_ or []) | (referenced_columns(col.expr) if col.expr else set())
        uses.append((f"tables.{tname}.columns.{cname}", reads))
    for i, rule in enumerate(table.constraints):
        named = {*rule.group_by, *rule.columns, rule.column, rule.left, rule.right}
        uses.append((f"tables.{tname}.constraints.{i}", {n for n in named if n}))
    for i, noise in enumerate(table.noise):
        uses.append((f"tables.{tname}.noise.{i}", {n for n in (noise.column, noise.over) if n}))
    return [
        (
            loc,
            f"reads {', '.join(sorted(reads & llm))}, an llm_text column: it is written by the LLM after "
            "the engine, so constraints, derived columns and noise cannot use it; remove the reference",
        )
        for loc, reads in uses
        if reads & llm
    ]


#: a value of each column type as a prompt sees it (to check placeholders' format specs)
_SAMPLE_VALUES: dict[str, object] = {
    "int": 1,
    "float": 1.5,
    "bool": True,
    "category": "a",
    "text": "a",
    "uuid": "a",
    "datetime": dt.datetime(2024, 1, 2, 3, 4, 5),
    "date": dt.date(2024, 1, 2),
}


def _llm_text_problems(table: Table, tname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    """An llm_text prompt reads the same table's drawn columns; each row is one call, so rows are bounded."""
    if col.llm is None:
        return []
    from synthreg.generators.llm.column_text import format_specs, placeholders

    problems = []
    drawn = [n for n, c in table.columns.items() if c.type != "llm_text"]
    for name in placeholders(col.llm.prompt):
        if name not in drawn:
            why = "another llm_text column" if name in table.columns else f"not a column of {tname}"
            problems.append(
                (
                    f"{loc}.llm.prompt",
                    f"placeholder {{{name}}} is {why}{suggest(name, drawn)} Use one of: {', '.join(drawn)}",
                )
            )
    for name, spec in format_specs(col.llm.prompt):
        sample = _SAMPLE_VALUES.get(table.columns[name].type) if name in drawn else None
        if sample is None:
            continue
        try:
            format(sample, spec)
        except (ValueError, TypeError):
            problems.append(
                (
                    f"{loc}.llm.prompt",
                    f"placeholder {{{name}:{spec}}}: format '{spec}' does not apply to a "
                    f"{table.columns[name].type} column; drop it or use one that does (e.g. :.2f for floats)",
                )
            )
    if table.rows > col.llm.max_rows:
        problems.append(
            (
                f"tables.{tname}.rows",
                f"{table.rows:,} rows would make {table.rows:,} LLM calls for this llm_text column, over its "
                f"llm.max_rows ({col.llm.max_rows:,}): lower rows (or --scale) or raise llm.max_rows",
            )
        )
    return problems


def _unique_problems(table: Table, cname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    if not col.unique or cname == table.primary_key or col.type == "uuid":
        return []
    if col.type == "int" and col.distribution is not None and col.distribution.kind == "sequence":
        return []
    space: int | None = None
    if col.type == "int" and col.min is not None and col.max is not None and col.distribution is None:
        space = int(col.max) - int(col.min) + 1
    elif col.type == "text" and col.pattern is not None:
        from synthreg.generators.pattern import parse_pattern, space_size

        space = space_size(parse_pattern(col.pattern))
    if space is None:
        return [
            (
                loc,
                "unique: true works on sequence ints, ints with min and max (no distribution), "
                "text patterns and uuid columns",
            )
        ]
    if table.rows > space:
        return [
            (
                loc,
                f"unique: {table.rows:,} rows cannot be unique in a space of {space:,} values: "
                "widen the range or pattern, or lower the rows",
            )
        ]
    return []


def _expr_problems(table: Table, cname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    if col.expr is None:
        return []
    from synthreg.generators.expr import referenced_columns

    try:
        refs = referenced_columns(col.expr)
    except ValueError as exc:
        return [(f"{loc}.expr", str(exc))]
    problems = []
    for ref in sorted(refs):
        other = table.columns.get(ref)
        if ref == cname:
            problems.append((f"{loc}.expr", "expr refers to its own column"))
        elif other is None:
            problems.append(
                (
                    f"{loc}.expr",
                    f"expr refers to '{ref}', which is not a column{suggest(ref, list(table.columns))}",
                )
            )
        elif other.type not in ("int", "float", "bool"):
            problems.append(
                (f"{loc}.expr", f"expr uses '{ref}' ({other.type}): only int, float, bool columns")
            )
    return problems


def _reads(col: Column) -> set[str]:
    """The columns of its own table a column is computed from (``expr``, ``from``)."""
    from synthreg.generators.expr import referenced_columns

    return set(col.from_ or []) | (referenced_columns(col.expr) if col.expr else set())


def _derived_cycle_problems(tname: str, table: Table) -> list[tuple[str, str]]:
    """Derived columns (``expr``, email ``from``) that depend on each other in a cycle: no order
    could compute them. An expression reading its own column is reported by ``_expr_problems``."""
    graph = {
        name: {r for r in _reads(col) if r in table.columns and (r != name or not col.expr)}
        for name, col in table.columns.items()
    }
    done: set[str] = set()

    def walk(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for nxt in sorted(graph[name]):
            found = walk(nxt, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in table.columns:
        cycle = walk(name, [])
        if cycle:
            return [
                (
                    f"tables.{tname}.columns.{cycle[0]}",
                    f"derived columns depend on each other in a cycle ({' -> '.join(cycle)}), so none can "
                    "be computed first: make one of them a drawn column (drop its expr or from)",
                )
            ]
    return []


#: int columns are int64; keep their bounds well inside it (draws add 1 to the maximum)
_INT_LIMIT = 2**62


def _int_range_problems(table: Table, cname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    """An int column's min/max and sequence must fit int64, and a uniform draw needs a whole number."""
    if col.type != "int" or col.foreign_key:
        return []
    for key in ("min", "max"):
        value = getattr(col, key)
        if value is not None and abs(value) >= _INT_LIMIT:
            return [(f"{loc}.{key}", f"{key} {value:g} is beyond the int64 range (±4.6e18): use type: float")]
    dist = col.distribution
    if (dist is not None and dist.kind == "sequence") or (dist is None and cname == table.primary_key):
        start = dist.num("start", 1) if dist else 1.0
        last = start + (dist.num("step", 1) if dist else 1.0) * max(table.rows - 1, 0)
        if max(abs(start), abs(last)) >= _INT_LIMIT:
            return [
                (
                    f"{loc}.distribution",
                    f"the sequence runs from {start:g} to {last:g}, beyond the int64 range (±4.6e18): "
                    "lower start or step",
                )
            ]
        return []
    if col.expr is None and (dist is None or dist.kind == "uniform"):
        low = dist.num("low", col.min if col.min is not None else 0.0) if dist else col.min
        high = dist.num("high", col.max if col.max is not None else 1000.0) if dist else col.max
        low, high = (0.0 if low is None else low), (1000.0 if high is None else high)
        if max(abs(low), abs(high)) >= _INT_LIMIT:
            return [
                (loc, f"the range {low:g}..{high:g} is beyond the int64 range (±4.6e18): use type: float")
            ]
        if math.ceil(low) > math.floor(high):
            defaults = " (without max, a uniform int draws up to 1000: set max)" if col.max is None else ""
            return [(loc, f"no whole number lies between {low:g} and {high:g}{defaults}: widen the range")]
    return []


def _after_problems(spec: Spec, tname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    if col.after is None:
        return []
    ptable, _, pcol = col.after.partition(".")
    parent = spec.tables.get(ptable)
    if parent is None or pcol not in parent.columns:
        return [(f"{loc}.after", f"'{col.after}' is not a column: use after: parent_table.datetime_column")]
    pcolumn = parent.columns[pcol]
    if pcolumn.type not in ("datetime", "date"):
        return [(f"{loc}.after", f"'{col.after}' is {pcolumn.type}: after needs a datetime or date column")]
    fks = [n for n, (p, _) in spec.tables[tname].foreign_keys().items() if p == ptable]
    if col.via is not None and col.via not in fks:
        return [(f"{loc}.via", f"via: '{col.via}' is not a foreign key of {tname} to {ptable}")]
    if col.via is None and len(fks) != 1:
        why = (
            "has no foreign key" if not fks else f"has several foreign keys ({', '.join(fks)}); add via: one"
        )
        return [(f"{loc}.after", f"{tname} {why} to {ptable}: after follows a foreign key")]
    if pcolumn.end is not None and col.end is not None and _as_datetime(pcolumn.end) > _as_datetime(col.end):
        return [
            (
                f"{loc}.after",
                f"infeasible: {col.after} ends {pcolumn.end}, after this column's end "
                f"{col.end}: a child cannot follow a later parent; move end to at "
                "least the parent's end",
            )
        ]
    return []


def _fk_problems(spec: Spec, loc: str, fk: str) -> list[tuple[str, str]]:
    ptable, pcol = fk.split(".", 1)
    if ptable not in spec.tables:
        return [
            (
                f"{loc}.foreign_key",
                f"table '{ptable}' does not exist{suggest(ptable, list(spec.tables))}; "
                f"tables: {', '.join(spec.tables)}",
            )
        ]
    parent = spec.tables[ptable]
    if parent.llm is not None:
        return [
            (
                f"{loc}.foreign_key",
                f"table '{ptable}' is made by an LLM ('llm') and has no primary key: "
                "foreign keys cannot point into it; remove foreign_key",
            )
        ]
    if parent.primary_key != pcol:
        return [
            (
                f"{loc}.foreign_key",
                f"'{fk}' must point at the primary key of {ptable}"
                + (
                    f" ('{ptable}.{parent.primary_key}')"
                    if parent.primary_key
                    else f"; declare primary_key: {pcol} on {ptable}"
                ),
            )
        ]
    if parent.rows == 0:
        return [(f"{loc}.foreign_key", f"parent table '{ptable}' has 0 rows: children need parents")]
    return []


def _children_problems(spec: Spec, tname: str, col: Column, loc: str) -> list[tuple[str, str]]:
    if col.min_children is None and col.max_children is None:
        return []
    if not col.foreign_key:
        return [(loc, "min_children / max_children apply to foreign key columns")]
    parent = spec.tables.get(col.foreign_key.split(".", 1)[0])
    if parent is None:
        return []  # _fk_problems names the missing table
    parents = parent.rows
    rows, low, high = spec.tables[tname].rows, col.min_children or 0, col.max_children
    if high is not None and low > high:
        return [(loc, f"min_children ({low}) > max_children ({high}): swap them")]
    if rows < low * parents:
        return [
            (
                loc,
                f"infeasible: {low} children for each of {parents:,} parents needs {low * parents:,} "
                f"rows, {tname} has {rows:,}: raise the rows or lower min_children",
            )
        ]
    if high is not None and rows > high * parents:
        return [
            (
                loc,
                f"infeasible: {rows:,} rows with at most {high} children for each of {parents:,} "
                "parents: lower the rows or raise max_children",
            )
        ]
    return []


def _cycle_problems(spec: Spec) -> list[tuple[str, str]]:
    graph = {t: {p for p, _ in spec.tables[t].foreign_keys().values()} for t in spec.tables}
    state: dict[str, int] = {}

    def dfs(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path, node, nxt]
            if state.get(nxt) is None:
                found = dfs(nxt, [*path, node])
                if found:
                    return found
        state[node] = 2
        return None

    for table in graph:
        if state.get(table) is None:
            cycle = dfs(table, [])
            if cycle:
                start = cycle.index(cycle[-1])
                chain = " -> ".join(cycle[start:])
                return [(f"tables.{cycle[-2]}", f"foreign keys form a cycle ({chain}): break it")]
    return []
