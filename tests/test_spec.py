"""Spec parsing: valid specs load; each bad input names its location and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from synthreg.errors import NotFoundError, SpecError
from synthreg.generators.spec import DISTRIBUTIONS
from synthreg.generators.spec_io import apply_overrides, load_spec, parse_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _one_column(column: dict[str, Any], rows: int = 10) -> dict[str, Any]:
    return {"tables": {"t": {"rows": rows, "columns": {"x": column}}}}


@pytest.mark.parametrize("name", ["fitness.yaml", "ecommerce.yaml"])
def test_examples_load(name: str) -> None:
    spec = load_spec(EXAMPLES / name)
    assert spec.total_rows > 0
    # parents come before children
    order = spec.table_order()
    for table in order:
        for parent, _ in spec.tables[table].foreign_keys().values():
            assert order.index(parent) < order.index(table)


@pytest.mark.parametrize(
    ("data", "where", "says"),
    [
        (
            _one_column({"type": "int", "distrbution": "normal"}),
            "tables.t.columns.x.distrbution",
            "did you mean 'distribution'",
        ),
        (
            _one_column({"type": "int", "distribution": {"kind": "normall", "mean": 1, "std": 1}}),
            "tables.t.columns.x.distribution",
            "did you mean 'normal'",
        ),
        (
            _one_column({"type": "int", "distribution": {"kind": "normal", "mean": 1}}),
            "tables.t.columns.x.distribution",
            "needs std",
        ),
        (
            _one_column({"type": "category", "values": {"a": 0.5, "b": 0.6}}),
            "tables.t.columns.x",
            "sum to 1.1",
        ),
        (_one_column({"type": "category", "values": {"a": -0.5, "b": 1.5}}), "tables.t.columns.x", ">= 0"),
        (
            _one_column({"type": "int", "foreign_key": "nope.id"}),
            "tables.t.columns.x.foreign_key",
            "table 'nope' does not exist",
        ),
        (_one_column({"type": "int", "min": 5, "max": 1}), "tables.t.columns.x", "min (5.0) > max (1.0)"),
        (
            _one_column({"type": "text", "vocab": "frist_name"}),
            "tables.t.columns.x",
            "did you mean 'first_name'",
        ),
        (_one_column({"type": "intt"}), "tables.t.columns.x.type", "did you mean 'int'"),
        (_one_column({"type": "int"}, rows=-5), "tables.t.rows", "greater than or equal to 0"),
        (
            _one_column({"type": "datetime", "start": "2024-01-02", "end": "2024-01-01"}),
            "tables.t.columns.x",
            "after end",
        ),
        (
            {"tables": {"t": {"rows": 1, "columns": {"x": {"type": "int"}}}}, "seeed": 1},
            "seeed",
            "did you mean 'seed'",
        ),
    ],
)
def test_bad_specs_name_location_and_fix(data: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(data, "bad.yaml")
    message = str(info.value)
    assert message.startswith("bad.yaml: ")
    assert f": {where}: " in message
    assert says in message


def test_foreign_key_must_target_primary_key() -> None:
    data = {
        "tables": {
            "a": {"rows": 3, "columns": {"id": {"type": "int"}}},
            "b": {"rows": 3, "columns": {"a_id": {"type": "int", "foreign_key": "a.id"}}},
        }
    }
    with pytest.raises(SpecError, match=r"tables\.b\.columns\.a_id\.foreign_key: .*declare primary_key: id"):
        parse_spec(data, "s.yaml")


def test_cycle_is_refused() -> None:
    data = {
        "tables": {
            "a": {
                "rows": 3,
                "primary_key": "id",
                "columns": {"id": {"type": "int"}, "b_id": {"type": "int", "foreign_key": "b.id"}},
            },
            "b": {
                "rows": 3,
                "primary_key": "id",
                "columns": {"id": {"type": "int"}, "a_id": {"type": "int", "foreign_key": "a.id"}},
            },
        }
    }
    with pytest.raises(SpecError, match="cycle"):
        parse_spec(data, "s.yaml")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tables:\n  t: {rows: 1\n  x: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: line \d+, column \d+: invalid YAML"):
        load_spec(path)


def test_overrides_refuse_unknown_table_and_negative_rows() -> None:
    spec = load_spec(EXAMPLES / "fitness.yaml")
    with pytest.raises(SpecError, match="does not have; did you mean 'users'"):
        apply_overrides(spec, rows={"user": 5})
    with pytest.raises(SpecError, match="rows must be >= 0"):
        apply_overrides(spec, rows={"users": -5})
    assert apply_overrides(spec, seed=9, rows={"users": 5}).tables["users"].rows == 5


def test_frozen_yaml_round_trips() -> None:
    spec = load_spec(EXAMPLES / "ecommerce.yaml")
    again = parse_spec(yaml.safe_load(spec.frozen_yaml()))
    assert again == spec
    assert again.sha256() == spec.sha256()


_numeric = st.sampled_from(["normal", "uniform", "exponential", "gamma", "poisson", "lognormal"])
_params = {
    "normal": {"mean": 10, "std": 2},
    "uniform": {},
    "exponential": {"scale": 3},
    "gamma": {"shape": 2, "scale": 2},
    "poisson": {"lam": 4},
    "lognormal": {"mean": 1, "sigma": 0.5},
}


@settings(max_examples=40, deadline=None)
@given(
    kind=_numeric,
    lo=st.integers(-100, 100),
    width=st.integers(0, 100),
    typ=st.sampled_from(["int", "float"]),
    rows=st.integers(0, 50),
)
def test_random_valid_numeric_columns_parse(kind: str, lo: int, width: int, typ: str, rows: int) -> None:
    column = {"type": typ, "distribution": {"kind": kind, **_params[kind]}, "min": lo, "max": lo + width}
    spec = parse_spec(_one_column(column, rows))
    assert spec.tables["t"].columns["x"].distribution.kind == kind  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None)
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=12))
def test_random_distribution_names_are_known_or_refused(name: str) -> None:
    column = {"type": "float", "distribution": {"kind": name}}
    if name in DISTRIBUTIONS:
        return
    with pytest.raises(SpecError, match="unknown distribution"):
        parse_spec(_one_column(column))
