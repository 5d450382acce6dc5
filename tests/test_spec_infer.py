"""``registry spec infer`` and ``create --like``: a spec inferred from small real files.

The files are written here by pandas/pyarrow, sqlite3 and DuckDB: customers and orders with a
foreign key, dates in parent-before-child order, categories (one of them rare), skewed numbers,
nulls, codes with a shape, and unique free text that must never reach the spec.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from synthreg.cli.app import app
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec

runner = CliRunner()
RARE = "Zanzibar-VIP"  # 3 of 400 customers: under max(5 rows, 1%)
SECRET = "my own secret note"  # one order's free text


def _tables() -> dict[str, pa.Table]:
    rng = np.random.default_rng(7)
    n, m = 400, 1600
    signed = np.datetime64("2023-01-01T00:00:00") + rng.integers(0, 365 * 86400, n).astype("timedelta64[s]")
    segment = rng.choice(["retail", "wholesale", "online"], n, p=[0.6, 0.3, 0.1]).astype(object)
    segment[:3] = RARE
    customers = pa.table(
        {
            "customer_id": np.arange(1, n + 1),
            "segment": segment,
            "age": np.clip(rng.normal(40, 12, n).round(), 18, 90).astype(np.int64),
            "signed_up_at": pa.array(signed, pa.timestamp("s")),
            "code": [f"CU-{x:05d}" for x in rng.permutation(90000)[:n] + 10000],
            "vip": rng.random(n) < 0.2,
        }
    )
    parent = (rng.random(m) ** 2 * n).astype(np.int64)  # popular customers
    ordered = signed[parent] + rng.integers(0, 60 * 86400, m).astype("timedelta64[s]")
    amount = np.round(rng.lognormal(3, 0.9, m), 2)
    status = rng.choice(["paid", "shipped", "refunded"], m, p=[0.5, 0.4, 0.1])
    note = [f"order note {i} about parcel {rng.integers(0, 10**6)} {'x' * (i % 7)}" for i in range(m)]
    note[0] = SECRET
    orders = pa.table(
        {
            "order_id": np.arange(1, m + 1),
            "customer_id": parent + 1,
            "amount": pa.array(amount, mask=rng.random(m) < 0.1),
            "status": status,
            "ordered_at": pa.array(ordered, pa.timestamp("s")),
            "note": note,
        }
    )
    return {"customers": customers, "orders": orders}


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same two tables as Parquet files, CSV files, a SQLite and a DuckDB database."""
    root = tmp_path_factory.mktemp("real")
    tables = _tables()
    out: dict[str, Any] = {"tables": tables, "parquet": [], "csv": []}
    for name, table in tables.items():
        pq.write_table(table, root / f"{name}.parquet")
        table.to_pandas().to_csv(root / f"{name}.csv", index=False)
        out["parquet"].append(root / f"{name}.parquet")
        out["csv"].append(root / f"{name}.csv")
    out["sqlite"] = root / "shop.sqlite"
    db = sqlite3.connect(out["sqlite"])
    for name, table in tables.items():
        table.to_pandas().assign(
            **{c: table[c].to_pandas().astype(str) for c in table.column_names if "_at" in c}
        ).to_sql(name, db, index=False)
    db.close()
    out["duckdb"] = root / "shop.duckdb"
    con = duckdb.connect(str(out["duckdb"]))
    for name, table in tables.items():
        con.register("t", table)
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM t")
        con.unregister("t")
    con.close()
    return out


def _infer(*args: Any) -> tuple[Any, str]:
    result = runner.invoke(app, ["spec", "infer", *map(str, args)])
    assert result.exit_code == 0, result.output
    return parse_spec(yaml.safe_load(result.stdout), "inferred.yaml"), result.stdout


def test_parquet_infers_types_keys_time_order_and_privacy(real: dict[str, Any]) -> None:
    spec, text = _infer(*real["parquet"])
    customers, orders = spec.tables["customers"], spec.tables["orders"]
    assert (customers.rows, orders.rows) == (400, 1600)
    assert (customers.primary_key, orders.primary_key) == ("customer_id", "order_id")
    assert orders.columns["customer_id"].foreign_key == "customers.customer_id"
    assert orders.columns["customer_id"].skew > 0.5  # popular customers
    assert orders.columns["ordered_at"].after == "customers.signed_up_at"
    assert set(customers.columns["segment"].categories) == {"retail", "wholesale", "online"}
    assert orders.columns["amount"].distribution.kind == "empirical"
    assert orders.columns["amount"].decimals == 2
    assert 0.07 < orders.columns["amount"].null_rate < 0.13
    assert customers.columns["code"].pattern == r"CU-\d{5}" and customers.columns["code"].unique
    assert customers.columns["vip"].type == "bool"
    assert customers.columns["signed_up_at"].start.year == 2023
    assert RARE not in text and SECRET not in text and "secret" not in text
    note = orders.columns["note"]  # free text: only tokens seen in >= 16 rows (1% of 1,600)
    assert set(note.words) == {"order", "note", "about", "parcel", *("x" * k for k in range(1, 7))}
    assert "Privacy:" in spec.description and "max(5 rows, 1%" in spec.description


