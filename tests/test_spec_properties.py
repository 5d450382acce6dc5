"""Property tests: random valid specs generate; invalid ones raise SpecError; nothing crashes."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthreg.errors import SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec

_VOCABS = [
    "first_name",
    "last_name",
    "city",
    "country",
    "company",
    "product",
    "job",
    "phone",
    "url",
    "review",
]


@st.composite
def column(draw: Any) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["int", "float", "bool", "category", "datetime", "date", "text", "pattern", "uuid"])
    )
    null_rate = draw(st.sampled_from([0.0, 0.0, 0.1]))
    if kind in ("int", "float"):
        lo = draw(st.integers(-1000, 1000))
        dist = draw(
            st.sampled_from(
                [
                    None,
                    {"kind": "normal", "mean": lo + 5, "std": 3},
                    {"kind": "exponential", "scale": 2},
                    {"kind": "poisson", "lam": 3},
                    {"kind": "empirical", "quantiles": [lo, lo + 1, lo + 9]},
                ]
            )
        )
        col = {"type": kind, "min": lo, "max": lo + draw(st.integers(0, 500))}
        return {**col, **({"distribution": dist} if dist else {}), "null_rate": null_rate}
    if kind == "category":
        weights = draw(st.lists(st.integers(1, 9), min_size=1, max_size=5))
        return {"type": "category", "values": {f"c{i}": w / sum(weights) for i, w in enumerate(weights)}}
    if kind in ("datetime", "date"):
        year = draw(st.integers(2000, 2030))
        return {"type": kind, "start": f"{year}-01-01", "end": f"{year + draw(st.integers(0, 3))}-12-31"}
    if kind == "text":
        return {"type": "text", "vocab": draw(st.sampled_from(_VOCABS)), "null_rate": null_rate}
    if kind == "pattern":
        return {"type": "text", "pattern": draw(st.sampled_from([r"X-\d{4}", r"[A-F]{3}", r"\L\l\d"]))}
    return {"type": kind}


@st.composite
def spec_data(draw: Any) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for t in range(draw(st.integers(1, 3))):
        cols = {f"c{i}": draw(column()) for i in range(draw(st.integers(1, 5)))}
        table: dict[str, Any] = {
            "rows": draw(st.integers(0 if t else 1, 300)),
            "primary_key": "id",
            "columns": {"id": {"type": "int"}, **cols},
        }
        if t and draw(st.booleans()):
            parent = f"t{draw(st.integers(0, t - 1))}"
            if tables[parent]["rows"]:
                table["columns"]["parent_id"] = {
                    "type": "int",
                    "foreign_key": f"{parent}.id",
                    "skew": draw(st.sampled_from([0, 1])),
                }
        tables[f"t{t}"] = table
    return {"seed": draw(st.integers(0, 2**32)), "tables": tables}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=spec_data())
def test_random_valid_specs_generate(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = parse_spec(data, "random.yaml")
    out = tmp_path_factory.mktemp("gen")
    result = generate(spec, out, workers=1)
    for name, table in spec.tables.items():
        assert result.rows[name] == table.rows
        assert pq.read_table(list(result.tables[name].files)).num_rows == table.rows


def _mutations(data: dict[str, Any]) -> list[tuple[str, Any]]:
    first = next(iter(data["tables"]))
    col = next(iter(data["tables"][first]["columns"]))
    return [
        ("rows", lambda d: d["tables"][first].__setitem__("rows", -1)),
        ("unknown key", lambda d: d["tables"][first]["columns"][col].__setitem__("colour", 1)),
        ("bad type", lambda d: d["tables"][first]["columns"][col].__setitem__("type", "integer")),
        (
            "dangling fk",
            lambda d: d["tables"][first]["columns"].__setitem__(
                "zz", {"type": "int", "foreign_key": "nope.id"}
            ),
        ),
        (
            "bad distribution",
            lambda d: d["tables"][first]["columns"].__setitem__(
                "zz", {"type": "float", "distribution": {"kind": "gaussian", "mean": 1, "std": 1}}
            ),
        ),
        (
            "probabilities",
            lambda d: d["tables"][first]["columns"].__setitem__(
                "zz", {"type": "category", "values": {"a": 0.7, "b": 0.7}}
            ),
        ),
        (
            "min > max",
            lambda d: d["tables"][first]["columns"].__setitem__("zz", {"type": "int", "min": 5, "max": 1}),
        ),
        ("no tables", lambda d: d.__setitem__("tables", {})),
        ("top-level typo", lambda d: d.__setitem__("sed", 3)),
    ]


@settings(max_examples=40, deadline=None)
@given(data=spec_data(), which=st.integers(0, 8))
def test_mutated_specs_raise_spec_error(data: dict[str, Any], which: int) -> None:
    broken = copy.deepcopy(data)
    name, mutate = _mutations(broken)[which]
    mutate(broken)
    with pytest.raises(SpecError) as info:
        parse_spec(broken, "broken.yaml")
    assert str(info.value).startswith("broken.yaml: "), name


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    data=_json | st.fixed_dictionaries({"tables": st.dictionaries(st.text(max_size=5), _json, max_size=2)})
)
def test_arbitrary_input_never_crashes_the_parser(data: Any) -> None:
    with contextlib.suppress(SpecError):  # SpecError is the documented outcome; anything else fails
        parse_spec(data, "fuzz.yaml")


def test_spec_file_round_trip(tmp_path: Path) -> None:
    import yaml

    from synthreg.generators.spec_io import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"tables": {"t": {"rows": 3, "columns": {"x": {"type": "int"}}}}}))
    assert load_spec(path).tables["t"].rows == 3
