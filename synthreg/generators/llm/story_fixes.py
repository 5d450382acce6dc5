"""Deterministic fixes for a drafted spec that still fails validation after the repair calls.

Each rule matches a ``parse_spec`` problem (its path and message) and edits the spec
mapping in place, returning a note for the log; a rule that changes nothing returns
None. The rules, in order:

- distributions: unknown kind, missing or invalid parameters, or on a non-numeric column
  -> dropped; parameters it does not take -> dropped; uniform ``low > high`` -> swapped;
- ``min > max`` and ``start`` after ``end`` -> swapped;
- category probabilities that do not sum to 1 (or are negative) -> renormalised;
  repeated values -> deduplicated;
- unknown keys -> dropped;
- a foreign key to a missing table (or one without rows) -> dropped, and the column with it
  when nothing else was said about it; one that misses the parent's primary key -> repointed;
  several foreign keys to one parent under ``after`` -> ``via`` the first; a cycle -> broken;
- ``after`` that cannot hold -> dropped; a child's ``end`` before its parent's -> moved;
- a primary key that is not a column -> added as an int column; one that is not a plain int
  -> made one; a nullable one -> not null;
- out-of-range ``null_rate``, ``p``, ``skew``, ``decimals`` -> clamped;
- an email column without ``from`` -> the table's first_name/last_name columns, when it has them;
- a column type written as a common synonym (string, integer, boolean, timestamp...) -> ours;
- any other problem inside a ``distribution`` -> the distribution dropped.

What no rule fixes (a text column without a vocabulary, an unknown type...) stays an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["apply_fixes", "route"]

_Fixer = Callable[[dict[str, Any], list[str], "re.Match[str]"], str | None]
_CLAMPS = {"null_rate": (0.0, 0.99), "p": (0.0, 1.0), "skew": (0.0, 10.0), "decimals": (0, 12)}
_TEXT_KEYS = ("vocab", "pattern", "from", "values", "p", "start", "end", "distribution", "locale", "expr")


def route(path: str, message: str) -> str:
    """The step a problem belongs to: ``tables``, ``columns`` or ``constraints``."""
    parts = path.split(".")
    keys = {"foreign_key", "after", "via", "primary_key", "min_children", "max_children"}
    if keys & set(parts) or re.search(
        r"primary key|foreign key|cycle|after:|after needs|after follows|'after'", message
    ):
        return "constraints"
    if len(parts) <= 2 or parts[2] in ("rows", "description"):
        return "tables"
    return "columns"


def _column(data: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    """The column mapping a ``tables.T.columns.C...`` path points into."""
    if len(parts) < 4 or parts[0] != "tables" or parts[2] != "columns":
        return None
    column = data.get("tables", {}).get(parts[1], {}).get("columns", {}).get(parts[3])
    return column if isinstance(column, dict) else None


def _table(data: dict[str, Any], parts: list[str]) -> dict[str, Any] | None:
    table = data.get("tables", {}).get(parts[1]) if len(parts) >= 2 and parts[0] == "tables" else None
    return table if isinstance(table, dict) else None


def _drop_distribution(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or column.pop("distribution", None) is None:
        return None
    return f"distribution dropped ({match.group(0)})"


def _drop_params(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    dist = column.get("distribution") if column else None
    names = [n.strip() for n in match["names"].split(",")]
    if not isinstance(dist, dict) or not any(n in dist for n in names):
        return None
    for name in names:
        dist.pop(name, None)
    return f"distribution parameters dropped: {', '.join(names)}"


def _swap(low: str, high: str, inside: str | None = None) -> _Fixer:
    def fix(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
        column = _column(data, parts)
        target = column.get(inside) if column and inside else column
        if not isinstance(target, dict) or low not in target or high not in target:
            return None
        target[low], target[high] = target[high], target[low]
        return f"{low} and {high} swapped"

    return fix


def _renormalise(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    values = column.get("values") if column else None
    if not isinstance(values, dict) or not all(isinstance(v, int | float) for v in values.values()):
        return None
    clipped = {k: max(0.0, float(v)) for k, v in values.items()}
    total = sum(clipped.values())
    column["values"] = {k: v / total for k, v in clipped.items()} if total > 0 else list(values)  # type: ignore[index]
    return f"category probabilities renormalised (they summed to {sum(values.values()):g})"


def _dedupe(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or not isinstance(column.get("values"), list):
        return None
    column["values"] = list(dict.fromkeys(column["values"]))
    return "repeated category values dropped"


def _container(data: dict[str, Any], parts: list[str]) -> Any:
    node: Any = data
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _drop_key(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    parent = _container(data, parts[:-1])
    if not isinstance(parent, dict) or match["key"] not in parent:
        return None
    del parent[match["key"]]
    return f"unknown key '{match['key']}' dropped"


def _drop_fk(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column, table = _column(data, parts), _table(data, parts)
    if column is None or table is None or column.pop("foreign_key", None) is None:
        return None
    for key in ("skew", "min_children", "max_children"):
        column.pop(key, None)
    if set(column) <= {"type", "description"}:
        del table["columns"][parts[3]]
        return f"foreign key and its column dropped ({match.group(0)})"
    return f"foreign key dropped ({match.group(0)})"


def _repoint_fk(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or column.get("foreign_key") == match["target"]:
        return None
    column["foreign_key"] = match["target"]
    return f"foreign key repointed to {match['target']}"


def _fk_int(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or column.get("type") == "int":
        return None
    for key in _TEXT_KEYS:
        column.pop(key, None)
    column["type"] = "int"
    return "foreign key column made int"


def _drop_after(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or column.pop("after", None) is None:
        return None
    column.pop("via", None)
    return f"time order dropped ({match.group(0)})"


def _via_first(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    first = match["fks"].split(",")[0].strip()
    if column is None or column.get("via") == first:
        return None
    column["via"] = first
    return f"via: {first} (the first of several foreign keys)"


def _parent_end(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    ptable, _, pcol = match["after"].partition(".")
    parent = data.get("tables", {}).get(ptable, {}).get("columns", {}).get(pcol, {})
    if column is None or not parent.get("end") or column.get("end") == parent["end"]:
        return None
    column["end"] = parent["end"]
    return f"end moved to {parent['end']} (its parent's end)"


def _break_cycle(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    chain = [t.strip() for t in match["chain"].split("->")]
    table = _table(data, parts)
    if table is None or parts[1] not in chain[:-1]:
        return None
    target = chain[chain.index(parts[1]) + 1]
    for cname, column in table["columns"].items():
        if isinstance(column, dict) and str(column.get("foreign_key", "")).split(".")[0] == target:
            return _drop_fk(data, ["tables", parts[1], "columns", cname], match)
    return None


def _add_pk(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    table = _table(data, parts)
    if table is None or match["pk"] in table["columns"]:
        return None
    table["columns"] = {match["pk"]: {"type": "int"}, **table["columns"]}
    return f"primary key column '{match['pk']}' added (int)"


def _plain_int(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    table = _table(data, parts)
    if table is None or len(parts) < 4 or parts[3] not in table["columns"]:
        return None
    old = table["columns"][parts[3]]
    new = {"type": "int", **({"description": old["description"]} if old.get("description") else {})}
    if old == new:
        return None
    table["columns"][parts[3]] = new
    return "primary key made a plain int column"


def _not_null(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    if column is None or column.pop("null_rate", None) is None:
        return None
    return "primary key made not null"


def _clamp(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    key = parts[-1]
    if column is None or key not in _CLAMPS or not isinstance(column.get(key), int | float):
        return None
    low, high = _CLAMPS[key]
    value = min(max(column[key], low), high)
    if value == column[key]:
        return None
    old, column[key] = column[key], value
    return f"{key} {old} clamped to {value}"


_TYPE_SYNONYMS = {
    "integer": "int",
    "bigint": "int",
    "number": "float",
    "double": "float",
    "decimal": "float",
    "numeric": "float",
    "boolean": "bool",
    "timestamp": "datetime",
    "enum": "category",
    "categorical": "category",
    "string": "text",
    "str": "text",
}


def _type_synonym(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column = _column(data, parts)
    known = _TYPE_SYNONYMS.get(match["type"].lower())
    if column is None or known is None:
        return None
    column["type"] = known
    return f"type {match['type']!r} -> {known!r}"


def _email_from(data: dict[str, Any], parts: list[str], match: re.Match[str]) -> str | None:
    column, table = _column(data, parts), _table(data, parts)
    if column is None or table is None:
        return None
    by_vocab = {c.get("vocab"): n for n, c in table["columns"].items() if isinstance(c, dict)}
    if "first_name" not in by_vocab or "last_name" not in by_vocab:
        return None
    column["from"] = [by_vocab["first_name"], by_vocab["last_name"]]
    return f"from: {column['from']} (the table's name columns)"


_RULES: list[tuple[re.Pattern[str], _Fixer]] = [
    (re.compile(r"takes .*, not (?P<names>[\w, ]+): remove them"), _drop_params),
    (re.compile(r"low \(.*\) > high"), _swap("low", "high", "distribution")),
    (
        re.compile(
            r"unknown distribution|distribution '\w+'( needs|: \w+ must)|quantiles|"
            r"'distribution' applies to|cannot also have a distribution"
        ),
        _drop_distribution,
    ),
    (re.compile(r"^min \(.*\) > max"), _swap("min", "max")),
    (re.compile(r"^start \(.*\) is after end"), _swap("start", "end")),
    (re.compile(r"category probabilities (sum to|must be >= 0)"), _renormalise),
    (re.compile(r"category values must be distinct"), _dedupe),
    (re.compile(r"unknown key '(?P<key>[^']+)'"), _drop_key),
    (re.compile(r"must point at the primary key of \w+ \('(?P<target>[\w.]+)'\)"), _repoint_fk),
    (re.compile(r"does not exist|declare primary_key|has 0 rows: children need parents"), _drop_fk),
    (re.compile(r"a foreign_key column must have type: int"), _fk_int),
    (re.compile(r"has several foreign keys \((?P<fks>[^)]*)\)"), _via_first),
    (re.compile(r"infeasible: (?P<after>[\w.]+) ends"), _parent_end),
    (
        re.compile(
            r"is not a column: use after|after needs a datetime|after follows a foreign key|"
            r"'after' \(time order\) applies|is not a foreign key of"
        ),
        _drop_after,
    ),
    (re.compile(r"foreign keys form a cycle \((?P<chain>[^)]*)\)"), _break_cycle),
    (re.compile(r"primary key '(?P<pk>\w+)' is not a column"), _add_pk),
    (re.compile(r"a primary key must be an int column"), _plain_int),
    (re.compile(r"a primary key cannot be null"), _not_null),
    (re.compile(r"^Input should be (less|greater)"), _clamp),
    (re.compile(r"an email column is derived from names"), _email_from),
    (re.compile(r"unknown column type '(?P<type>\w+)'"), _type_synonym),
]


def _first_fix(data: dict[str, Any], parts: list[str], message: str) -> str | None:
    for pattern, fixer in _RULES:
        match = pattern.search(message)
        if match is not None:
            return fixer(data, parts, match)
    column = _column(data, parts) if "distribution" in parts else None
    if column is not None and column.pop("distribution", None) is not None:
        return f"distribution dropped ({message})"  # a problem inside it that no rule knows
    return None


def apply_fixes(data: dict[str, Any], problems: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """Apply the first matching rule to each problem; ``(path, message, note)`` per change made."""
    notes = []
    for path, message in problems:
        note = _first_fix(data, path.split(".") if path else [], message)
        if note is not None:
            notes.append((path, message, note))
    return notes
