"""The --where predicate: every operator against a plain-Python recomputation, and refusals."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synthreg.errors import UsageError
from synthreg.registry.predicate import MAX_DEPTH, Predicate, parse_where

COLUMNS = {
    "id": "int",
    "age": "int",
    "score": "float",
    "name": "text",
    "plan": "category",
    "active": "bool",
    "signed_up": "datetime",
    "birthday": "date",
    "and": "int",  # a column named like a keyword, reachable as "and"
}
NAMES = ["ann", "bob", "o'hara", "Anna", "b_x", "b%y", "", None]
PLANS = ["free", "pro", "team", None]


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(0)

    def maybe(value: Any) -> Any:
        return None if rng.random() < 0.15 else value

    return [
        {
            "id": i,
            "age": maybe(rng.randint(-5, 90)),
            "score": maybe(round(rng.uniform(-10, 10), 2)),
            "name": rng.choice(NAMES),
            "plan": rng.choice(PLANS),
            "active": maybe(rng.random() < 0.5),
            "signed_up": maybe(dt.datetime(2021, 1, 1) + dt.timedelta(minutes=rng.randint(0, 3 * 525_600))),
            "birthday": maybe(dt.date(1960, 1, 1) + dt.timedelta(days=rng.randint(0, 20_000))),
            "and": rng.randint(0, 3),
        }
        for i in range(60)
    ]


ROWS = _rows()
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("age", pa.int8()),
        ("score", pa.float64()),
        ("name", pa.dictionary(pa.int32(), pa.string())),
        ("plan", pa.dictionary(pa.int8(), pa.string())),
        ("active", pa.bool_()),
        ("signed_up", pa.timestamp("ms")),
        ("birthday", pa.date32()),
        ("and", pa.uint8()),
    ]
)


def _table() -> pa.Table:
    """ROWS as a two-chunk table with the engine's narrow and dictionary types."""
    halves = [ROWS[:25], ROWS[25:]]
    batches = [pa.RecordBatch.from_pylist(half, schema=SCHEMA) for half in halves]
    return pa.Table.from_batches(batches)


TABLE = _table()

# ---------------------------------------------------------------- SQL semantics in plain Python

Value = bool | None


def _cmp(value: Any, test: Callable[[Any], bool]) -> Value:
    return None if value is None else test(value)


def _and(a: Value, b: Value) -> Value:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: Value, b: Value) -> Value:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(a: Value) -> Value:
    return None if a is None else not a


