"""``registry spec infer PATH...`` and ``create --like``: a spec inferred from real tables.

Each table is profiled by SQL aggregates in DuckDB (``infer_sources``, ``infer_columns``);
then keys are found across tables: a primary key is a unique, non-null integer column; a
foreign key is an integer column whose values are all contained in another table's primary
key (and whose name points at it, or which spans enough of the parent's keys); a date column
of a child is ``after`` a parent's date column when no joined row breaks the order.

The spec's ``description`` carries the privacy note the DataCard shows: which values came from
the real data, and the frequency threshold they passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthreg.errors import UsageError
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import parse_spec
from synthreg.registry.infer_columns import (
    ColumnProfile,
    InferOptions,
    TableProfile,
    column_spec,
    email_hint,
    profile_table,
)
from synthreg.registry.infer_sources import Sources, open_sources, quote, table_name

__all__ = ["InferOptions", "InferResult", "infer_spec"]


@dataclass
class InferResult:
    """The inferred spec, its YAML, and what the user should know (one line each)."""

    spec: Spec
    spec_yaml: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Table:
    name: str
    profile: TableProfile
    key: ColumnProfile | None = None
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    fks: dict[str, tuple[str, str]] = field(default_factory=dict)  # column -> (parent, key)


def infer_spec(
    paths: list[Path], options: InferOptions | None = None, *, seed: int = 0, memory_limit: str = "1GB"
) -> InferResult:
    """Infer a spec from real tables (Parquet/CSV files, or DuckDB/SQLite databases)."""
    opts = options or InferOptions()
    if opts.min_count < 1 or not 0 <= opts.min_share < 1:
        raise UsageError(
            "--min-count must be >= 1 and --min-share in [0, 1): e.g. --min-count 5 --min-share 0.01"
        )
    notes: list[str] = []
    with open_sources([Path(p) for p in paths], memory_limit) as src:
        notes += [f"table '{real}': named '{name}' in the spec" for name, real in src.renamed.items()]
        tables = {name: _profile(src, name, notes) for name in src.origin}
        for t in tables.values():
            t.key = _primary_key(t)
        for t in tables.values():
            _foreign_keys(src.con, t, tables)
        kinds: dict[str, set[str]] = {}
        for t in tables.values():
            _columns(src.con, t, tables, opts, kinds)
            _time_order(src.con, t, tables)
        data = _spec_data(tables, src, opts, kinds, seed)
    spec = parse_spec(data, "<inferred spec>")
    return InferResult(spec, _dump(data), notes)


def _profile(src: Sources, name: str, notes: list[str]) -> _Table:
    seen: dict[str, str] = {}

    def spec_name(real: str) -> str:
        out = table_name(real)
        if out in seen:
            raise UsageError(
                f"{src.origin[name]}: columns '{seen[out]}' and '{real}' both become '{out}' in a spec: "
                "rename one of them"
            )
        seen[out] = real
        if out != real:
            notes.append(f"{name}.{real}: named '{out}' in the spec (spec names are letters, digits, _)")
        return out

    profile = profile_table(src.con, name, spec_name)
    if profile.rows == 0:
        raise UsageError(f"{src.origin[name]}: the table is empty: give a table with rows to infer from")
    for c in profile.columns:
        if c.kind == "other":
            notes.append(f"{name}.{c.name}: left out, its type {c.duck_type} has no spec column type")
        elif c.non_null == 0:
            notes.append(f"{name}.{c.name}: left out, every value is null")
    return _Table(name, profile)


def _primary_key(t: _Table) -> ColumnProfile | None:
    """The unique non-null integer column; by name: id, <table>_id, <singular>_id, else the first."""
    keys = [c for c in t.profile.columns if c.kind == "int" and c.unique]
    wanted = ("id", f"{t.name}_id", f"{t.name.rstrip('s')}_id")
    return next((c for c in keys if c.name.lower() in wanted), keys[0] if keys else None)


def _points_at(column: str, parent: str, key: str) -> bool:
    lower = column.lower()
    return lower == key.lower() != "id" or lower in (f"{parent}_id", f"{parent.rstrip('s')}_id")


def _foreign_keys(con: Any, t: _Table, tables: dict[str, _Table]) -> None:
    """Integer columns contained in another table's primary key."""
    for c in t.profile.columns:
        if c.kind != "int" or c is t.key or not c.non_null:
            continue
        found = []
        for p in tables.values():
            if p is t or p.key is None or c.low < p.key.low or c.high > p.key.high:
                continue
            named = _points_at(c.name, p.name, p.key.name)
            if not named and c.distinct < 0.1 * p.profile.rows:
                continue  # a small-range number (a quantity) is contained in any key by chance
            (outside,) = con.execute(
                f"SELECT count(*) FROM {quote(t.name)} WHERE {c.expr} IS NOT NULL AND {c.expr} NOT IN "
                f"(SELECT {p.key.expr} FROM {quote(p.name)})"
            ).fetchone()
            if outside == 0:
                found.append((not named, p.profile.rows, p.name))
        if found:
            parent = min(found)[2]
            t.fks[c.name] = (parent, tables[parent].key.name)  # type: ignore[union-attr]


