"""The steps' answers: checked against their shape, then assembled into a spec mapping.

``normalize_*`` turn a parsed answer into a tidy structure, or report where it breaks the
step's schema (a repair call then carries those problems). ``assemble`` builds the spec's
``tables`` mapping from the three answers and applies the locked facts: every table the
story names, its stated row count (children that gave a rows-per-parent ratio follow a
parent whose count changed), every stated enum; then the keys: a primary key per table
(an int ``id`` when none was given), the foreign keys answered or implied by step 1's
parents, and time order. Every change to what the model said is a note for the log.
"""

from __future__ import annotations

from typing import Any

from synthreg.generators.llm.story_lock import Locked, ident, singular

__all__ = [
    "DEFAULT_ROWS",
    "Notes",
    "Problems",
    "assemble",
    "column_spec",
    "lock_tables",
    "normalize_columns",
    "normalize_constraints",
    "normalize_tables",
]

#: (path inside the answer or the spec, message)
Problems = list[tuple[str, str]]
#: (step, path, note) for each change made to the answers
Notes = list[tuple[str, str, str]]
#: rows given to a locked table the model left out, when the story states no count for it
DEFAULT_ROWS = 1000


def _records(value: Any, path: str, fields: tuple[str, ...], problems: Problems) -> list[dict[str, Any]]:
    """The items of a list of objects, each with non-empty string ``fields``; bad items reported."""
    if not isinstance(value, list):
        problems.append((path, "must be a list"))
        return []
    out = []
    for i, item in enumerate(value):
        bad = [
            f for f in fields if not isinstance(item, dict) or not isinstance(item.get(f), str) or not item[f]
        ]
        if bad:
            problems.append((f"{path}[{i}]", f"must be an object with non-empty string {', '.join(bad)}"))
        else:
            out.append(item)
    return out


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return round(value) if value >= 0 and float(value).is_integer() else None


def normalize_tables(answer: Any) -> tuple[dict[str, Any], Problems]:
    """A tables answer as ``{description, tables: [{name, description, rows, parents, rows_per_parent}]}``."""
    problems: Problems = []
    if not isinstance(answer, dict):
        return {}, [("answer", "must be a JSON object with a 'tables' list")]
    tables = []
    for i, item in enumerate(_records(answer.get("tables"), "tables", ("name",), problems)):
        rows = _count(item.get("rows"))
        if rows is None:
            problems.append((f"tables[{i}].rows", f"must be a whole number >= 0, not {item.get('rows')!r}"))
        parents = item.get("parents") or []
        ratio = item.get("rows_per_parent")
        tables.append(
            {
                "name": item["name"],
                "description": str(item.get("description") or ""),
                "rows": rows or 0,
                "parents": [p for p in parents if isinstance(p, str)] if isinstance(parents, list) else [],
                "rows_per_parent": ratio if isinstance(ratio, int | float) and ratio > 0 else None,
            }
        )
    if not tables and not problems:
        problems.append(("tables", "must list at least one table"))
    return {"description": str(answer.get("description") or ""), "tables": tables}, problems


def normalize_columns(answer: Any) -> tuple[dict[str, Any], Problems]:
    """A columns answer as ``{tables: [{name, columns: [column objects with name and type]}]}``."""
    problems: Problems = []
    if not isinstance(answer, dict):
        return {}, [("answer", "must be a JSON object with a 'tables' list")]
    tables = []
    for i, item in enumerate(_records(answer.get("tables"), "tables", ("name",), problems)):
        columns = _records(item.get("columns"), f"tables[{i}].columns", ("name", "type"), problems)
        tables.append({"name": item["name"], "columns": columns})
    return {"tables": tables}, problems


def normalize_constraints(answer: Any) -> tuple[dict[str, Any], Problems]:
    """A constraints answer as ``{primary_keys, foreign_keys, time_order}`` lists (missing: empty)."""
    problems: Problems = []
    if not isinstance(answer, dict):
        return {}, [("answer", "must be a JSON object with primary_keys, foreign_keys and time_order")]
    fields = {
        "primary_keys": ("table", "column"),
        "foreign_keys": ("table", "column", "references"),
        "time_order": ("table", "column", "after"),
    }
    out = {name: _records(answer.get(name) or [], name, need, problems) for name, need in fields.items()}
    return out, problems


def _distribution(value: Any) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("params"), list):
        return value
    params = {p.get("name"): p.get("value") for p in value["params"] if isinstance(p, dict)}
    return {
        "kind": value.get("kind"),
        **params,
        **{k: v for k, v in value.items() if k not in ("kind", "params")},
    }


def _values(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, dict) and "value" in v for v in value):
        return value
    if all(isinstance(v.get("p"), int | float) for v in value):
        return {str(v["value"]): v["p"] for v in value}
    return [str(v["value"]) for v in value]