def _like(pattern: str, ignore_case: bool = False) -> Callable[[Any], bool]:
    regex = "".join({"%": ".*", "_": "."}.get(c, re.escape(c)) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return lambda s: re.fullmatch(regex, s, flags) is not None


D = dt.datetime
CASES: list[tuple[str, Callable[[dict[str, Any]], Value]]] = [
    ("age = 12", lambda r: _cmp(r["age"], lambda a: a == 12)),
    ("age != 30", lambda r: _cmp(r["age"], lambda a: a != 30)),
    ("age <> 30", lambda r: _cmp(r["age"], lambda a: a != 30)),
    ("age < 30", lambda r: _cmp(r["age"], lambda a: a < 30)),
    ("age <= 30", lambda r: _cmp(r["age"], lambda a: a <= 30)),
    ("age > 30", lambda r: _cmp(r["age"], lambda a: a > 30)),
    ("age >= 30", lambda r: _cmp(r["age"], lambda a: a >= 30)),
    ("age > -3", lambda r: _cmp(r["age"], lambda a: a > -3)),
    ("age > 29.5", lambda r: _cmp(r["age"], lambda a: a > 29.5)),
    ("score <= -1.25", lambda r: _cmp(r["score"], lambda s: s <= -1.25)),
    ("score > 2", lambda r: _cmp(r["score"], lambda s: s > 2)),
    ("age IN (2, 12, 35, 1000)", lambda r: _cmp(r["age"], lambda a: a in (2, 12, 35))),
    ("age NOT IN (1, 30, 45)", lambda r: _cmp(r["age"], lambda a: a not in (1, 30, 45))),
    ("score IN (1, -1.59, 2.37)", lambda r: _cmp(r["score"], lambda s: s in (1, -1.59, 2.37))),
    ("plan IN ('pro', 'team')", lambda r: _cmp(r["plan"], lambda p: p in ("pro", "team"))),
    ("plan NOT IN ('pro')", lambda r: _cmp(r["plan"], lambda p: p != "pro")),
    ("age IS NULL", lambda r: r["age"] is None),
    ("age IS NOT NULL", lambda r: r["age"] is not None),
    ("name IS NULL", lambda r: r["name"] is None),
    ("age BETWEEN 20 AND 40", lambda r: _cmp(r["age"], lambda a: 20 <= a <= 40)),
    ("age NOT BETWEEN 20 AND 40", lambda r: _cmp(r["age"], lambda a: not 20 <= a <= 40)),
    ("name LIKE 'b%'", lambda r: _cmp(r["name"], _like("b%"))),
    ("name LIKE '_nn%'", lambda r: _cmp(r["name"], _like("_nn%"))),
    ("name NOT LIKE '%a%'", lambda r: _cmp(r["name"], lambda s: not _like("%a%")(s))),
    ("name ILIKE 'ANN%'", lambda r: _cmp(r["name"], _like("ANN%", ignore_case=True))),
    ("name = 'o''hara'", lambda r: _cmp(r["name"], lambda s: s == "o'hara")),
    ("name = ''", lambda r: _cmp(r["name"], lambda s: s == "")),
    ("plan = 'pro'", lambda r: _cmp(r["plan"], lambda p: p == "pro")),
    ("plan > 'free'", lambda r: _cmp(r["plan"], lambda p: p > "free")),
    ("active = TRUE", lambda r: r["active"]),
    ("active = false", lambda r: _not(r["active"])),
    ("active != TRUE", lambda r: _not(r["active"])),
    ("active", lambda r: r["active"]),
    ("NOT active", lambda r: _not(r["active"])),
    ("signed_up < '2022-01-01'", lambda r: _cmp(r["signed_up"], lambda t: t < D(2022, 1, 1))),
    (
        "signed_up >= '2022-06-30 12:00:00'",
        lambda r: _cmp(r["signed_up"], lambda t: t >= D(2022, 6, 30, 12)),
    ),
    (
        "signed_up BETWEEN '2022-01-01' AND '2023-01-01T00:00'",
        lambda r: _cmp(r["signed_up"], lambda t: D(2022, 1, 1) <= t <= D(2023, 1, 1)),
    ),
    ("birthday > '1990-05-01'", lambda r: _cmp(r["birthday"], lambda b: b > dt.date(1990, 5, 1))),
    ("birthday = '1979-08-06'", lambda r: _cmp(r["birthday"], lambda b: b == dt.date(1979, 8, 6))),
    (
        "age > 30 AND plan = 'pro'",
        lambda r: _and(_cmp(r["age"], lambda a: a > 30), _cmp(r["plan"], lambda p: p == "pro")),
    ),
    (
        "age > 30 OR active",
        lambda r: _or(_cmp(r["age"], lambda a: a > 30), r["active"]),
    ),
    (
        "NOT (age > 30 OR active)",
        lambda r: _not(_or(_cmp(r["age"], lambda a: a > 30), r["active"])),
    ),
    (
        # AND binds tighter than OR
        "plan = 'free' OR age < 10 AND score > 0",
        lambda r: _or(
            _cmp(r["plan"], lambda p: p == "free"),
            _and(_cmp(r["age"], lambda a: a < 10), _cmp(r["score"], lambda s: s > 0)),
        ),
    ),
    (
        "(plan = 'free' OR age < 10) AND score > 0",
        lambda r: _and(
            _or(_cmp(r["plan"], lambda p: p == "free"), _cmp(r["age"], lambda a: a < 10)),
            _cmp(r["score"], lambda s: s > 0),
        ),
    ),
    ("NOT NOT age = 35", lambda r: _cmp(r["age"], lambda a: a == 35)),
    ('"and" = 2', lambda r: r["and"] == 2),
    (
        "age is not null AnD plan Not In ('free')",
        lambda r: _and(r["age"] is not None, _cmp(r["plan"], lambda p: p != "free")),
    ),
]


def _expected(fn: Callable[[dict[str, Any]], Value]) -> list[bool]:
    return [fn(row) is True for row in ROWS]


@pytest.mark.parametrize(("where", "fn"), CASES, ids=[c[0] for c in CASES])
def test_mask_matches_python(where: str, fn: Callable[[dict[str, Any]], Value]) -> None:
    predicate = parse_where(where, COLUMNS)
    expected = _expected(fn)
    mask = predicate.mask(TABLE)
    assert isinstance(mask, pa.BooleanArray)
    assert mask.to_pylist() == expected


@pytest.mark.parametrize(("where", "fn"), CASES, ids=[c[0] for c in CASES])
def test_expression_filters_a_dataset_like_the_mask(
    where: str, fn: Callable[[dict[str, Any]], Value]
) -> None:
    predicate = parse_where(where, COLUMNS)
    got = ds.dataset(TABLE).to_table(filter=predicate.expression).column("id").to_pylist()
    assert got == [row["id"] for row, keep in zip(ROWS, _expected(fn), strict=True) if keep]


def test_every_case_selects_some_rows_but_not_all() -> None:
    for where, fn in CASES:
        assert 0 < sum(_expected(fn)) < len(ROWS), where


def test_mask_on_a_record_batch() -> None:
    batch = TABLE.to_batches()[1]
    mask = parse_where("age > 30", COLUMNS).mask(batch)
    assert mask.to_pylist() == [r["age"] is not None and r["age"] > 30 for r in ROWS[25:]]


def test_columns_read_are_listed_once() -> None:
    predicate = parse_where("age > 1 AND (plan = 'pro' OR age < 0)", COLUMNS)
    assert isinstance(predicate, Predicate)
    assert predicate.columns == ("age", "plan")


def test_keywords_are_case_insensitive() -> None:
    lower = parse_where("age between 1 and 50 or name like 'a%' and not active is null", COLUMNS)
    upper = parse_where("AGE BETWEEN 1 AND 50 OR NAME LIKE 'a%' AND NOT ACTIVE IS NULL".lower(), COLUMNS)
    assert lower.mask(TABLE) == upper.mask(TABLE)


def test_mask_refuses_data_without_the_column() -> None:
    with pytest.raises(UsageError, match="reads age, which the data does not have"):
        parse_where("age > 3", COLUMNS).mask(pa.table({"id": [1]}))


# ---------------------------------------------------------------- errors


def test_error_points_at_the_token() -> None:
    with pytest.raises(UsageError) as info:
        parse_where("age >> 3", COLUMNS)
    assert str(info.value).startswith(
        """--where "age >> 3": unexpected '>' at position 5; expected a value"""
    )


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (
            "agee > 3",
            r"unknown column 'agee' at position 0; did you mean 'age'\? The table's columns are id, age",
        ),
        ("zzz = 1", r"unknown column 'zzz' at position 0; the table's columns are id, age, score"),
        (
            "age = 'x'",
            r"type mismatch at position 6: column 'age' is int, so compare it with a number, not 'x'",
        ),
        ("plan = 3", r"type mismatch at position 7: column 'plan' is category.*'quoted string', not 3"),
        ("active = 1", r"column 'active' is bool, so compare it with TRUE or FALSE"),
        ("signed_up < 5", r"column 'signed_up' is datetime"),
        ("age IN (1, 'a')", r"type mismatch at position 11"),
        ("signed_up < '2022-13-01'", r"'2022-13-01' at position 12 is not a datetime; write it as"),
        ("birthday < '2022-01-01 10:00'", r"is not a date; write it as '2022-01-31'"),
        ("age = NULL", r"NULL at position 6 is not a value to compare with; write 'column IS NULL'"),
        ("active < TRUE", r"'<' at position 7 does not apply to bool column 'active'"),
        ("active BETWEEN TRUE AND FALSE", r"BETWEEN does not apply to bool column 'active'"),
        ("age LIKE 'a%'", r"LIKE at position 4 applies to text columns; 'age' is int"),
        ("name LIKE 3", r"unexpected '3' at position 10; LIKE needs a 'quoted pattern'"),
        ("name = 'abc", r"unterminated ' starting at position 7"),
        ('"age = 1', r'unterminated " starting at position 0'),
        ("(age = 1", r"unexpected end of expression at position 8; expected '\)' to close"),
        ("age = 1)", r"unexpected '\)' at position 7; expected AND, OR or the end of the expression"),
        ("age IN ()", r"unexpected '\)' at position 8; expected a value"),
        ("age IN (1, 2", r"expected ',' or '\)' to close the list"),
        ("age IN 1", r"expected '\(' to start the list of values"),
        ("age BETWEEN 1 OR 2", r"unexpected 'OR' at position 14; expected AND between the two bounds"),
        ("age IS 3", r"expected NULL or NOT NULL after IS"),
        ("age", r"unexpected end of expression at position 3; expected an operator"),
        ("age = - 'a'", r"expected a number after '-'"),
        ("age = 99999999999999999999", r"number at position 6 is out of range"),
        ("age = 1 AND", r"unexpected end of expression at position 11; expected a column name"),
        ("AND age = 1", r"unexpected 'AND' at position 0; expected a column name"),
        ("age == 1", r"unexpected '=' at position 5; expected a value"),
        ("age = other", r"unexpected 'other' at position 6; expected a value"),
        ("(" * (MAX_DEPTH + 1) + "age = 1" + ")" * (MAX_DEPTH + 1), r"nested more than 64 levels deep"),
        ("", r"--where is empty"),
        ("   ", r"--where is empty"),
        ("a" * 10_001, r"--where is 10,001 characters long"),
    ],
)
def test_errors_say_what_and_where(where: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_where(where, COLUMNS)


@pytest.mark.parametrize(
    "attempt",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "age; drop table users",
        "age = 1; DROP TABLE users",
        "1=1 -- ",
        "age = 1 -- comment",
        "age = 1 OR 1=1",
        "age = 1 /* x */",
        "name = '' OR ''=''",
        "name = 'a' UNION SELECT * FROM users",
        "exec('import os')",
        "age = age",
        "age.__class__ = 1",
        "{age} = 1",
        "age = `1`",
        "lambda: 1",
        "age = 0x10",
        "age = 1e3",
        "age = 1 \\",
    ],
)
def test_injection_attempts_are_refused(attempt: str) -> None:
    with pytest.raises(UsageError, match=r"^--where "):
        parse_where(attempt, COLUMNS)


