"""Column statistics of a real table, by SQL aggregates in DuckDB, and the spec column they make.

Privacy rule: a real value enters a column spec only as a category seen in at least
``threshold`` rows of its column (``max(min_count, min_share * non-null rows)``). Numbers
become quantiles (aggregates), dates whole-day ranges, other text a pattern of character
classes (only the punctuation and a prefix every value shares are kept), a built-in
vocabulary chosen by the column's name, or the shared ``review`` sentences.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from synthreg.registry.infer_sources import quote

__all__ = ["ColumnProfile", "InferOptions", "column_spec", "profile_table"]

_INT = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
_FLOAT = ("FLOAT", "DOUBLE", "REAL")
_UUID_RE = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: built-in vocabulary -> column names (or name endings after '_') that ask for it
_VOCAB_HINTS = {
    "first_name": ("first_name", "firstname", "given_name", "forename"),
    "last_name": ("last_name", "lastname", "surname", "family_name"),
    "full_name": ("full_name", "fullname", "customer_name", "contact_name"),
    "product": ("product", "product_name"),
    "email": ("email", "e_mail", "email_address", "mail"),
    "username": ("username", "user_name", "login", "handle"),
    "city": ("city", "town"),
    "country": ("country",),
    "street_address": ("address", "street", "street_address"),
    "phone": ("phone", "phone_number", "mobile", "telephone"),
    "company": ("company", "employer", "organization", "organisation"),
    "job": ("job", "job_title", "occupation"),
    "url": ("url", "website", "homepage"),
}


@dataclass(frozen=True)
class InferOptions:
    """How inference treats real values (see the module docstring)."""

    min_count: int = 5
    min_share: float = 0.01
    quantiles: int = 51
    category_coverage: float = 0.9  # frequent values must cover this share of rows to make a category

    def threshold(self, non_null: int) -> int:
        """Rows a value must appear in to enter the spec verbatim."""
        return max(self.min_count, math.ceil(self.min_share * non_null))


@dataclass
class ColumnProfile:
    """What the SQL aggregates found about one column."""

    name: str  # the spec name
    real: str  # the column's name in the source
    kind: str  # int, float, bool, string, datetime, date, uuid, or other (left out)
    duck_type: str
    rows: int = 0
    non_null: int = 0
    distinct: int = 0
    unique: bool = False
    low: Any = None
    high: Any = None

    @property
    def expr(self) -> str:
        """The SQL expression for the column's values (text dates are cast)."""
        return self.of("")

    def of(self, alias: str) -> str:
        """``expr`` on the table aliased ``alias`` in a join."""
        col = f"{alias}.{quote(self.real)}" if alias else quote(self.real)
        if self.duck_type == "VARCHAR" and self.kind in ("datetime", "date"):
            return f"TRY_CAST({col} AS TIMESTAMP)"
        return col

    @property
    def null_rate(self) -> float:
        """Share of nulls, rounded to 4 decimals (always < 1)."""
        return min(round(1 - self.non_null / self.rows, 4), 0.9999) if self.rows else 0.0


@dataclass
class TableProfile:
    """Row count and column profiles of one table."""

    rows: int
    columns: list[ColumnProfile] = field(default_factory=list)


def _kind(duck_type: str) -> str:
    base = duck_type.split("(")[0].strip()
    if base in _INT:
        return "int"
    if base in _FLOAT or base == "DECIMAL":
        return "float"
    if base == "BOOLEAN":
        return "bool"
    if base == "DATE":
        return "date"
    if base.startswith("TIMESTAMP"):
        return "datetime"
    if base == "UUID":
        return "uuid"
    if base == "VARCHAR":
        return "string"
    return "other"


