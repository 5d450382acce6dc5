"""Constraints hold over the whole table (not per chunk); noise is applied and recorded."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from synthreg.errors import ConstraintError, SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec

# 200 employees x 30 days = 6000 (employee, day) groups; 20,000 shifts of 1-6 hours average
# ~9 hours per group: the 8-hour limit binds in most groups.
BASE: dict[str, Any] = {
    "seed": 11,
    "tables": {
        "employees": {
            "rows": 200,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "name": {"type": "text", "vocab": "full_name"},
            },
        },
        "shifts": {
            "rows": 20_000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "employee_id": {"type": "int", "foreign_key": "employees.id"},
                "work_date": {"type": "date", "start": "2024-01-01", "end": "2024-01-30"},
                "hours": {
                    "type": "float",
                    "distribution": {"kind": "uniform", "low": 1, "high": 6},
                    "decimals": 2,
                },
                "start_at": {"type": "datetime", "start": "2024-01-01", "end": "2024-01-30"},
                "end_at": {"type": "datetime", "start": "2024-01-01", "end": "2024-01-31"},
            },
        },
    },
}


def _spec(**table_changes: Any) -> Any:
    data = copy.deepcopy(BASE)
    data["tables"]["shifts"].update(table_changes)
    return parse_spec(data, "shifts.yaml")


def _limit(action: str, limit: float = 8) -> list[dict[str, Any]]:
    return [
        {
            "kind": "sum_limit",
            "group_by": ["employee_id", "work_date"],
            "column": "hours",
            "limit": limit,
            "action": action,
        }
    ]


def test_redistribute_keeps_the_column_total_when_there_is_room(tmp_path: Path) -> None:
    free = generate(_spec(), tmp_path / "free")
    assert _max_group_sum(tmp_path / "free/tables/shifts") > 14  # a few groups exceed 14 hours
    result = generate(_spec(constraints=_limit("redistribute", 14)), tmp_path / "r", workers=2)
    assert _max_group_sum(tmp_path / "r/tables/shifts") <= 14 + 1e-9
    before = pq.read_table(tmp_path / "free/tables/shifts").column("hours").to_numpy().sum()
    after = pq.read_table(tmp_path / "r/tables/shifts").column("hours").to_numpy().sum()
    # moved, not lost: only rounding down to 2 decimals (< 0.01 on each of 20,000 rows) goes
    assert before - 200 <= after <= before
    assert result.content_digest != free.content_digest


def _max_group_sum(path: Path) -> float:
    con = duckdb.connect()
    return con.execute(
        f"select max(s) from (select sum(hours) s from read_parquet('{path}/*.parquet') "
        "group by employee_id, work_date)"
    ).fetchone()[0]


@pytest.mark.parametrize("action", ["cap", "redistribute", "drop"])
def test_sum_limit_holds_over_the_whole_table(tmp_path: Path, action: str) -> None:
    unconstrained = generate(_spec(), tmp_path / "free", chunk_rows=1000, workers=2)
    assert _max_group_sum(tmp_path / "free/tables/shifts") > 8  # the limit binds
    result = generate(_spec(constraints=_limit(action)), tmp_path / "c", chunk_rows=1000, workers=2)
    assert _max_group_sum(tmp_path / "c/tables/shifts") <= 8 + 1e-9
    assert result.params["constraints"]["shifts"]["sum_limit#0"]["rows_changed"] > 0
    hours = pq.read_table(tmp_path / "c/tables/shifts").column("hours").to_numpy()
    free = pq.read_table(tmp_path / "free/tables/shifts").column("hours").to_numpy()
    if action == "drop":
        assert result.rows["shifts"] < 20_000 and (hours >= 1).all()
    else:
        assert len(hours) == 20_000
    if action == "redistribute":  # no room to keep the total: every group ends at the limit
        assert hours.sum() < free.sum()
    assert unconstrained.content_digest != result.content_digest


def test_constrained_digest_is_independent_of_layout(tmp_path: Path) -> None:
    a = generate(_spec(constraints=_limit("cap")), tmp_path / "a", chunk_rows=700, workers=1)
    b = generate(_spec(constraints=_limit("cap")), tmp_path / "b", chunk_rows=1 << 20, workers=2)
    assert a.content_digest == b.content_digest


def test_sum_limit_error_action_refuses(tmp_path: Path) -> None:
    with pytest.raises(ConstraintError, match=r"groups of employee_id, work_date exceed sum\(hours\) <= 8"):
        generate(_spec(constraints=_limit("error")), tmp_path)


def test_infeasible_sum_limit_is_refused_before_generating() -> None:
    data = copy.deepcopy(BASE)
    data["tables"]["shifts"]["rows"] = 60_000
    data["tables"]["shifts"]["columns"]["hours"]["min"] = 1
    data["tables"]["shifts"]["constraints"] = _limit("cap")
    data["tables"]["shifts"]["constraints"][0]["limit"] = 8
    data["tables"]["employees"]["rows"] = 200  # 6000 groups x 8 = 48,000 < 60,000 x 1
    with pytest.raises(SpecError, match=r"tables\.shifts\.constraints\.0: infeasible: 60,000 rows"):
        parse_spec(data, "shifts.yaml")


def test_inequality_every_row(tmp_path: Path) -> None:
    rule = [{"kind": "inequality", "left": "end_at", "op": ">=", "right": "start_at", "action": "cap"}]
    generate(_spec(constraints=rule), tmp_path, chunk_rows=999)
    shifts = pq.read_table(tmp_path / "tables/shifts").to_pandas()
    assert (shifts["end_at"] >= shifts["start_at"]).all()


def test_max_rows_and_unique_combination_drop(tmp_path: Path) -> None:
    rules = [
        {
            "kind": "max_rows_per_group",
            "group_by": ["employee_id", "work_date"],
            "limit": 2,
            "action": "drop",
        },
        {"kind": "unique_combination", "columns": ["employee_id", "work_date", "hours"], "action": "drop"},
    ]
    generate(_spec(constraints=rules), tmp_path, workers=2)
    con = duckdb.connect()
    worst = con.execute(
        f"select max(c) from (select count(*) c from read_parquet('{tmp_path}/tables/shifts/*.parquet') "
        "group by employee_id, work_date)"
    ).fetchone()[0]
    assert worst <= 2


def test_drop_refused_on_a_parent_table() -> None:
    data = copy.deepcopy(BASE)
    data["tables"]["employees"]["constraints"] = [
        {"kind": "unique_combination", "columns": ["name"], "action": "drop"}
    ]
    with pytest.raises(SpecError, match="drop would orphan rows of shifts"):
        parse_spec(data, "shifts.yaml")


def test_noise_is_applied_and_recorded(tmp_path: Path) -> None:
    noise = [
        {"kind": "outliers", "column": "hours", "rate": 0.01, "factor": 20},
        {"kind": "drift", "column": "hours", "over": "work_date", "change": 0.5},
        {"kind": "duplicates", "rate": 0.05},
    ]
    clean = generate(_spec(), tmp_path / "clean")
    noisy = generate(_spec(noise=noise), tmp_path / "noisy", workers=2, chunk_rows=3000)
    df = pq.read_table(tmp_path / "noisy/tables/shifts").to_pandas()
    assert 100 < (df["hours"] > 20).sum() < 400  # ~1% of 20,000 blown up x20
    early = df[df["work_date"] <= df["work_date"].min() + np.timedelta64(5, "D")]["hours"]
    late = df[df["work_date"] >= df["work_date"].max() - np.timedelta64(5, "D")]["hours"]
    assert late[late < 20].mean() > early[early < 20].mean() * 1.2  # drifted up 50% over the month
    dup = df.duplicated(subset=["employee_id", "work_date", "start_at"]).sum()
    assert 500 < dup < 1500 and df["id"].is_unique
    assert noisy.params["noise"]["shifts"][0]["kind"] == "outliers"
    assert clean.content_digest != noisy.content_digest


def test_typos_swap_adjacent_letters(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["tables"]["employees"]["rows"] = 2000
    data["tables"]["employees"]["noise"] = [{"kind": "typos", "column": "name", "rate": 0.2}]
    generate(parse_spec(data, "t.yaml"), tmp_path)
    names = pq.read_table(tmp_path / "tables/employees").column("name").to_pylist()
    assert all(re.fullmatch(r"[A-Za-z ]+", n) for n in names)
    words = {w for n in names for w in n.split()}
    from synthreg.generators.vocab import pool

    known = {w for n in pool("full_name").to_pylist() for w in n.split()}
    assert 0.05 < sum(any(w not in known for w in n.split()) for n in names) / len(names) < 0.25
    assert words - known


@pytest.mark.parametrize(
    ("noise", "says"),
    [
        ({"kind": "outliers", "column": "start_at", "rate": 0.1}, "needs a numeric column"),
        ({"kind": "typos", "column": "hours", "rate": 0.1}, "typos need a text column"),
        ({"kind": "drift", "column": "hours", "over": "name", "change": 0.2}, "no column name in shifts"),
        ({"kind": "outliers", "column": "id", "rate": 0.1}, "which keys"),
        ({"kind": "typo", "column": "id", "rate": 0.1}, "did you mean 'typos'"),
    ],
)
def test_noise_errors(noise: dict[str, Any], says: str) -> None:
    with pytest.raises(SpecError, match=re.escape(says)):
        _spec(noise=[noise])


def test_group_ids_number_groups_as_a_sort_of_the_keys_does() -> None:
    """``group_ids`` (dense ranks combined in mixed radix) gives exactly the numbers of
    ``np.unique(keys, axis=0)``: the group order decides the rounding of the float sums."""
    import pyarrow as pa

    from synthreg.generators.constraints import _key, group_ids

    rng = np.random.default_rng(5)
    n = 5000
    words = np.array(["b", "a", "c", None, "dd"], dtype=object)
    data = pa.table(
        {
            "near": pa.array(rng.integers(-3, 40, n)),  # ranked through a table of the span
            "far": pa.array(rng.integers(-(2**62), 2**62, n) // 2**40 * 2**40),  # by a hash
            "f": pa.array(np.round(rng.normal(0, 2, n), 1)),
            "s": pa.array(words[rng.integers(0, 5, n)], type=pa.string()),
            "d": pa.array(words[rng.integers(0, 3, n)], type=pa.string()).dictionary_encode(),
            "b": pa.array(rng.random(n) < 0.5),
        }
    )
    for columns in (["near"], ["far"], ["f", "s"], ["near", "far", "d", "b"], ["s", "f", "near", "far"]):
        stacked = np.stack([_key(data.column(c)) for c in columns], axis=1)
        expected = np.unique(stacked, axis=0, return_inverse=True)[1].reshape(-1)
        assert np.array_equal(group_ids(data, columns), expected), columns
    assert len(group_ids(data.slice(0, 0), ["near", "s"])) == 0