def column_spec(item: dict[str, Any]) -> dict[str, Any]:
    """One answered column as a spec column mapping (nulls, empty text and zero null_rate left out).

    Keys the schema does not know are kept: the spec reports them, and a repair or a fix drops them.
    """
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key == "name" or value is None or (key in ("description", "null_rate") and not value):
            continue
        if key == "distribution":
            value = _distribution(value)
        elif key == "values":
            value = _values(value)
        out[key] = value
    return out


# ------------------------------------------------------------------ assembly


def assemble(
    tables: dict[str, Any],
    columns: dict[str, Any],
    constraints: dict[str, Any],
    locked: Locked,
    notes: Notes,
) -> dict[str, Any]:
    """The spec's ``tables`` mapping from the three answers, locked facts applied (changes in ``notes``)."""
    listed = lock_tables(tables, locked, notes)
    spec_tables: dict[str, dict[str, Any]] = {
        t["name"]: {"rows": t["rows"], "description": t["description"], "columns": {}} for t in listed
    }
    _add_columns(spec_tables, columns, notes)
    _apply_enums(spec_tables, locked, notes)
    _add_keys(spec_tables, listed, constraints, notes)
    return {"tables": spec_tables}


def lock_tables(answer: dict[str, Any], locked: Locked, notes: Notes) -> list[dict[str, Any]]:
    """The answered tables with identifier names, every locked table present and locked rows kept."""
    by_name: dict[str, dict[str, Any]] = {}
    for table in answer.get("tables", []):
        name = ident(table["name"])
        if name != table["name"]:
            notes.append(
                ("tables", f"tables.{name}", f"renamed from {table['name']!r} (names are identifiers)")
            )
        if name in by_name:
            notes.append(("tables", f"tables.{name}", "listed twice: the second entry dropped"))
            continue
        by_name[name] = {**table, "name": name, "parents": [ident(p) for p in table["parents"]]}
    changed: set[str] = set()
    for fact in locked.tables:
        table = by_name.get(fact.name)
        if table is None:
            rows = fact.rows if fact.rows is not None else DEFAULT_ROWS
            by_name[fact.name] = {"name": fact.name, "description": "", "rows": rows, "parents": []}
            by_name[fact.name]["rows_per_parent"] = None
            notes.append(("tables", f"tables.{fact.name}", f"added: the story names it ({fact.source!r})"))
        elif fact.rows is not None and table["rows"] != fact.rows:
            notes.append(
                (
                    "tables",
                    f"tables.{fact.name}.rows",
                    f"{table['rows']} -> {fact.rows} (locked: {fact.source!r})",
                )
            )
            table["rows"] = fact.rows
            changed.add(fact.name)
    _follow_ratios(by_name, changed, {f.name for f in locked.tables if f.rows is not None}, notes)
    return list(by_name.values())


def _follow_ratios(
    by_name: dict[str, dict[str, Any]], changed: set[str], fixed: set[str], notes: Notes
) -> None:
    """Tables whose first parent's rows were locked to another count keep their rows per parent."""
    for _ in range(len(by_name)):
        moved = False
        for name, table in by_name.items():
            parents = [p for p in table["parents"] if p in by_name]
            ratio = table.get("rows_per_parent")
            if name in fixed or name in changed or not parents or parents[0] not in changed or not ratio:
                continue
            rows = max(0, round(ratio * by_name[parents[0]]["rows"]))
            notes.append(
                (
                    "tables",
                    f"tables.{name}.rows",
                    f"{table['rows']} -> {rows} ({ratio:g} per {parents[0]} row)",
                )
            )
            table["rows"], moved = rows, True
            changed.add(name)
        if not moved:
            return


def _add_columns(spec_tables: dict[str, dict[str, Any]], answer: dict[str, Any], notes: Notes) -> None:
    for table in answer.get("tables", []):
        tname = ident(table["name"])
        if tname not in spec_tables:
            notes.append(("columns", f"tables.{tname}", "columns for a table step 1 did not list: dropped"))
            continue
        columns = spec_tables[tname]["columns"]
        for item in table["columns"]:
            cname = ident(item["name"])
            path = f"tables.{tname}.columns.{cname}"
            if cname in columns:
                notes.append(("columns", path, "listed twice: the second entry dropped"))
                continue
            if cname != item["name"]:
                notes.append(("columns", path, f"renamed from {item['name']!r} (names are identifiers)"))
            columns[cname] = column_spec(item)