def profile_table(con: Any, table: str, spec_name: Any) -> TableProfile:
    """Rows, types, nulls, distinct counts, key candidates and ranges of ``table``'s columns."""
    described = con.execute(f"DESCRIBE {quote(table)}").fetchall()
    cols = [ColumnProfile(spec_name(r[0]), r[0], _kind(str(r[1])), str(r[1])) for r in described]
    parts = ["count(*)"]
    for c in cols:
        q = quote(c.real)
        parts += [f"count({q})", f"approx_count_distinct({q})" if c.kind != "other" else "0"]
        if c.kind == "string":
            parts += [
                f"count(TRY_CAST({q} AS TIMESTAMP))",
                f"bool_and(length({q}) <= 10 AND TRY_CAST({q} AS TIMESTAMP) = TRY_CAST({q} AS DATE))",
                f"bool_and(regexp_full_match({q}, '{_UUID_RE}'))",
            ]
    row = con.execute(f"SELECT {', '.join(parts)} FROM {quote(table)}").fetchone()
    rows, values = int(row[0]), list(row[1:])
    for c in cols:
        c.rows, c.non_null, c.distinct = rows, int(values.pop(0)), int(values.pop(0) or 0)
        if c.kind == "string":
            dates, day_only, uuids = values.pop(0), values.pop(0), values.pop(0)
            if c.non_null and dates == c.non_null:
                c.kind = "date" if day_only else "datetime"
            elif c.non_null and uuids:
                c.kind = "uuid"
    _ranges(con, table, cols)
    return TableProfile(rows, cols)


def _ranges(con: Any, table: str, cols: list[ColumnProfile]) -> None:
    """Exact uniqueness for key candidates; min and max of ints and dates."""
    parts, owners = [], []
    for c in cols:
        if c.kind in ("int", "datetime", "date") and c.non_null:
            parts += [f"min({c.expr})", f"max({c.expr})"]
            owners.append((c, "range"))
        if c.kind in ("int", "string") and c.non_null == c.rows and c.distinct >= 0.9 * c.rows:
            parts.append(f"count(DISTINCT {c.expr})")
            owners.append((c, "unique"))
    if not parts:
        return
    row = list(con.execute(f"SELECT {', '.join(parts)} FROM {quote(table)}").fetchone())
    for c, what in owners:
        if what == "range":
            c.low, c.high = row.pop(0), row.pop(0)
        else:
            c.unique = int(row.pop(0)) == c.rows


# ---------------------------------------------------------------- column specs


