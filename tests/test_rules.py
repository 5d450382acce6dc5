"""The suite's whole-table checks catch what breaks the spec's cross-row declarations."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec
from synthreg.validators import validate_tables

SPEC: dict[str, Any] = {
    "seed": 4,
    "tables": {
        "users": {
            "rows": 2000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "plan": {"type": "category", "values": {"free": 0.7, "pro": 0.3}},
                "code": {"type": "text", "pattern": r"U-\d{5}"},
                "joined": {"type": "datetime", "start": "2022-01-01", "end": "2023-12-31"},
            },
        },
        "shifts": {
            "rows": 6000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "user_id": {"type": "int", "foreign_key": "users.id"},
                "day": {"type": "date", "start": "2024-01-01", "end": "2024-01-10"},
                "hours": {
                    "type": "float",
                    "distribution": {"kind": "uniform", "low": 1, "high": 4},
                    "decimals": 2,
                },
                "start_at": {
                    "type": "datetime",
                    "start": "2024-01-01",
                    "end": "2024-01-10",
                    "after": "users.joined",
                },
                "end_at": {"type": "datetime", "start": "2024-01-01", "end": "2024-01-11"},
            },
            "constraints": [
                {
                    "kind": "sum_limit",
                    "group_by": ["user_id", "day"],
                    "column": "hours",
                    "limit": 6,
                    "action": "cap",
                },
                {"kind": "inequality", "left": "end_at", "op": ">=", "right": "start_at", "action": "cap"},
            ],
        },
    },
}


@pytest.fixture
def data(tmp_path: Path) -> tuple[Any, Path]:
    spec = parse_spec(copy.deepcopy(SPEC), "rules.yaml")
    generate(spec, tmp_path, workers=1)
    return spec, tmp_path / "tables"


def _rewrite(tables: Path, table: str, column: str, change: Any) -> None:
    path = sorted((tables / table).glob("part-*.parquet"))[0]
    t = pq.read_table(path)
    i = t.schema.get_field_index(column)
    pq.write_table(t.set_column(i, column, change(t.column(column))), path)


def _failed(spec: Any, tables: Path) -> set[tuple[str, str | None]]:
    return {(c.check, c.column) for c in validate_tables(spec, tables).checks if not c.success}


def test_clean_data_passes_the_cross_row_checks(data: tuple[Any, Path]) -> None:
    spec, tables = data
    result = validate_tables(spec, tables)
    names = {c.check for c in result.checks}
    assert {
        "time_order",
        "sum_limit",
        "inequality",
        "category_proportions",
        "expect_column_values_to_match_regex",
    } <= names
    assert result.failed == 0


def test_time_order_violation_is_caught(data: tuple[Any, Path]) -> None:
    spec, tables = data
    _rewrite(tables, "shifts", "start_at", lambda c: pc.subtract(c.cast(pa.int64()), 10**12).cast(c.type))
    assert ("time_order", "start_at") in _failed(spec, tables)


def test_sum_limit_and_inequality_violations_are_caught(data: tuple[Any, Path]) -> None:
    spec, tables = data
    _rewrite(tables, "shifts", "hours", lambda c: pc.multiply(c, 5.0))
    _rewrite(tables, "shifts", "end_at", lambda c: pc.subtract(c.cast(pa.int64()), 10**11).cast(c.type))
    failed = _failed(spec, tables)
    assert ("sum_limit", "hours") in failed and ("inequality", "end_at") in failed


def test_proportions_and_pattern_violations_are_caught(data: tuple[Any, Path]) -> None:
    spec, tables = data
    _rewrite(tables, "users", "plan", lambda c: pa.array(np.where(np.arange(len(c)) < 1900, "pro", "free")))
    _rewrite(tables, "users", "code", lambda c: pa.array(["X" + v[1:] for v in c.to_pylist()]))
    failed = _failed(spec, tables)
    assert ("category_proportions", "plan") in failed
    assert ("expect_column_values_to_match_regex", "code") in failed