def test_generated_data_resembles_the_source(real: dict[str, Any], tmp_path: Path) -> None:
    spec, _ = _infer(*real["parquet"])
    generate(spec, tmp_path, workers=1)
    gen = {t: pq.read_table(tmp_path / "tables" / t) for t in ("customers", "orders")}
    src = real["tables"]
    for table, column in (("customers", "segment"), ("orders", "status")):
        want = _shares(src[table][column])
        got = _shares(gen[table][column])
        for value, share in got.items():
            assert abs(share - want[value]) < 0.05, (column, value)
    for table, column in (("orders", "amount"), ("customers", "age")):
        for q in (0.25, 0.5, 0.9):
            a = np.nanquantile(src[table][column].to_numpy(zero_copy_only=False).astype(float), q)
            b = np.nanquantile(gen[table][column].to_numpy(zero_copy_only=False).astype(float), q)
            assert abs(a - b) <= 0.12 * abs(a), (column, q, a, b)
    null_share = gen["orders"]["amount"].null_count / gen["orders"].num_rows
    assert abs(null_share - src["orders"]["amount"].null_count / 1600) < 0.04
    keys = set(gen["customers"]["customer_id"].to_pylist())
    assert set(gen["orders"]["customer_id"].to_pylist()) <= keys
    customers = gen["customers"].to_pydict()
    signed = dict(zip(customers["customer_id"], customers["signed_up_at"], strict=True))
    orders = gen["orders"].to_pydict()
    assert all(at >= signed[c] for c, at in zip(orders["customer_id"], orders["ordered_at"], strict=True))


def _shares(column: pa.ChunkedArray) -> dict[str, float]:
    counts = pc.value_counts(pc.cast(column, pa.string()))
    total = sum(c.as_py() for c in counts.field("counts"))
    return {
        v.as_py(): c.as_py() / total
        for v, c in zip(counts.field("values"), counts.field("counts"), strict=True)
    }


@pytest.mark.parametrize("kind", ["csv", "sqlite", "duckdb"])
def test_csv_sqlite_and_duckdb_give_the_same_structure(real: dict[str, Any], kind: str) -> None:
    paths = real[kind] if kind == "csv" else [real[kind]]
    spec, text = _infer(*paths)
    assert set(spec.tables) == {"customers", "orders"}
    assert spec.tables["orders"].columns["customer_id"].foreign_key == "customers.customer_id"
    assert spec.tables["orders"].columns["ordered_at"].after == "customers.signed_up_at"
    assert spec.tables["customers"].columns["segment"].type == "category"
    assert spec.tables["orders"].columns["amount"].null_rate > 0.05
    assert RARE not in text and SECRET not in text


def test_threshold_is_an_option(real: dict[str, Any]) -> None:
    spec, _ = _infer(*real["parquet"], "--min-count", "2", "--min-share", "0")
    assert RARE in spec.tables["customers"].columns["segment"].categories
    assert "max(2 rows, 0% " in spec.description
    for bad in (["--min-share", "1.5"], ["--min-count", "0"], ["--memory-limit", "1GB'; DROP"]):
        result = runner.invoke(app, ["spec", "infer", str(real["parquet"][0]), *bad])
        assert result.exit_code == 2 and bad[0] in result.stderr, result.output
    spec, _ = _infer(*real["parquet"], "--min-share", "0.5")
    segment = spec.tables["customers"].columns["segment"]
    assert segment.categories == ["retail"] and "rarer values (4" in segment.description


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.parquet", None, "no such file: check the path"),
        ("notes.json", b"{}", "unsupported format"),
        ("broken.parquet", b"PAR1 not really", "cannot be read as PARQUET"),
        ("empty.csv", b"a,b\n", "the table is empty"),
        ("ragged.csv", b"a,b\n1,2\n3,4,5\n6\n", "cannot be read as CSV"),
        ("binary.csv", b"\x00\x01\x02\xff\xfe", "cannot be read as CSV"),
    ],
)
def test_bad_input_exits_2_naming_the_path(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["spec", "infer", str(path)])
    assert result.exit_code == 2, result.output
    assert str(path) in result.stderr and expected in result.stderr
    assert result.stdout == ""