def column_spec(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    """The spec of a non-key column and what of the real data it holds (for the privacy note)."""
    build = {
        "int": _numeric,
        "float": _numeric,
        "bool": _bool,
        "datetime": _dates,
        "date": _dates,
        "uuid": _uuid,
        "string": _string,
    }[c.kind]
    out, note = build(con, table, c, opts)
    if c.null_rate:
        out["null_rate"] = c.null_rate
    return out, note


def _numeric(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    probs = [round(i / (opts.quantiles - 1), 6) for i in range(opts.quantiles)]
    agg = "approx_quantile" if c.rows > 2_000_000 else "quantile_cont"
    expr = f"{c.expr}::DOUBLE"
    finite = f"FILTER (WHERE isfinite({expr}))"
    parts = [f"count(*) FILTER (WHERE NOT isfinite({expr}))", f"{agg}({expr}, {probs}) {finite}"]
    if c.kind == "float":
        parts += [f"bool_and({expr} = round({expr}, {d})) {finite}" for d in range(5)]
    nonfinite, *row = con.execute(f"SELECT {', '.join(parts)} FROM {quote(table)}").fetchone()
    c.non_null -= int(nonfinite)  # NaN and infinities count as nulls: the engine draws finite numbers
    if row[0] is None:  # no finite value: a constant under the nulls
        return {"type": c.kind, "min": 0, "max": 0}, "quantiles"
    digits = next((d for d, exact in enumerate(row[1:]) if exact), None)
    places = 3 if c.kind == "int" else (digits + 2 if digits is not None else None)
    quantiles = [_round(float(q), places) for q in itertools.accumulate(row[0], max)]  # monotone
    if c.kind == "int":
        quantiles = [int(q) if q == int(q) else q for q in quantiles]
    out: dict[str, Any] = {"type": c.kind, "distribution": {"kind": "empirical", "quantiles": quantiles}}
    if digits is not None:
        out["decimals"] = digits
    return out, "quantiles"


def _round(value: float, places: int | None) -> float:
    if places is not None:
        return round(value, places)
    return float(f"{value:.6g}")


def _bool(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    (p,) = con.execute(f"SELECT avg({c.expr}::INTEGER) FROM {quote(table)}").fetchone()
    return {"type": "bool", "p": round(float(p or 0.0), 4)}, "share"


def _dates(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    low, high = _as_datetime(c.low), _as_datetime(c.high)
    start = dt.date(low.year, low.month, low.day)
    end = dt.date(high.year, high.month, high.day)
    if c.kind == "datetime" and high != dt.datetime(high.year, high.month, high.day):
        end += dt.timedelta(days=1)  # the day after the last value: the whole last day is in range
    return {"type": c.kind, "start": start, "end": end}, "range"


def _as_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value
    return dt.datetime(value.year, value.month, value.day)


def _uuid(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    return {"type": "uuid"}, "uuid"


def _string(con: Any, table: str, c: ColumnProfile, opts: InferOptions) -> tuple[dict[str, Any], str]:
    threshold = opts.threshold(c.non_null)
    frequent = con.execute(
        f"SELECT {c.expr}, count(*) AS n FROM {quote(table)} WHERE {c.expr} IS NOT NULL GROUP BY 1 "
        f"HAVING count(*) >= ? ORDER BY n DESC, 1 LIMIT 1000",
        [threshold],
    ).fetchall()
    covered = sum(n for _, n in frequent) / c.non_null if c.non_null else 0.0
    if frequent and covered >= opts.category_coverage:
        return _category(frequent, c, threshold)
    vocab = _vocab_hint(c.name)
    if vocab:
        return {"type": "text", "vocab": vocab}, "vocab"
    pattern = _pattern(con, table, c, threshold)
    if pattern is not None:
        out: dict[str, Any] = {"type": "text", "pattern": pattern}
        if c.unique:
            out["unique"] = True
        return out, "pattern"
    if frequent and covered >= 0.5:
        return _category(frequent, c, threshold)
    return _words(con, table, c, threshold)


def _words(con: Any, table: str, c: ColumnProfile, threshold: int) -> tuple[dict[str, Any], str]:
    """Free text: its tokens that appear in at least ``threshold`` rows, weighted by those rows."""
    split = rf"string_split_regex(trim({c.expr}), '\s+')"
    tokens = con.execute(
        f"SELECT tok, count(*) AS n FROM (SELECT unnest(list_distinct({split})) AS tok FROM {quote(table)} "
        f"WHERE {c.expr} IS NOT NULL) WHERE tok <> '' GROUP BY tok HAVING count(*) >= ? "
        "ORDER BY n DESC, tok LIMIT 500",
        [threshold],
    ).fetchall()
    tokens = [(t, n) for t, n in tokens if not any(ch.isspace() for ch in t)]  # Unicode spaces RE2 kept
    if not tokens:
        return {"type": "text", "vocab": "review"}, "review"
    low, high = con.execute(
        f"SELECT quantile_disc(len({split}), [0.05, 0.95]) FROM {quote(table)} WHERE {c.expr} IS NOT NULL"
    ).fetchone()[0]
    out = {"type": "text", "words": _category(tokens, c, threshold)[0]["values"]}
    out.update(min_words=max(1, min(int(low), 200)), max_words=max(1, min(int(high), 200)))
    return out, f"tokens (each in >= {threshold} rows)"


def _category(
    frequent: list[tuple[str, int]], c: ColumnProfile, threshold: int
) -> tuple[dict[str, Any], str]:
    total = sum(n for _, n in frequent)
    probs = {str(v): round(n / total, 6) for v, n in frequent}
    first = next(iter(probs))
    probs[first] = round(1.0 - sum(p for k, p in probs.items() if k != first), 6)
    rare = c.non_null - total
    left = f"; {rare} rows of rarer values ({rare / c.non_null:.1%}) left out" if rare else ""
    return {"type": "category", "values": probs}, f"categories (each in >= {threshold} rows{left})"


def _vocab_hint(name: str) -> str | None:
    lower = name.lower()
    for vocab, names in _VOCAB_HINTS.items():
        if vocab == "email":
            continue  # an email column is built from two name columns: see infer.py
        if any(lower == n or lower.endswith("_" + n) for n in names):
            return vocab
    return None


def email_hint(name: str) -> bool:
    """Whether a column's name says it holds email addresses."""
    lower = name.lower()
    return any(lower == n or lower.endswith("_" + n) for n in _VOCAB_HINTS["email"])


_SHAPE = (  # digits -> 9, upper-case ASCII letters -> A, lower-case -> a (translate: no regex, fast)
    "translate({e}, '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', "
    f"'{'9' * 10}{'A' * 26}{'a' * 26}')"
)


#: above this many values, shapes are read from a seeded sample of this many rows
SHAPE_SAMPLE = 200_000


def _pattern(con: Any, table: str, c: ColumnProfile, threshold: int) -> str | None:
    """A fixed-length pattern of character classes, when 90% of the values share one shape.

    Lengths first (cheap): 90% of the values must share one. Shapes then come from every value,
    or from a seeded sample of ``SHAPE_SAMPLE`` rows of a larger column (the share is an estimate;
    a prefix is kept only when the rows sharing it stand for at least ``threshold`` rows)."""
    (top,) = con.execute(
        f"SELECT max(n) FROM (SELECT count(*) AS n FROM {quote(table)} WHERE {c.expr} IS NOT NULL "
        f"GROUP BY length({c.expr}))"
    ).fetchone()
    if not top or top < 0.9 * c.non_null:
        return None
    source = quote(table)
    if c.non_null > SHAPE_SAMPLE:  # rows sampled before the WHERE: the total is counted after it
        source = (
            f"(SELECT * FROM {source} USING SAMPLE reservoir({SHAPE_SAMPLE} ROWS) REPEATABLE (0)) AS sampled"
        )
    shape = _SHAPE.format(e=c.expr)
    row = con.execute(
        f"SELECT {shape} AS s, count(*) AS n, min({c.expr}), max({c.expr}), sum(count(*)) OVER () "
        f"FROM {source} WHERE {c.expr} IS NOT NULL GROUP BY s ORDER BY n DESC LIMIT 1"
    ).fetchone()
    if row is None or row[1] < 0.9 * row[4] or not 0 < len(row[0]) <= 64:
        return None
    total = int(row[4])
    shape_text, count, low, high, _ = row
    prefix = _common_prefix(low, high) if count * c.non_null / total >= threshold else ""
    pattern = _render(prefix, shape_text[len(prefix) :])
    return pattern if pattern.isascii() else None  # patterns are ASCII-only


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _render(prefix: str, shape: str) -> str:
    classes = {"9": r"\d", "A": r"\L", "a": "[a-z]"}
    out = [_literal(ch) for ch in prefix]
    i = 0
    while i < len(shape):
        ch, j = shape[i], i
        while j < len(shape) and shape[j] == ch:
            j += 1
        atom = classes.get(ch)
        if atom is None:
            out.extend(_literal(ch) for _ in range(j - i))
        else:
            out.append(atom + (f"{{{j - i}}}" if j - i > 1 else ""))
        i = j
    return "".join(out)


def _literal(ch: str) -> str:
    return "\\" + ch if ch in "\\[]{}" else ch
