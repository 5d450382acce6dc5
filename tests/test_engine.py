"""The engine: deterministic whatever the chunking, types narrow, keys hold."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def spec(small_spec_model: Spec) -> Spec:
    return small_spec_model


def test_rows_types_and_nulls(spec: Spec, tmp_path: Path) -> None:
    result = generate(spec, tmp_path)
    assert result.rows == {"users": 300, "orders": 900}
    users = pq.read_table(tmp_path / "tables" / "users")
    assert users.schema.field("user_id").type == pa.int16()  # 1..300 fits int16
    assert users.schema.field("age").type == pa.int8()  # declared 18..90
    assert pa.types.is_dictionary(users.schema.field("plan").type)
    assert users.schema.field("signed_up_at").type == pa.timestamp("ms")
    assert users.column("user_id").to_pylist() == list(range(1, 301))
    ages = users.column("age").to_pylist()
    assert min(ages) >= 18 and max(ages) <= 90
    orders = pq.read_table(tmp_path / "tables" / "orders")
    nulls = orders.column("note_flag").null_count
    assert 40 <= nulls <= 150  # null_rate 0.1 of 900
    emails = users.column("email").to_pylist()
    assert all(
        e.split("@")[1] in {"example.com", "example.org", "example.net", "mail.example", "inbox.test"}
        for e in emails
    )
    first = users.column("first_name").to_pylist()[0].lower()
    assert emails[0].startswith(first + ".")


def test_foreign_keys_hold_checked_by_duckdb(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLES / "ecommerce.yaml")
    spec = apply_overrides(spec, rows={"customers": 500, "products": 50, "orders": 3000, "order_items": 7000})
    generate(spec, tmp_path)
    t = tmp_path / "tables"
    con = duckdb.connect()
    orphans = con.execute(
        f"""select count(*) from read_parquet('{t}/order_items/*.parquet') i
            left join read_parquet('{t}/orders/*.parquet') o using (order_id)
            where o.order_id is null"""
    ).fetchone()
    assert orphans == (0,)
    dup = con.execute(
        f"select count(*) - count(distinct order_id) from read_parquet('{t}/orders/*.parquet')"
    ).fetchone()
    assert dup == (0,)


def test_skew_makes_popular_parents(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLES / "ecommerce.yaml")
    spec = apply_overrides(spec, rows={"customers": 1000, "products": 10, "orders": 20000, "order_items": 1})
    generate(spec, tmp_path)
    orders = pq.read_table(tmp_path / "tables" / "orders").to_pandas()
    counts = orders["customer_id"].value_counts()
    # skew 1.5: the first 10% of customers get well over 10% of the orders
    share = counts[counts.index <= 100].sum() / len(orders)
    assert share > 0.3


def test_same_seed_same_digest_other_seed_differs(spec: Spec, tmp_path: Path) -> None:
    a = generate(spec, tmp_path / "a").content_digest
    b = generate(spec, tmp_path / "b").content_digest
    c = generate(apply_overrides(spec, seed=spec.seed + 1), tmp_path / "c").content_digest
    assert a == b
    assert a != c


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    chunk=st.integers(1, 1200),
    compression=st.sampled_from(["snappy", "zstd", "none"]),
    workers=st.sampled_from([1, 2]),
)
def test_digest_independent_of_chunking_compression_and_workers(
    spec: Spec, tmp_path_factory: pytest.TempPathFactory, chunk: int, compression: str, workers: int
) -> None:
    # small logical blocks so that a table spans many of them
    base = generate(spec, tmp_path_factory.mktemp("base"), logical_block_rows=128, workers=1)
    other = generate(
        spec,
        tmp_path_factory.mktemp("other"),
        chunk_rows=chunk,
        logical_block_rows=128,
        compression=compression,
        workers=workers,
    )
    assert other.content_digest == base.content_digest
    for name in spec.tables:
        a = pq.read_table(list(base.tables[name].files))
        b = pq.read_table(list(other.tables[name].files))
        assert a.equals(b)


def test_many_segments_and_workers_give_one_digest(tmp_path: Path) -> None:
    """Tables spanning several digest blocks and part files, 1 vs 2 worker processes."""
    spec = apply_overrides(load_spec(EXAMPLES / "fitness.yaml"), rows={"workouts": 300_000})
    one = generate(spec, tmp_path / "one", workers=1, chunk_rows=70_000)
    two = generate(spec, tmp_path / "two", workers=2, chunk_rows=1 << 20)
    assert len(one.tables["workouts"].files) > 1
    assert one.content_digest == two.content_digest
    assert len(one.tables["workouts"].files) != len(two.tables["workouts"].files)  # other layout
    a = pq.read_table(list(one.tables["workouts"].files))
    b = pq.read_table(list(two.tables["workouts"].files))
    assert a.equals(b)
    assert a.column("workout_id").to_pylist() == list(range(1, 300_001))


def test_verify_rereading_files_gives_the_generated_digest(spec: Spec, tmp_path: Path) -> None:
    from synthreg.digest import TableHasher

    result = generate(spec, tmp_path, workers=2, chunk_rows=100)
    for _name, table in result.tables.items():
        hasher = TableHasher(table.schema)
        for path in table.files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=77):
                hasher.update(batch)
        assert hasher.hexdigest() == table.digest


def test_the_workers_take_the_card_samples_that_reading_the_parts_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows the card's plots and PII scan read, taken by the workers from the blocks they
    write (several parts, several row groups each), equal what reading the files back gives: the
    same rows, values and types; the plots and the scan made from them are the same bytes."""
    from synthreg.datacards import pii, plots

    monkeypatch.setattr(plots, "SAMPLE_ROWS", 1500)  # below every table's rows: a real sample
    spec = load_spec(Path(__file__).parent.parent / "examples" / "fitness.yaml")
    requests = (*plots.sample_requests(spec, 4), *pii.sample_requests(spec, 1000))
    assert {r.table for r in requests} == {"users", "subscriptions", "workouts"}
    result = generate(spec, tmp_path / "v", chunk_rows=20_000, workers=2, samples=requests)
    assert len(list((tmp_path / "v" / "tables" / "workouts").glob("*.parquet"))) > 1
    assert set(result.samples) == set(requests)
    for request in requests:
        read = pii.sample_rows(tmp_path / "v", request.table, list(request.columns), request.limit)
        assert read.num_rows == request.limit
        assert result.samples[request].equals(read), request
        taken = pii.sample_rows(
            tmp_path / "v", request.table, list(request.columns), request.limit, result.samples
        )
        assert taken is result.samples[request]  # used, not read again
    drawn = plots.table_plots(tmp_path / "v", spec, tmp_path / "a", 4, drawn=result.samples)
    read_back = plots.table_plots(tmp_path / "v", spec, tmp_path / "b", 4)
    assert [p.read_bytes() for p in drawn] == [p.read_bytes() for p in read_back]
    assert pii.scan(tmp_path / "v", spec, 1000, drawn=result.samples) == pii.scan(tmp_path / "v", spec, 1000)


def test_no_card_sample_for_a_table_the_constraints_rewrite(tmp_path: Path) -> None:
    from synthreg.generators.sampling import SampleRequest
    from synthreg.generators.spec_io import parse_spec

    doc = {
        "tables": {
            "t": {
                "rows": 5000,
                "columns": {
                    "g": {"type": "int", "min": 0, "max": 9},
                    "v": {"type": "float", "distribution": {"kind": "uniform", "low": 1, "high": 6}},
                },
                "constraints": [
                    {"kind": "max_rows_per_group", "group_by": ["g"], "limit": 400, "action": "drop"}
                ],
            }
        }
    }
    request = SampleRequest("t", ("v",), 100)
    result = generate(parse_spec(doc, "t.yaml"), tmp_path, workers=2, samples=(request,))
    assert result.rows["t"] < 5000 and result.samples == {}  # rows were dropped: read from the files