def test_create_like_registers_the_inferred_spec(real: dict[str, Any], workspace: Path) -> None:
    def create(*args: str) -> Any:
        return runner.invoke(app, ["-C", str(workspace), "create", "shop", *args])

    assert create("--like", str(real["parquet"][0]), "--spec", "x.yaml").exit_code == 2
    missing = create("--like", str(workspace / "nope.csv"))
    assert missing.exit_code == 2 and "nope.csv: no such file" in missing.stderr
    assert not (workspace / "data" / "shop").exists()
    result = create(*(a for p in real["parquet"] for a in ("--like", str(p))), "--json")
    assert result.exit_code == 0, result.output
    version = workspace / "data" / "shop" / "v1"
    frozen = yaml.safe_load((version / "spec.yaml").read_text())
    assert frozen["tables"]["orders"]["columns"]["customer_id"]["foreign_key"] == "customers.customer_id"
    card = (version / "datacard.md").read_text()
    assert "Privacy:" in card and RARE not in card


def test_words_column_generates_only_its_tokens(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "tables": {
                "t": {
                    "rows": 2000,
                    "columns": {
                        "note": {
                            "type": "text",
                            "words": {"a": 0.7, "b": 0.3},
                            "min_words": 2,
                            "max_words": 3,
                        }
                    },
                }
            }
        },
        "words.yaml",
    )
    generate(spec, tmp_path, workers=1)
    notes = pq.read_table(tmp_path / "tables" / "t")["note"].to_pylist()
    tokens = [w for n in notes for w in n.split(" ")]
    assert {len(n.split(" ")) for n in notes} == {2, 3} and set(tokens) == {"a", "b"}
    assert abs(tokens.count("a") / len(tokens) - 0.7) < 0.03


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ({"type": "text", "words": {"a": 0.5, "b": 0.4}}, "add up to 1"),
        ({"type": "text", "words": {"a b": 1.0}}, "hold no spaces"),
        ({"type": "text", "words": {"a": 1.0}, "min_words": 3, "max_words": 2}, "swap them"),
        ({"type": "text", "words": {"a": 1.0}, "unique": True}, "cannot be unique"),
        ({"type": "text", "vocab": "city", "min_words": 2}, "apply to a text column with 'words'"),
        ({"type": "int", "words": {"a": 1.0}}, "apply to text columns"),
        ({"type": "text", "words": {"a": 1.0}, "pattern": "A"}, "needs either"),
    ],
)
def test_bad_words_columns_are_spec_errors(column: dict[str, Any], expected: str) -> None:
    from synthreg.errors import SpecError

    with pytest.raises(SpecError, match=expected):
        parse_spec({"tables": {"t": {"rows": 1, "columns": {"c": column}}}}, "words.yaml")


def test_messy_columns_still_make_a_valid_spec(tmp_path: Path) -> None:
    n = 300
    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "Order Date": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
            "city": [f"Zoë-{i}" for i in range(n)],
            "label": [f"Ünïcødé {i} ~ {'x' * (i % 40)}" for i in range(n)],
            "tags": [[1, 2]] * n,
            "nothing": pa.nulls(n, pa.string()),
            "ratio": np.where(rng.random(n) < 0.5, np.nan, rng.random(n)),
        }
    )
    pq.write_table(table, tmp_path / "messy data.parquet")
    result = runner.invoke(app, ["spec", "infer", str(tmp_path / "messy data.parquet")])
    assert result.exit_code == 0, result.output
    spec = parse_spec(yaml.safe_load(result.stdout), "messy.yaml")
    columns = spec.tables["messy_data"].columns
    assert columns["Order_Date"].type == "date" and columns["city"].vocab == "city"
    assert "tags" not in columns and "nothing" not in columns
    assert 0.4 < columns["ratio"].null_rate < 0.6  # NaN counts as null
    assert "named 'Order_Date'" in result.stderr and "tags: left out" in result.stderr
    generate(spec, tmp_path / "out", workers=1)


def test_shapes_of_a_large_column_come_from_a_sample(
    real: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthreg.registry import infer_columns

    monkeypatch.setattr(infer_columns, "SHAPE_SAMPLE", 100)  # 400 customers: a sample of 100
    spec, _ = _infer(real["parquet"][0])
    assert spec.tables["customers"].columns["code"].pattern == r"CU-\d{5}"