def test_a_quote_inside_a_string_stays_data() -> None:
    """A closing quote smuggled into a value is doubled by SQL rules, so it is part of the string."""
    mask = parse_where("name = 'x'' OR ''1''=''1'", COLUMNS).mask(TABLE)
    assert not any(mask.to_pylist())


# ---------------------------------------------------------------- properties

_TOKENS = [
    "age", "name", "plan", "active", "signed_up", "score", "nope", '"and"',
    "=", "!=", "<>", "<", "<=", ">", ">=", "(", ")", ",", "-", ";", "--", "==",
    "AND", "or", "NOT", "IN", "is", "NULL", "BETWEEN", "LIKE", "ilike", "TRUE", "false",
    "1", "-2", "3.5", ".5", "'pro'", "'2022-01-01'", "'it''s'", "'", '"', "x'", "__import__",
]  # fmt: skip


def _parse_or_usage_error(text: str) -> None:
    """Either a UsageError, or a predicate that evaluates on the table: nothing else."""
    try:
        predicate = parse_where(text, COLUMNS)
    except UsageError as exc:
        assert str(exc).startswith("--where")
        return
    assert len(predicate.mask(TABLE)) == TABLE.num_rows
    ds.dataset(TABLE).to_table(filter=predicate.expression)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_raises_usage_error_or_parses(text: str) -> None:
    _parse_or_usage_error(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), min_size=1, max_size=12), st.sampled_from([" ", "", "  "]))
def test_random_tokens_raise_usage_error_or_parse(tokens: list[str], sep: str) -> None:
    _parse_or_usage_error(sep.join(tokens))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(st.sampled_from(_TOKENS), max_size=10).map(" ".join)))
def test_malformed_input_always_raises_usage_error(prefix: str) -> None:
    """Anything followed by a dangling AND is malformed."""
    with pytest.raises(UsageError):
        parse_where(prefix + " AND", COLUMNS)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["age", "score", "id"]),
    st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
    st.one_of(st.integers(-100, 100), st.floats(-100, 100, allow_nan=False).map(lambda f: round(f, 3))),
)
def test_numeric_comparisons_match_python(column: str, op: str, value: float) -> None:
    compare = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[op]
    literal = f"{value:.3f}" if isinstance(value, float) else str(value)
    literal = literal.replace("-", "- ") if literal.startswith("-") else literal
    mask = parse_where(f"{column} {op} {literal}", COLUMNS).mask(TABLE)
    expected = [
        row[column] is not None and compare(row[column], float(literal.replace(" ", ""))) for row in ROWS
    ]
    assert mask.to_pylist() == expected
