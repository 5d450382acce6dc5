"""``registry disable`` end to end: derived versions keep referential integrity and rebuild exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    reg = synthreg.init(tmp_path_factory.mktemp("shop") / "ws")
    reg.create("shop", spec=EXAMPLES / "ecommerce.yaml", scale=0.02)
    return reg.root


def _count(root: Path, ref_dir: str, sql: str) -> int:
    con = duckdb.connect()
    for t in ("customers", "orders", "order_items", "products"):
        con.execute(f"create view {t} as select * from read_parquet('{root}/{ref_dir}/tables/{t}/*.parquet')")
    return int(con.execute(sql).fetchone()[0])


def test_disable_by_ids_cascades_to_children(shop: Path, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# customers who asked to be forgotten\n1\n2\n3\n")
    v1 = "data/shop/v1"
    orders = _count(shop, v1, "select count(*) from orders where customer_id in (1, 2, 3)")
    items = _count(
        shop,
        v1,
        "select count(*) from order_items where order_id in "
        "(select order_id from orders where customer_id in (1, 2, 3))",
    )
    result = cli(
        shop, "disable", "shop@v1", "--table", "customers", "--ids", str(ids), "--reason", "GDPR", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["derived_from"] == 1 and data["status"] == "approved"
    assert data["details"]["removed"] == {
        "customers": 3,
        "orders": orders,
        "order_items": items,
        "products": 0,
    }
    new = data["path"]
    assert (
        _count(
            shop,
            new,
            "select count(*) from orders o left join customers c using (customer_id) "
            "where c.customer_id is null",
        )
        == 0
    )
    assert (
        _count(
            shop,
            new,
            "select count(*) from order_items i left join orders o using (order_id) where o.order_id is null",
        )
        == 0
    )
    assert _count(shop, v1, "select count(*) from customers where customer_id in (1, 2, 3)") == 3  # v1 intact
    reg = synthreg.open(shop)
    assert reg.verify(f"shop@v{data['version']}", rebuild=True).ok
    lineage = reg.lineage(f"shop@v{data['version']}")
    assert lineage["parents"]["derived_from"] == 1


def test_disable_by_predicate_then_again_then_rollback(shop: Path) -> None:
    reg = synthreg.open(shop)
    head = reg.show("shop")["version"]
    first = cli(
        shop,
        "disable",
        "shop",
        "--table",
        "orders",
        "--where",
        "status = 'cancelled'",
        "--reason",
        "cancelled orders are noise",
        "--json",
    )
    assert first.exit_code == 0, first.output
    v = json.loads(first.stdout)["version"]
    assert _count(shop, f"data/shop/v{v}", "select count(*) from orders where status = 'cancelled'") == 0
    second = cli(
        shop,
        "disable",
        f"shop@v{v}",
        "--table",
        "products",
        "--where",
        "unit_price > 200",
        "--reason",
        "luxury items out of scope",
        "--json",
    )
    assert second.exit_code == 0, second.output
    v2 = json.loads(second.stdout)["version"]
    assert reg.verify(f"shop@v{v2}", rebuild=True).ok  # two steps replayed from the spec
    back = reg.rollback("shop", head, reason="keep everything")
    assert back.content_digest == reg.show(f"shop@v{head}")["content_digest"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (
            ["--table", "customers", "--where", "customer_id > 0", "--reason", "x"],
            5,
            "would disable every row",
        ),
        (["--table", "customers", "--where", "customer_id < 0", "--reason", "x"], 2, "matches no rows"),
        (["--table", "customers", "--where", "segment = = 'x'", "--reason", "x"], 2, "at position"),
        (["--table", "customers", "--where", "sgment = 'x'", "--reason", "x"], 2, "did you mean 'segment'"),
        (["--table", "customers", "--where", "segment = 'x'"], 2, "needs --reason"),
        (["--where", "segment = 'x'", "--reason", "x"], 2, "name the table with --table"),
        (["--table", "clients", "--where", "a = 1", "--reason", "x"], 2, "is not a table"),
        (["--table", "customers", "--reason", "x"], 2, "exactly one of --ids FILE or --where"),
        (["--table", "customers", "--ids", "/nonexistent", "--reason", "x"], 2, "no such file"),
    ],
)
def test_bad_disables_change_nothing(shop: Path, args: list[str], code: int, says: str) -> None:
    before = [v["version"] for v in synthreg.open(shop).show("shop@v1")["versions"]]
    result = cli(shop, "disable", "shop@v1", *args)
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert [v["version"] for v in synthreg.open(shop).show("shop@v1")["versions"]] == before