def _children(con: Any, t: _Table, column: str, parent: _Table) -> dict[str, Any]:
    """Children per parent: bounds when every parent has one, else skew from the top 10%'s share."""
    c = next(x for x in t.profile.columns if x.name == column)
    assert parent.key is not None
    row = con.execute(
        f"WITH n AS (SELECT {parent.key.of('p')} AS k, count({c.of('c')}) AS n FROM {quote(parent.name)} p "
        f"LEFT JOIN {quote(t.name)} c ON {c.of('c')} = {parent.key.of('p')} GROUP BY 1), "
        "r AS (SELECT n, row_number() OVER (ORDER BY n DESC) AS i, count(*) OVER () AS total FROM n) "
        "SELECT min(n), max(n), sum(n) FILTER (WHERE i <= greatest(1, total // 10)) / sum(n) FROM r"
    ).fetchone()
    low, high, top = int(row[0]), int(row[1]), float(row[2] or 0.0)
    out: dict[str, Any] = {"type": "int", "foreign_key": f"{parent.name}.{parent.key.name}"}
    if low >= 1:  # null keys draw parents too: room for every row of the child table
        out.update(min_children=low, max_children=max(high, -(-t.profile.rows // parent.profile.rows)))
    else:
        skew = _fit_skew(parent.profile.rows, c.non_null, top)
        if skew >= 0.1:  # below: chance, not popularity
            out["skew"] = skew
    return out


def _top_share(parents: int, children: int, skew: float) -> float:
    """The share of children the busiest 10% of parents get, as the engine draws them."""
    import numpy as np

    u = np.random.default_rng(0).random(children) ** (1.0 + skew)
    counts = np.sort(np.bincount(np.minimum((u * parents).astype(np.int64), parents - 1), minlength=parents))
    return float(counts[-max(1, parents // 10) :].sum() / max(children, 1))


def _fit_skew(parents: int, children: int, observed: float) -> float:
    """The engine's ``skew`` whose busiest 10% of parents get the observed share (bisection).

    Simulated rather than solved: with few children per parent, chance alone gives the busiest
    parents more than 10%, and a formula would read that as skew."""
    children = min(children, 2_000_000)  # the share depends on children per parent, not on scale alone
    if _top_share(parents, children, 0.0) >= observed:
        return 0.0
    low, high = 0.0, 10.0
    if _top_share(parents, children, high) <= observed:
        return high
    for _ in range(14):
        mid = (low + high) / 2
        low, high = (mid, high) if _top_share(parents, children, mid) < observed else (low, mid)
    return round((low + high) / 2, 2)


def _columns(
    con: Any, t: _Table, tables: dict[str, _Table], opts: InferOptions, kinds: dict[str, set[str]]
) -> None:
    for c in t.profile.columns:
        if c.kind == "other" or not c.non_null:
            continue
        if c is t.key:
            t.columns[c.name] = {"type": "int"}
            kinds.setdefault("key", set()).add(f"{t.name}.{c.name}")
            continue
        if c.name in t.fks:
            spec = _children(con, t, c.name, tables[t.fks[c.name][0]])
            if c.null_rate:
                spec["null_rate"] = c.null_rate
            t.columns[c.name] = spec
            continue
        spec, note = column_spec(con, t.name, c, opts)
        if c.kind == "string" and email_hint(c.name) and spec.get("type") != "category":
            spec = _email(spec, t)
            note = "vocab" if "vocab" in spec else note
        t.columns[c.name] = spec
        kinds.setdefault(note.split(" (")[0], set()).add(f"{t.name}.{c.name}")
        if note.startswith("categories"):
            spec["description"] = f"inferred: {note}"


def _email(spec: dict[str, Any], t: _Table) -> dict[str, Any]:
    """An email column built from the table's first and last name columns, when it has both."""
    first = next((n for n, s in t.columns.items() if s.get("vocab") == "first_name"), None)
    last = next((n for n, s in t.columns.items() if s.get("vocab") == "last_name"), None)
    if first and last:
        return {"type": "text", "vocab": "email", "from": [first, last], **_nulls(spec)}
    return {"type": "text", "pattern": r"[a-z]{8}\d{2}@example.com", **_nulls(spec)}  # a reserved domain


def _nulls(spec: dict[str, Any]) -> dict[str, Any]:
    return {"null_rate": spec["null_rate"]} if "null_rate" in spec else {}


def _time_order(con: Any, t: _Table, tables: dict[str, _Table]) -> None:
    """``after: parent.column`` where every child date is at or after its parent row's date."""
    dates = [c for c in t.profile.columns if c.kind in ("date", "datetime") and c.non_null]
    for c in dates:
        best = None
        for fk, (pname, _) in t.fks.items():
            parent = tables[pname]
            fkc = next(x for x in t.profile.columns if x.name == fk)
            assert parent.key is not None
            for pc in (x for x in parent.profile.columns if x.kind in ("date", "datetime") and x.non_null):
                broken, gap = con.execute(
                    f"SELECT count(*) FILTER (WHERE {c.of('c')}::TIMESTAMP < {pc.of('p')}::TIMESTAMP), "
                    f"avg(epoch({c.of('c')}::TIMESTAMP) - epoch({pc.of('p')}::TIMESTAMP)) "
                    f"FROM {quote(t.name)} c JOIN {quote(pname)} p ON {fkc.of('c')} = {parent.key.of('p')}"
                ).fetchone()
                if broken == 0 and gap is not None and (best is None or gap < best[0]):
                    best = (gap, f"{pname}.{pc.name}", fk)
        if best is not None:
            spec = t.columns[c.name]
            spec["after"] = best[1]
            if sum(1 for p, _ in t.fks.values() if p == best[1].split(".")[0]) > 1:
                spec["via"] = best[2]


def _spec_data(
    tables: dict[str, _Table], src: Sources, opts: InferOptions, kinds: dict[str, set[str]], seed: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _privacy_note(src, opts, kinds), "seed": seed, "tables": {}}
    for t in tables.values():
        table: dict[str, Any] = {"rows": t.profile.rows}
        table["description"] = f"inferred from {Path(src.origin[t.name]).name}"
        if t.key is not None:
            table["primary_key"] = t.key.name
        table["columns"] = t.columns
        out["tables"][t.name] = table
    return out


def _privacy_note(src: Sources, opts: InferOptions, kinds: dict[str, set[str]]) -> str:
    threshold = f"max({opts.min_count} rows, {opts.min_share:.0%} of the column's non-null rows)"
    held = [
        f"{what} of {', '.join(sorted(kinds[key]))}"
        for key, what in (("categories", "category values"), ("tokens", "free-text tokens"))
        if kinds.get(key)
    ]
    real = (
        f"Real values appear only as {' and as '.join(held)}, each seen in at least {threshold}; "
        "rarer ones were left out."
        if held
        else f"No real value appears verbatim: none was seen in at least {threshold}."
    )
    return (
        f"Inferred by `registry spec infer` from {', '.join(src.files)}. Privacy: {real} Numbers are "
        "quantiles and shares (aggregates), dates whole-day ranges, keys renumbered 1..n; text patterns keep "
        "only punctuation and a prefix every value shares; other text is a built-in vocabulary. No row was "
        "copied."
    )


class _Dumper(yaml.SafeDumper):
    """Lists of numbers on one line (quantiles stay readable)."""


def _flow_lists(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(x, (int, float, str)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _flow_lists)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
