"""Disabling rows: the plan, the cascade down the foreign keys and the derived files.

Counts are checked independently with DuckDB joins over the source Parquet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from synthreg.digest import TableHasher, combine_digests
from synthreg.errors import ConflictError, NotFoundError, UsageError
from synthreg.generators.engine import GenerationResult, generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, load_spec, parse_spec
from synthreg.registry.disable import DisableResult, plan_removal, table_parts, write_without

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ecommerce.yaml"
PARTS = 3
ROW_GROUP = 250
WHERE = "segment = 'enterprise' AND created_at < '2022-01-01'"


def _split(src: Path, dst: Path, parts: int) -> None:
    """Rewrite each table as ``parts`` part files with small row groups (digests do not change)."""
    for table_dir in sorted((src / "tables").iterdir()):
        table = pq.read_table(sorted(table_dir.glob("*.parquet")))
        out = dst / "tables" / table_dir.name
        out.mkdir(parents=True)
        size = -(-table.num_rows // parts)
        dict_columns = [f.name for f in table.schema if pa.types.is_dictionary(f.type)]
        for i in range(parts):
            chunk = table.slice(i * size, size)
            pq.write_table(
                chunk, out / f"part-{i:05d}.parquet", row_group_size=ROW_GROUP, use_dictionary=dict_columns
            )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Spec, GenerationResult]:
    """The e-commerce example at 2% scale (~7,400 rows), each table in 3 parts of 250-row groups."""
    spec = apply_overrides(load_spec(EXAMPLE), scale=0.02)
    root = tmp_path_factory.mktemp("ecommerce")
    made = generate(spec, root / "generated", workers=1)
    src = root / "v1"
    _split(root / "generated", src, PARTS)
    (src / "spec.yaml").write_text(spec.frozen_yaml())
    return src, spec, made


def _sql(src: Path, query: str) -> list[tuple[Any, ...]]:
    """Run ``query`` with one view per table of the version at ``src``."""
    con = duckdb.connect()
    for table_dir in sorted((src / "tables").iterdir()):
        con.execute(f"CREATE VIEW {table_dir.name} AS SELECT * FROM read_parquet('{table_dir}/*.parquet')")
    return con.execute(query).fetchall()


def _count(src: Path, query: str) -> int:
    return int(_sql(src, query)[0][0])


def _digest_of_files(files: list[Path]) -> str:
    """A table digest recomputed from scratch: the whole table read at once."""
    table = pq.read_table(files)
    hasher = TableHasher(table.schema)
    hasher.update(table)
    return hasher.hexdigest()


def _derive(src: Path, dst: Path, spec: Spec, table: str, **how: Any) -> DisableResult:
    return write_without(src, dst, spec, plan_removal(src, spec, table, **how))


def _assert_no_orphans(version: Path) -> None:
    for child, fk, parent, pk in [
        ("orders", "customer_id", "customers", "customer_id"),
        ("order_items", "order_id", "orders", "order_id"),
        ("order_items", "product_id", "products", "product_id"),
    ]:
        orphans = _count(
            version,
            f"SELECT count(*) FROM {child} c ANTI JOIN {parent} p ON c.{fk} = p.{pk} "
            f"WHERE c.{fk} IS NOT NULL",
        )
        assert orphans == 0, f"{child}.{fk} has {orphans} orphans"


# ---------------------------------------------------------------- by ids


def _customers_with_orders(src: Path, n: int) -> list[int]:
    rows = _sql(src, f"SELECT DISTINCT customer_id FROM orders ORDER BY customer_id LIMIT {n}")
    return [r[0] for r in rows]


def test_fixture_has_several_parts_and_the_engine_digests(
    dataset: tuple[Path, Spec, GenerationResult],
) -> None:
    src, spec, made = dataset
    for table in spec.tables:
        files = table_parts(src, table)
        assert len(files) == PARTS
        assert _digest_of_files(files) == made.tables[table].digest


def test_disable_customers_by_ids_cascades_to_orders_and_items(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, made = dataset
    ids = _customers_with_orders(src, 12)
    id_list = ", ".join(map(str, ids))
    lines = [f" {i}\n" for i in ids] + ["", "  "]  # as read from a file: strings, blank lines
    expect_orders = _count(src, f"SELECT count(*) FROM orders WHERE customer_id IN ({id_list})")
    expect_items = _count(
        src,
        "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) "
        f"WHERE o.customer_id IN ({id_list})",
    )
    assert expect_orders > len(ids) and expect_items > expect_orders

    plan = plan_removal(src, spec, "customers", ids=lines)
    assert sorted(plan) == ["customers", "order_items", "orders"]
    assert sorted(plan["customers"].to_pylist()) == ids
    result = write_without(src, tmp_path / "v2", spec, plan)

    assert result.removed == {
        "customers": len(ids),
        "products": 0,
        "orders": expect_orders,
        "order_items": expect_items,
    }
    assert result.kept == {t: made.rows[t] - result.removed[t] for t in spec.tables}
    out = tmp_path / "v2"
    assert _count(out, f"SELECT count(*) FROM customers WHERE customer_id IN ({id_list})") == 0
    assert _count(out, "SELECT count(*) FROM orders") == made.rows["orders"] - expect_orders
    _assert_no_orphans(out)


def test_rows_keep_their_order_and_schema(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, _ = dataset
    ids = _customers_with_orders(src, 5)
    result = _derive(src, tmp_path / "v2", spec, "customers", ids=ids)
    source = pq.read_table(table_parts(src, "orders"))
    expected = source.filter(pc.invert(pc.is_in(source["customer_id"], value_set=pa.array(ids))))
    assert pq.read_table(result.files["orders"]).equals(expected)
    for table in spec.tables:
        before = table_parts(src, table)
        assert [p.name for p in result.files[table]] == [p.name for p in before]
        for old, new in zip(before, result.files[table], strict=True):
            old_file, new_file = pq.ParquetFile(old), pq.ParquetFile(new)
            assert new_file.schema_arrow == old_file.schema_arrow  # dictionary types included
            assert new_file.metadata.num_row_groups <= old_file.metadata.num_row_groups
            groups = [new_file.metadata.row_group(i).num_rows for i in range(new_file.num_row_groups)]
            assert max(groups, default=0) <= ROW_GROUP


def test_untouched_tables_keep_their_digest_and_are_linked(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, made = dataset
    result = _derive(src, tmp_path / "v2", spec, "customers", ids=_customers_with_orders(src, 3))
    assert result.digests["products"] == made.tables["products"].digest
    for old, new in zip(table_parts(src, "products"), result.files["products"], strict=True):
        assert os.path.samefile(old, new)
    for table in ("customers", "orders", "order_items"):
        assert result.digests[table] != made.tables[table].digest


def test_content_digest_is_recomputable(dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path) -> None:
    src, spec, made = dataset
    result = _derive(src, tmp_path / "v2", spec, "customers", ids=_customers_with_orders(src, 4))
    recomputed = {
        t: _digest_of_files(sorted((tmp_path / "v2" / "tables" / t).glob("*.parquet"))) for t in spec.tables
    }
    assert recomputed == result.digests
    assert result.content_digest == combine_digests(recomputed)
    assert result.content_digest != made.content_digest


def test_disable_products_removes_items_but_keeps_orders(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, made = dataset
    plan = plan_removal(src, spec, "products", ids=["1", "2", "3"])
    assert sorted(plan) == ["order_items", "products"]
    result = write_without(src, tmp_path / "v2", spec, plan)
    expect_items = _count(src, "SELECT count(*) FROM order_items WHERE product_id IN (1, 2, 3)")
    assert expect_items > 0
    assert result.removed == {"customers": 0, "products": 3, "orders": 0, "order_items": expect_items}
    assert result.digests["orders"] == made.tables["orders"].digest
    _assert_no_orphans(tmp_path / "v2")


# ---------------------------------------------------------------- by where


def test_disable_by_where(dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path) -> None:
    src, spec, _ = dataset
    condition = "segment = 'enterprise' AND created_at < TIMESTAMP '2022-01-01'"
    expect = {
        "customers": _count(src, f"SELECT count(*) FROM customers WHERE {condition}"),
        "orders": _count(
            src, f"SELECT count(*) FROM orders o JOIN customers c USING (customer_id) WHERE c.{condition}"
        ),
        "order_items": _count(
            src,
            "SELECT count(*) FROM order_items i JOIN orders o USING (order_id) "
            f"JOIN customers c USING (customer_id) WHERE c.{condition}",
        ),
        "products": 0,
    }
    assert expect["customers"] > 0 and expect["order_items"] > 0
    result = _derive(src, tmp_path / "v2", spec, "customers", where=WHERE)
    assert result.removed == expect
    assert _count(tmp_path / "v2", f"SELECT count(*) FROM customers WHERE {condition}") == 0
    _assert_no_orphans(tmp_path / "v2")


def test_where_on_a_child_table_only_cascades_down(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, made = dataset
    expect_orders = _count(src, "SELECT count(*) FROM orders WHERE status = 'returned'")
    expect_items = _count(
        src, "SELECT count(*) FROM order_items JOIN orders USING (order_id) WHERE status = 'returned'"
    )
    result = _derive(src, tmp_path / "v2", spec, "orders", where="status = 'returned'")
    assert result.removed == {
        "customers": 0,
        "products": 0,
        "orders": expect_orders,
        "order_items": expect_items,
    }
    assert result.digests["customers"] == made.tables["customers"].digest


# ---------------------------------------------------------------- refusals


def test_removing_every_row_is_refused(dataset: tuple[Path, Spec, GenerationResult]) -> None:
    src, spec, _ = dataset
    with pytest.raises(ConflictError, match="would disable every row of customers: refused"):
        plan_removal(src, spec, "customers", where="customer_id >= 0 OR customer_id IS NULL")
    every = [str(r[0]) for r in _sql(src, "SELECT customer_id FROM customers")]
    with pytest.raises(ConflictError, match="every row of customers"):
        plan_removal(src, spec, "customers", ids=every)


def test_no_match_is_refused(dataset: tuple[Path, Spec, GenerationResult]) -> None:
    src, spec, _ = dataset
    with pytest.raises(UsageError, match="matches no rows: nothing to disable"):
        plan_removal(src, spec, "customers", where="segment = 'nobody'")
    with pytest.raises(UsageError, match="matches no rows: nothing to disable"):
        plan_removal(src, spec, "customers", ids=["", "  "])


def test_unknown_ids_are_refused_and_named(dataset: tuple[Path, Spec, GenerationResult]) -> None:
    src, spec, _ = dataset
    unknown = [str(10**9 + i) for i in range(8)]
    with pytest.raises(
        UsageError, match=r"8 of 9 ids are not in customers.customer_id: 1000000000, .*, \.\.\."
    ):
        plan_removal(src, spec, "customers", ids=["1", *unknown])


@pytest.mark.parametrize(
    ("table", "how", "error", "message"),
    [
        ("customers", {"ids": ["1", "x2", "3.5"]}, UsageError, r"2 ids are not integers.*'x2', '3.5'"),
        ("customers", {"ids": [str(2**64)]}, UsageError, r"out of range"),
        ("customers", {}, UsageError, r"exactly one of ids"),
        ("customers", {"ids": ["1"], "where": "segment = 'x'"}, UsageError, r"exactly one of ids"),
        ("customer", {"ids": ["1"]}, UsageError, r"no table named 'customer'; did you mean 'customers'"),
        ("customers", {"where": "segmnt = 'x'"}, UsageError, r"did you mean 'segment'"),
        ("customers", {"where": "customer_id >> 3"}, UsageError, r"position 13"),
    ],
)
def test_bad_requests_are_refused(
    dataset: tuple[Path, Spec, GenerationResult],
    table: str,
    how: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    src, spec, _ = dataset
    with pytest.raises(error, match=message):
        plan_removal(src, spec, table, **how)


def test_missing_parts_and_existing_destination(
    dataset: tuple[Path, Spec, GenerationResult], tmp_path: Path
) -> None:
    src, spec, _ = dataset
    with pytest.raises(NotFoundError, match="no parts of table customers"):
        plan_removal(tmp_path, spec, "customers", ids=["1"])
    plan = plan_removal(src, spec, "customers", ids=["1"])
    (tmp_path / "v2" / "tables").mkdir(parents=True)
    with pytest.raises(ConflictError, match="already exists"):
        write_without(src, tmp_path / "v2", spec, plan)


# ---------------------------------------------------------------- tables without a primary key

NO_KEY_SPEC = {
    "seed": 5,
    "tables": {
        "users": {
            "rows": 200,
            "primary_key": "user_id",
            "columns": {
                "user_id": {"type": "int"},
                "plan": {"type": "category", "values": ["free", "pro"]},
            },
        },
        "events": {
            "rows": 1500,
            "columns": {
                "user_id": {"type": "int", "foreign_key": "users.user_id"},
                "kind": {"type": "category", "values": ["click", "view", "buy"]},
                "value": {"type": "float", "distribution": {"kind": "normal", "mean": 0, "std": 1}},
            },
        },
    },
}


def test_children_without_a_primary_key_are_removed_by_position(tmp_path: Path) -> None:
    spec = parse_spec(NO_KEY_SPEC, "t.yaml")
    generate(spec, tmp_path / "gen", workers=1)
    src = tmp_path / "v1"
    _split(tmp_path / "gen", src, PARTS)
    plan = plan_removal(src, spec, "users", where="plan = 'pro' AND user_id < 50")
    expect = _count(
        src, "SELECT count(*) FROM events JOIN users USING (user_id) WHERE plan = 'pro' AND user_id < 50"
    )
    assert len(plan["events"]) == expect > 0
    assert plan["events"].type == pa.int64()  # row positions
    result = write_without(src, tmp_path / "v2", spec, plan)
    source = pq.read_table(table_parts(src, "events"))
    keep = pc.invert(pc.is_in(source["user_id"], value_set=plan["users"].cast(source["user_id"].type)))
    assert pq.read_table(result.files["events"]).equals(source.filter(keep))


def test_a_table_without_a_primary_key_can_be_filtered_but_not_named_by_ids(tmp_path: Path) -> None:
    spec = parse_spec(NO_KEY_SPEC, "t.yaml")
    generate(spec, tmp_path / "gen", workers=1)
    src = tmp_path / "v1"
    _split(tmp_path / "gen", src, PARTS)
    with pytest.raises(
        UsageError, match="events has no primary key, so ids cannot name its rows: use --where"
    ):
        plan_removal(src, spec, "events", ids=["1"])
    expect = _count(src, "SELECT count(*) FROM events WHERE kind = 'buy' AND value > 1")
    result = _derive(src, tmp_path / "v2", spec, "events", where="kind = 'buy' AND value > 1")
    assert result.removed == {"users": 0, "events": expect}
    assert _count(tmp_path / "v2", "SELECT count(*) FROM events WHERE kind = 'buy' AND value > 1") == 0