def _apply_enums(spec_tables: dict[str, dict[str, Any]], locked: Locked, notes: Notes) -> None:
    """Each locked enum becomes (or stays) a category column with exactly the story's values."""
    for enum in locked.enums:
        order = sorted(spec_tables, key=lambda t: t != enum.table)
        names = (enum.column, enum.column + "s", f"{enum.column}_type", f"{enum.column}_name")
        hit = next(((t, c) for t in order for c in names if c in spec_tables[t]["columns"]), None)
        if hit is None:
            tname = order[0] if order else None
            if tname is None:
                return
            spec_tables[tname]["columns"][enum.column] = {"type": "category", "values": list(enum.values)}
            notes.append(
                ("columns", f"tables.{tname}.columns.{enum.column}", f"added (locked: {enum.source!r})")
            )
            continue
        tname, cname = hit
        column = spec_tables[tname]["columns"][cname]
        values = column.get("values")
        answered = list(values) if isinstance(values, dict | list) else []
        if column.get("type") == "category" and sorted(map(str, answered)) == sorted(enum.values):
            continue
        kept = {k: column[k] for k in ("description", "null_rate") if k in column}
        spec_tables[tname]["columns"][cname] = {**kept, "type": "category", "values": list(enum.values)}
        notes.append(
            ("columns", f"tables.{tname}.columns.{cname}", f"values -> {list(enum.values)} (locked)")
        )


def _add_keys(
    spec_tables: dict[str, dict[str, Any]],
    listed: list[dict[str, Any]],
    answer: dict[str, Any],
    notes: Notes,
) -> None:
    """Primary keys first, then foreign keys (answered, or implied by step 1's parents), then time order."""
    pks = _primary_keys(spec_tables, answer, notes)
    fks: dict[str, dict[str, str]] = {name: {} for name in spec_tables}
    for item in answer.get("foreign_keys", []):
        tname, parent = ident(item["table"]), ident(item["references"].split(".", 1)[0])
        if tname not in spec_tables:
            notes.append(("constraints", f"tables.{tname}", "foreign key of an unknown table: dropped"))
            continue
        fks[tname][ident(item["column"])] = f"{parent}.{pks.get(parent, 'id')}"
    _implied_fks(listed, pks, fks, notes)
    for tname, table in spec_tables.items():
        old, pk = table["columns"], pks[tname]
        keys: dict[str, Any] = {pk: {"type": "int", **_described(old.get(pk))}}
        for cname, target in fks[tname].items():
            keys.setdefault(cname, {"type": "int", "foreign_key": target, **_described(old.get(cname))})
        for cname, column in keys.items():
            if cname in old and old[cname] != column:
                notes.append(
                    ("constraints", f"tables.{tname}.columns.{cname}", "redefined as a key (step 3)")
                )
        table["columns"] = {**keys, **{c: v for c, v in old.items() if c not in keys}}
        table["primary_key"] = pk
    _time_order(spec_tables, answer, notes)


def _implied_fks(
    listed: list[dict[str, Any]], pks: dict[str, str], fks: dict[str, dict[str, str]], notes: Notes
) -> None:
    """A foreign key for each parent step 1 named that step 3 left without one (column name free)."""
    for table in listed:
        name = table["name"]
        for parent in table["parents"]:
            targets = {fk.split(".", 1)[0] for fk in fks[name].values()}
            column = f"{singular(parent)}_id"
            if parent not in pks or parent == name or parent in targets or column in fks[name]:
                continue
            if column == pks[name]:
                continue
            fks[name][column] = f"{parent}.{pks[parent]}"
            notes.append(("constraints", f"tables.{name}.columns.{column}", f"added: references {parent}"))


def _described(column: Any) -> dict[str, Any]:
    return (
        {"description": column["description"]}
        if isinstance(column, dict) and column.get("description")
        else {}
    )


def _primary_keys(
    spec_tables: dict[str, dict[str, Any]], answer: dict[str, Any], notes: Notes
) -> dict[str, str]:
    pks: dict[str, str] = {}
    for item in answer.get("primary_keys", []):
        tname = ident(item["table"])
        if tname in spec_tables and tname not in pks:
            pks[tname] = ident(item["column"])
    for tname in spec_tables:
        if tname not in pks:
            pks[tname] = "id"
            notes.append(
                ("constraints", f"tables.{tname}.primary_key", "none given: added an int column 'id'")
            )
    return pks


def _time_order(spec_tables: dict[str, dict[str, Any]], answer: dict[str, Any], notes: Notes) -> None:
    for item in answer.get("time_order", []):
        tname, cname = ident(item["table"]), ident(item["column"])
        columns = spec_tables.get(tname, {}).get("columns", {})
        if cname not in columns:
            notes.append(
                ("constraints", f"tables.{tname}.columns.{cname}", "time order on no such column: dropped")
            )
            continue
        columns[cname]["after"] = item["after"]
