"""Spec features of the engine, each checked by an independent reader (DuckDB / pyarrow)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from synthreg.errors import SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec

SPEC: dict[str, Any] = {
    "seed": 5,
    "tables": {
        "users": {
            "rows": 3000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "uid": {"type": "uuid"},
                "code": {"type": "text", "pattern": r"USR-[A-Z]{2}\d{4}", "unique": True},
                "badge": {"type": "int", "min": 10_000, "max": 99_999, "unique": True},
                "joined": {"type": "date", "start": "2021-01-01", "end": "2023-12-31"},
                "created_at": {"type": "datetime", "start": "2020-01-01", "end": "2024-06-30"},
                "phone": {"type": "text", "vocab": "phone"},
                "site": {"type": "text", "vocab": "url"},
                "street": {"type": "text", "vocab": "street_address", "locale": "de_DE"},
                "handle": {"type": "text", "vocab": "username"},
                "job": {"type": "text", "vocab": "job", "locale": "fr_FR"},
                "score": {
                    "type": "float",
                    "distribution": {"kind": "empirical", "quantiles": [0, 10, 12, 50]},
                },
            },
        },
        "orders": {
            "rows": 9000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "user_id": {"type": "int", "foreign_key": "users.id", "skew": 1.0},
                "quantity": {
                    "type": "int",
                    "distribution": {"kind": "poisson", "lam": 2},
                    "min": 1,
                    "max": 9,
                },
                "unit_price": {
                    "type": "float",
                    "distribution": {"kind": "uniform", "low": 1, "high": 50},
                    "decimals": 2,
                },
                "total": {"type": "float", "expr": "round(quantity * unit_price, 2)"},
                "big": {"type": "bool", "expr": "total > 100"},
                "ordered_at": {
                    "type": "datetime",
                    "start": "2020-01-01",
                    "end": "2024-12-31",
                    "after": "users.created_at",
                },
                "ship_day": {
                    "type": "date",
                    "start": "2020-01-01",
                    "end": "2025-03-31",
                    "after": "users.joined",
                },
            },
        },
        "payments": {
            "rows": 7000,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "order_id": {"type": "int", "foreign_key": "orders.id", "null_rate": 0.05},
                "paid_at": {
                    "type": "datetime",
                    "start": "2020-01-01",
                    "end": "2025-06-30",
                    "after": "orders.ordered_at",
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features")
    generate(parse_spec(SPEC, "features.yaml"), root, workers=2, chunk_rows=1000)
    return root / "tables"


def _sql(out: Path, query: str) -> Any:
    con = duckdb.connect()
    for name in ("users", "orders", "payments"):
        con.execute(f"create view {name} as select * from read_parquet('{out}/{name}/*.parquet')")
    return con.execute(query).fetchall()


def test_time_order_holds_for_every_row(out: Path) -> None:
    assert _sql(
        out,
        "select count(*) from orders o join users u on o.user_id = u.id where o.ordered_at < u.created_at",
    ) == [(0,)]
    assert _sql(
        out,
        "select count(*) from payments p join orders o on p.order_id = o.id where p.paid_at < o.ordered_at",
    ) == [(0,)]
    assert _sql(
        out, "select count(*) from orders o join users u on o.user_id = u.id where o.ship_day < u.joined"
    ) == [(0,)]
    # and still within the declared range
    assert _sql(out, "select min(paid_at) >= '2020-01-01', max(paid_at) <= '2025-06-30' from payments") == [
        (True, True)
    ]


def test_optional_parent_and_integrity(out: Path) -> None:
    nulls, orphans = _sql(
        out,
        "select count(*) filter (where order_id is null), "
        "count(*) filter (where order_id is not null and order_id not in "
        "(select id from orders)) from payments",
    )[0]
    assert 200 < nulls < 550 and orphans == 0


def test_unique_columns_and_uuids(out: Path) -> None:
    users = pq.read_table(out / "users").to_pydict()
    assert len(set(users["code"])) == 3000 and all(
        re.fullmatch(r"USR-[A-Z]{2}\d{4}", c) for c in users["code"]
    )
    assert (
        len(set(users["badge"])) == 3000 and min(users["badge"]) >= 10_000 and max(users["badge"]) <= 99_999
    )
    assert len(set(users["uid"])) == 3000 and all(uuid.UUID(u).version == 4 for u in users["uid"])


def test_semantic_text(out: Path) -> None:
    users = pq.read_table(out / "users").to_pydict()
    assert all(re.fullmatch(r"\+1-\d{3}-555-01\d{2}", p) for p in users["phone"])  # fictional 555-01xx
    assert all(u.startswith("https://www.") and u.endswith(".example/") for u in users["site"])
    assert all(re.fullmatch(r"\d+ \w+", s) for s in users["street"])
    assert all(re.fullmatch(r"[a-z]+_[a-z]+\d+", h) for h in users["handle"])
    assert len(set(users["job"])) > 10


def test_derived_columns_match_an_independent_computation(out: Path) -> None:
    orders = pq.read_table(out / "orders").to_pandas()
    expected = np.round(orders["quantity"] * orders["unit_price"], 2)
    assert np.allclose(orders["total"], expected)
    assert (orders["big"] == (orders["total"] > 100)).all()


def test_empirical_quantiles(out: Path) -> None:
    score = pq.read_table(out / "users").column("score").to_numpy()
    assert score.min() >= 0 and score.max() <= 50
    assert 0.30 < np.mean(score <= 10) < 0.37  # a third of the mass lies below the 1/3 quantile


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"orders.ordered_at": {"after": "customers.created_at"}}, "is not a column"),
        ({"payments.paid_at": {"after": "users.created_at"}}, "payments has no foreign key to users"),
        ({"orders.ordered_at": {"end": "2023-01-01"}}, "infeasible"),
        ({"orders.total": {"expr": "quantity * price"}}, "'price', which is not a column"),
        ({"orders.total": {"expr": "__import__('os')"}}, "only these functions are allowed"),
        ({"users.code": {"pattern": r"\q{3}"}}, "unknown escape"),
        ({"users.badge": {"max": 10_100}}, "cannot be unique in a space of 101 values"),
        ({"users.job": {"unique": True}}, "unique: true works on"),
    ],
)
def test_feature_errors(change: dict[str, dict[str, Any]], says: str) -> None:
    import copy

    data = copy.deepcopy(SPEC)
    for path, values in change.items():
        table, column = path.split(".")
        data["tables"][table]["columns"][column].update(values)
    with pytest.raises(SpecError, match=re.escape(says)):
        parse_spec(data, "features.yaml")


def test_unique_pattern_in_a_large_space_across_many_blocks(tmp_path: Path) -> None:
    """Regression: strata must come from the whole table, not the block (space >= 2**31)."""
    spec = parse_spec(
        {
            "seed": 1,
            "tables": {
                "t": {
                    "rows": 200_000,
                    "columns": {
                        "code": {"type": "text", "pattern": r"ACC-\d{10}", "unique": True},
                        "big": {"type": "int", "min": 0, "max": 10**12, "unique": True},
                    },
                }
            },
        },
        "u.yaml",
    )
    generate(spec, tmp_path, workers=2)
    t = pq.read_table(tmp_path / "tables/t").to_pydict()
    assert len(set(t["code"])) == 200_000 and len(set(t["big"])) == 200_000
    assert max(t["big"]) <= 10**12


def test_dates_cover_their_whole_range(tmp_path: Path) -> None:
    """Regression: the start day was never produced (times rounded up to midnight)."""
    spec = parse_spec(
        {
            "seed": 1,
            "tables": {
                "t": {
                    "rows": 30_000,
                    "columns": {"day": {"type": "date", "start": "2024-01-01", "end": "2024-01-03"}},
                }
            },
        },
        "d.yaml",
    )
    generate(spec, tmp_path)
    days = pq.read_table(tmp_path / "tables/t").column("day").to_pylist()
    counts = {d.isoformat(): days.count(d) for d in set(days)}
    assert sorted(counts) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert all(9_000 < c < 11_000 for c in counts.values())


def test_min_and_max_children_per_parent(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "seed": 2,
            "tables": {
                "p": {
                    "rows": 1000,
                    "primary_key": "id",
                    "columns": {
                        "id": {"type": "int"},
                        "t": {"type": "datetime", "start": "2020-01-01", "end": "2021-01-01"},
                    },
                },
                "c": {
                    "rows": 3500,
                    "primary_key": "id",
                    "columns": {
                        "id": {"type": "int"},
                        "pid": {"type": "int", "foreign_key": "p.id", "min_children": 2, "max_children": 5},
                        "t": {"type": "datetime", "start": "2020-01-01", "end": "2022-01-01", "after": "p.t"},
                    },
                },
            },
        },
        "c.yaml",
    )
    generate(spec, tmp_path, workers=2, chunk_rows=500)
    con = duckdb.connect()
    parents, children = f"{tmp_path}/tables/p/*.parquet", f"{tmp_path}/tables/c/*.parquet"
    low, high = con.execute(
        f"select min(n), max(n) from (select p.id, count(c.id) n from read_parquet('{parents}') p "
        f"left join read_parquet('{children}') c on c.pid = p.id group by p.id)"
    ).fetchone()
    assert low >= 2 and high <= 5


@pytest.mark.parametrize(
    ("children", "says"),
    [
        ({"min_children": 4}, "infeasible: 4 children for each of 1,000 parents needs 4,000 rows"),
        ({"max_children": 3}, "infeasible: 3,500 rows with at most 3 children"),
        ({"min_children": 3, "max_children": 2}, "min_children (3) > max_children (2)"),
    ],
)
def test_children_bounds_refused_when_infeasible(children: dict[str, int], says: str) -> None:
    data = {
        "tables": {
            "p": {"rows": 1000, "primary_key": "id", "columns": {"id": {"type": "int"}}},
            "c": {"rows": 3500, "columns": {"pid": {"type": "int", "foreign_key": "p.id", **children}}},
        }
    }
    with pytest.raises(SpecError, match=re.escape(says)):
        parse_spec(data, "c.yaml")


def test_fk_cache_never_serves_another_specs_keys() -> None:
    """Regression: the per-block FK cache was keyed by id(spec), which a new spec can reuse."""
    from synthreg.generators.columns import _fk_index_cached, fk_index

    def make(seed: int, parents: int) -> Any:
        return parse_spec(
            {
                "seed": seed,
                "tables": {
                    "p": {"rows": parents, "primary_key": "id", "columns": {"id": {"type": "int"}}},
                    "c": {"rows": 100, "columns": {"pid": {"type": "int", "foreign_key": "p.id"}}},
                },
            },
            "c.yaml",
        )

    idx = np.arange(0, 100, dtype=np.int64)
    for seed, parents in [(1, 50), (2, 50), (1, 7), (3, 1000)]:
        spec = make(seed, parents)  # the previous spec is freed: its address may come back
        assert np.array_equal(_fk_index_cached(spec, "c", "pid", idx), fk_index(spec, "c", "pid", idx))
        del spec
