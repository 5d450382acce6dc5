"""Fuzzing spec content: whatever a spec holds, loading it and generating a few rows either works
or raises the project's SpecError (ConstraintError for an ``action: error`` rule the rows break),
never another exception, and never hangs.

Specs may be drafted by an LLM, so every field gets garbage: wrong types, huge and negative
numbers, inf/nan, odd expressions, YAML that does not parse, bytes that are not UTF-8.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthreg.errors import ConstraintError, SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec import DISTRIBUTIONS
from synthreg.generators.spec_io import load_spec, parse_spec

#: one example may take this long (generation of a few rows takes milliseconds)
_HANG_S = 10
#: above this many rows an accepted spec is only parsed, not generated (keeps examples tiny)
_MAX_ROWS = 200

BASE: dict[str, Any] = {
    "seed": 1,
    "tables": {
        "users": {
            "rows": 6,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "age": {"type": "int", "distribution": {"kind": "normal", "mean": 30, "std": 5}, "min": 18},
                "score": {"type": "float", "distribution": {"kind": "lognormal", "mean": 1, "sigma": 0.5}},
                "spend": {"type": "float", "distribution": {"kind": "exponential", "scale": 20}},
                "plan": {"type": "category", "values": {"free": 0.5, "pro": 0.5}},
                "first": {"type": "text", "vocab": "first_name", "locale": "de_DE"},
                "last": {"type": "text", "vocab": "last_name"},
                "email": {"type": "text", "vocab": "email", "from": ["first", "last"]},
                "code": {"type": "text", "pattern": r"A-\d{3}", "unique": True},
                "joined": {"type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
                "active": {"type": "bool", "p": 0.3, "null_rate": 0.1},
                "double": {"type": "float", "expr": "round(score * 2 + age, 2)", "decimals": 2},
                "blurb": {"type": "llm_text", "llm": {"prompt": "About {first}", "models": ["openai/m"]}},
            },
            "noise": [
                {"kind": "outliers", "column": "spend", "rate": 0.2, "factor": 5},
                {"kind": "typos", "column": "last", "rate": 0.2},
            ],
        },
        "orders": {
            "rows": 9,
            "primary_key": "oid",
            "columns": {
                "oid": {"type": "int", "distribution": {"kind": "sequence", "start": 100, "step": 2}},
                "uid": {"type": "int", "foreign_key": "users.id", "skew": 0.5, "max_children": 5},
                "qty": {"type": "int", "distribution": {"kind": "poisson", "lam": 2}, "min": 1, "max": 9},
                "price": {"type": "float", "min": 1, "max": 50, "decimals": 2},
                "weight": {"type": "float", "min": 0, "max": 10},
                "total": {"type": "float", "expr": "weight * 3 + 1"},
                "at": {"type": "date", "start": "2024-01-01", "end": "2025-12-31", "after": "users.joined"},
                "u": {"type": "uuid"},
            },
            "constraints": [
                {"kind": "sum_limit", "group_by": ["uid"], "column": "qty", "limit": 40, "action": "cap"},
                {"kind": "inequality", "left": "price", "op": ">=", "right": "qty"},
            ],
            "noise": [{"kind": "drift", "column": "price", "over": "at", "change": 0.1}],
            "expectations": [
                {"expectation": "expect_column_values_to_not_be_null", "kwargs": {"column": "u"}}
            ],
        },
        "labels": {
            "llm": {
                "task": "Short replies",
                "labels": {"polite": "Kind", "rude": "Curt"},
                "categories": {"shop": ["toys"]},
                "samples": 4,
                "few_shot": 0,
                "models": ["openai/m"],
            }
        },
    },
}


@contextlib.contextmanager
def _no_hang(seconds: int = _HANG_S) -> Iterator[None]:
    """Fail an example that runs longer than ``seconds`` instead of waiting for it forever."""

    def expire(*_: Any) -> None:
        raise TimeoutError(f"the example ran past {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _load_and_generate(data: Any, out: Path, workers: int = 1) -> None:
    """Parse ``data`` and, when it is small enough, generate it; SpecError is a fine outcome."""
    with _no_hang(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy overflow warning is a failure, as under pytest
        try:
            spec = parse_spec(data, "fuzz.yaml")
            if spec.total_rows <= _MAX_ROWS:
                generate(spec, out, workers=workers)
        except SpecError as exc:
            assert str(exc).startswith("fuzz.yaml"), str(exc)
        except ConstraintError:
            pass  # an ``action: error`` rule the generated rows break: the documented outcome


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out += _paths(value, (*prefix, key))
    return out


_PATHS = _paths(BASE)

_EXPRS = st.sampled_from(
    [
        "9 ** 9 ** 9",
        "1e308 ** 2",
        "1e308 * 10",
        "2 ** 1024",
        "score ** 1e6",
        "exp(age * 1000)",
        "age ** age ** age",
        "1 / 0",
        "age / 0",
        "sqrt(-1)",
        "log(0)",
        "round(score, age)",
        "round(score, 99)",
        "min(age)",
        "abs()",
        "sqrt(age, age)",
        "age if active else -age",
        "-(age > 3)",
        "(age > 3) - (age < 3)",
        "not active",
        "double",
        "nope + 1",
        "plan * 2",
        "email + 1",
        "__import__('os')",
        "age.real",
        "[age]",
        "age[0]",
        "lambda: 1",
        "(x := 1)",
        "'text'",
        "1j",
        "...",
        "9" * 500,
        "(" * 150 + "1" + ")" * 150,
        "-" * 900 + "1",
        "+".join(["age"] * 400),
        "",
        "   ",
        "age +",
        "\x00",
        "7",
        "True",
    ]
)
_NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63), 10**10, 10**11, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, -0.5, 1e18, 1e19, 4.7e18]),
)
_WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    _NUMBERS,
    st.text(max_size=12),
    _EXPRS,
    st.sampled_from(["int", "float", "normal", "users.id", "users.joined", "email", "\\d{64}", "[Z-A]"]),
    st.sampled_from(["2024-13-45", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "0001-01-01"]),
    st.dates().map(str),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=-5))])),
    st.lists(st.one_of(st.none(), _NUMBERS, st.text(max_size=4)), max_size=4),
    st.dictionaries(st.text(max_size=6), st.one_of(st.none(), _NUMBERS, st.text(max_size=4)), max_size=3),
)


def _mutate(data: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> None:
    parent: Any = data
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "add" and isinstance(parent[key], dict):
        parent[key]["extra_key"] = value
    else:
        parent[key] = value


def test_the_base_spec_generates(tmp_path: Path) -> None:
    spec = parse_spec(copy.deepcopy(BASE), "base.yaml")
    assert generate(spec, tmp_path, workers=1).rows == {"users": 6, "orders": 9}


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(_PATHS), st.sampled_from(["set", "set", "delete", "add"]), _WEIRD),
        min_size=1,
        max_size=3,
    )
)
def test_mutated_specs_raise_only_spec_errors(
    edits: list[tuple[tuple[Any, ...], str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = copy.deepcopy(BASE)
    for path, action, value in edits:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier edit removed the path
            _mutate(data, path, action, value)
    _load_and_generate(data, tmp_path_factory.mktemp("gen"))


_TYPES = st.sampled_from(["int", "float", "bool"])


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    expr=st.one_of(
        _EXPRS,
        st.text(max_size=30),
        st.recursive(
            st.one_of(
                st.sampled_from(["age", "score", "active", "id", "plan", "nope"]),
                _NUMBERS.filter(lambda x: not isinstance(x, float) or x == x).map(repr),
            ),
            lambda inner: st.one_of(
                st.tuples(
                    inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "==", "and"]), inner
                ).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
                st.tuples(
                    st.sampled_from(["abs", "round", "min", "max", "sqrt", "log", "exp", "floor"]), inner
                ).map(lambda t: f"{t[0]}({t[1]})"),
                st.tuples(st.sampled_from(["round", "min", "max"]), inner, inner).map(
                    lambda t: f"{t[0]}({t[1]}, {t[2]})"
                ),
                inner.map(lambda x: f"-{x}"),
                st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
            ),
            max_leaves=12,
        ),
    ),
    kind=_TYPES,
    bounds=st.sampled_from([{}, {"min": 0, "max": 100}, {"min": -5}, {"max": 1e300}]),
)
def test_any_expression_is_a_column_or_a_spec_error(
    expr: str, kind: str, bounds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = copy.deepcopy(BASE)
    data["tables"]["users"]["columns"]["double"] = {"type": kind, "expr": expr, **bounds}
    _load_and_generate(data, tmp_path_factory.mktemp("gen"))


_SOME = st.one_of(st.integers(0, 20), st.floats(0.01, 50), st.integers(-5, 5), _NUMBERS)
_MOMENTS = st.datetimes(timezones=st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=9))]))


def _naive(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=None)  # an order good enough to make start <= end most of the time


@st.composite
def _column(draw: Any) -> dict[str, Any]:
    """A column of any type with parameters of any size (mostly modest, sometimes absurd)."""
    kind = draw(
        st.sampled_from(["int", "float", "int", "float", "bool", "category", "date", "datetime", "text"])
    )
    col: dict[str, Any] = {"type": kind}
    if kind in ("int", "float"):
        if draw(st.booleans()):
            dist = draw(st.sampled_from(sorted(DISTRIBUTIONS)))
            required, optional = DISTRIBUTIONS[dist]
            names = [*required, *(o for o in optional if draw(st.booleans()))]
            params: dict[str, Any] = {p: draw(_SOME) for p in names if p != "quantiles"}
            if dist == "empirical":
                params["quantiles"] = sorted(draw(st.lists(st.floats(-1e300, 1e300), min_size=2, max_size=4)))
            col["distribution"] = {"kind": dist, **params}
        col.update({k: draw(_SOME) for k in ("min", "max") if draw(st.booleans())})
        if draw(st.booleans()):
            col["decimals"] = draw(st.integers(-1, 13))
        col["unique"] = draw(st.sampled_from([False, False, True]))
    elif kind == "category":
        col["values"] = draw(st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=3, unique=True))
    elif kind in ("date", "datetime"):
        col["start"], col["end"] = sorted([draw(_MOMENTS), draw(_MOMENTS)], key=_naive)
    elif kind == "text":
        col["pattern"] = draw(st.sampled_from([r"\d{64}", r"[A-Z]{40}", "x", r"\w{10}"]))
        col["unique"] = draw(st.booleans())
    col["null_rate"] = draw(st.sampled_from([0, 0.1, 0.5]))
    return col


_ACTIONS = {
    "sum_limit": ["cap", "redistribute", "drop", "error"],
    "inequality": ["cap", "error"],
    "max_rows_per_group": ["drop", "error"],
    "unique_combination": ["drop", "error"],
}


@st.composite
def _table(draw: Any) -> dict[str, Any]:
    """A table of such columns with a foreign key, and maybe one noise and one constraint on them."""
    columns = {f"c{i}": draw(_column()) for i in range(draw(st.integers(1, 4)))}
    columns["when"] = {"type": "date", "start": "2024-01-01", "end": "2024-12-31"}
    fk: dict[str, Any] = {"type": "int", "foreign_key": "p.id"}
    if draw(st.booleans()):
        fk |= {
            "skew": draw(st.floats(0, 10)),
            "min_children": draw(st.integers(0, 3)),
            "max_children": draw(st.integers(1, 10**12)),
        }
    columns["pid"] = fk
    table: dict[str, Any] = {"rows": draw(st.integers(0, 40)), "columns": columns}
    noise = draw(st.sampled_from([None, "outliers", "drift"]))
    if noise:
        key = "factor" if noise == "outliers" else "change"
        size = draw(st.one_of(st.floats(-0.99, 100), _SOME))
        table["noise"] = [{"kind": noise, "column": "c0", "rate": 0.3, "over": "when", key: size}]
        if noise == "outliers":
            del table["noise"][0]["over"]
    rule = draw(
        st.sampled_from([None, "sum_limit", "inequality", "max_rows_per_group", "unique_combination"])
    )
    if rule:
        table["constraints"] = [
            {
                "kind": rule,
                "action": draw(st.sampled_from(_ACTIONS[rule])),
                **(
                    {
                        "left": "c0",
                        "op": draw(st.sampled_from(["<", ">="])),
                        "right": "c1" if "c1" in columns else "pid",
                    }
                    if rule == "inequality"
                    else {"group_by": ["c0"] if rule != "sum_limit" else ["pid"], "limit": draw(_SOME)}
                ),
                **({"column": "c0"} if rule == "sum_limit" else {}),
                **({"columns": ["c0"], "group_by": []} if rule == "unique_combination" else {}),
            }
        ]
        if rule == "unique_combination":
            del table["constraints"][0]["limit"]
    return table


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=_table(), workers=st.sampled_from([1, 1, 1, 2]))
def test_any_parameters_generate_or_are_a_spec_error(
    table: dict[str, Any], workers: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    data = {"tables": {"p": {"rows": 5, "primary_key": "id", "columns": {"id": {"type": "int"}}}, "t": table}}
    _load_and_generate(data, tmp_path_factory.mktemp("gen"), workers)


_TEXTS = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.sampled_from(
        [
            b"\xff\xfe\x00binary",
            b"tables: {t: {rows: 3, columns: {x: {type: int}}}}\n\x80",
            b"tables: [",
            b"tables: {t: {rows: 99999999999999999999999999999}}",
            b"tables: {t: {rows: " + b"9" * 5000 + b"}}",
            b"tables: {t: {rows: 3, columns: {x: {type: datetime, start: 2024-13-45, end: 2025-01-01}}}}",
            b"a: &a [*a]\ntables: *a",
            b"[" * 5000 + b"]" * 5000,
            b"{" * 2000,
            b"- - - - - - - - - - - - - - - - - - - - -",
            b"!!python/object:os.system [ls]",
            b"tables: !!binary aGVsbG8=",
            b"tables: {t: {rows: .inf}}",
            b"tables: {t: {rows: 3, columns: {x: {type: float, min: .nan}}}}",
            b"\x00\x00\x00",
            b"%YAML 9.9\n---\n",
            b"--- 1\n--- 2\n",
        ]
    ),
)


@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_TEXTS, suffix=st.sampled_from([".yaml", ".json"]))
def test_any_file_content_loads_or_is_a_spec_error(
    content: bytes, suffix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("file") / f"fuzz{suffix}"
    path.write_bytes(content)
    with _no_hang(), contextlib.suppress(SpecError):
        load_spec(path)


def _laughs(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    kwargs = f"{{value_set: *a{levels}}}"
    return "\n".join(
        [
            "aliases:",
            *(f"  {line}" for line in lines),
            "tables:",
            "  t:",
            "    rows: 3",
            "    columns: {x: {type: int}}",
            f"    expectations: [{{expectation: expect_column_values_to_be_in_set, kwargs: {kwargs}}}]",
        ]
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (_laughs(), "once YAML aliases are expanded"),
        ("a: &a [*a]\ntables: {t: {rows: 1, columns: {x: {type: int}}}, y: *a}", "contains itself"),
        (
            json.dumps({"tables": {"t": {"rows": 1}}, "deep": json.loads("[" * 60 + "]" * 60)}),
            "nests more than",
        ),
    ],
)
def test_documents_too_big_or_deep_are_refused_quickly(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(content)
    with _no_hang(3), pytest.raises(SpecError, match=says):
        load_spec(path)


def test_yaml_round_trip_of_fuzzed_base_is_stable() -> None:
    """The base spec survives a YAML round trip (what a version stores)."""
    spec = parse_spec(copy.deepcopy(BASE), "base.yaml")
    assert parse_spec(yaml.safe_load(spec.frozen_yaml()), "again.yaml") == spec
