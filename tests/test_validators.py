"""validate_tables on real generated Parquet with real Great Expectations: clean data
passes, each injected fault is caught by the right check on the right column."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import synthreg.validators
import synthreg.validators.parts
from synthreg.errors import NotFoundError, SpecError
from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import parse_spec
from synthreg.validators import CheckResult, ValidationResult, validate_tables

SPEC: dict[str, Any] = {
    "seed": 7,
    "tables": {
        "customers": {
            "rows": 300,
            "primary_key": "customer_id",
            "columns": {
                "customer_id": {"type": "int"},
                "tier": {"type": "category", "values": {"free": 0.6, "pro": 0.3, "team": 0.1}},
                "age": {
                    "type": "int",
                    "distribution": {"kind": "normal", "mean": 40, "std": 12},
                    "min": 18,
                    "max": 90,
                },
                "joined_at": {"type": "datetime", "start": "2023-01-01", "end": "2024-12-31"},
                "score": {"type": "float", "min": 0, "max": 1, "decimals": 3, "null_rate": 0.1},
                "active": {"type": "bool", "p": 0.8},
                "name": {"type": "text", "vocab": "first_name"},
            },
        },
        "orders": {
            "rows": 500,
            "primary_key": "order_id",
            "columns": {
                "order_id": {"type": "int"},
                "customer_id": {"type": "int", "foreign_key": "customers.customer_id"},
                "amount": {
                    "type": "float",
                    "distribution": {"kind": "lognormal", "mean": 3, "sigma": 0.5},
                    "min": 1,
                    "max": 500,
                    "decimals": 2,
                },
                "placed_on": {"type": "date", "start": "2024-01-01", "end": "2024-06-30"},
            },
            "expectations": [
                {
                    "expectation": "expect_column_values_to_be_between",
                    "kwargs": {"column": "amount", "min_value": 1, "max_value": 500},
                }
            ],
        },
    },
}
# customers: row count, column set, 7 not-null, unique id, tier set, age range, joined_at
# range, score range, active set, arrow schema, tier proportions = 17. orders: row count,
# column set, 4 not-null, unique id, amount range, placed_on range, the user's range, schema,
# FK = 12.
EXPECTED_CHECKS = 29


def _spec(**table_expectations: list[dict[str, Any]]) -> Spec:
    data = copy.deepcopy(SPEC)
    for table, expectations in table_expectations.items():
        data["tables"][table]["expectations"] = expectations
    return parse_spec(data, "test.yaml")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean generated dataset; tests that break it work on a copy."""
    root = tmp_path_factory.mktemp("clean")
    generate(_spec(), root)
    return root / "tables"


@pytest.fixture(scope="module")
def clean(dataset: Path) -> ValidationResult:
    return validate_tables(_spec(), dataset)


def _copy(dataset: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "tables"))


def _rewrite(tables: Path, table: str, change: Callable[[pa.Table], pa.Table]) -> None:
    (path,) = sorted((tables / table).glob("*.parquet"))
    pq.write_table(change(pq.read_table(path)), path)


def _set_values(column: str, values: dict[int, Any]) -> Callable[[pa.Table], pa.Table]:
    """Overwrite some rows of one column, keeping its Arrow type."""

    def change(data: pa.Table) -> pa.Table:
        index = data.schema.get_field_index(column)
        rows = data.column(column).to_pylist()
        for row, value in values.items():
            rows[row] = value
        array = pa.array(rows, type=data.schema.field(index).type)
        return data.set_column(index, data.schema.field(index), array)

    return change


def _failures(result: ValidationResult) -> set[tuple[str, str, str | None]]:
    return {(c.table, c.check, c.column) for c in result.checks if not c.success}


def _check(result: ValidationResult, table: str, check: str, column: str | None) -> CheckResult:
    (found,) = [c for c in result.checks if (c.table, c.check, c.column) == (table, check, column)]
    return found


def test_public_names() -> None:
    assert synthreg.validators.__all__ == ["CheckResult", "ValidationResult", "validate_tables"]


def test_clean_data_passes_every_check(clean: ValidationResult) -> None:
    assert clean.success, [c for c in clean.checks if not c.success]
    assert (clean.evaluated, clean.failed) == (EXPECTED_CHECKS, 0)
    assert len(clean.checks) == EXPECTED_CHECKS
    assert clean.engine.startswith("great_expectations 1.")
    assert {c.source for c in clean.checks} == {"great_expectations", "synthreg"}


def test_clean_checks_carry_spec_bounds(clean: ValidationResult) -> None:
    age = _check(clean, "customers", "expect_column_values_to_be_between", "age")
    assert (age.kwargs["min_value"], age.kwargs["max_value"]) == (18, 90)
    joined = _check(clean, "customers", "expect_column_values_to_be_between", "joined_at")
    assert joined.kwargs["min_value"] == "2023-01-01T00:00:00"
    score = _check(clean, "customers", "expect_column_values_to_not_be_null", "score")
    assert 0.8 < score.kwargs["mostly"] < 0.9  # 1 - null_rate - sampling tolerance
    assert score.observed["unexpected_count"] > 0  # the nulls the spec asked for
    fk = _check(clean, "orders", "foreign_key_integrity", "customer_id")
    assert fk.source == "synthreg" and fk.observed["unexpected_count"] == 0


def test_to_dict_round_trips_through_json(clean: ValidationResult) -> None:
    data = clean.to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["success_ratio"] == 1.0 and len(data["checks"]) == EXPECTED_CHECKS
    assert set(data["checks"][0]) == {
        "table",
        "check",
        "column",
        "kwargs",
        "success",
        "observed",
        "source",
    }


FAULTS = [
    pytest.param(
        "customers",
        _set_values("age", {3: 5}),
        ("customers", "expect_column_values_to_be_between", "age"),
        id="out-of-range",
    ),
    pytest.param(
        "customers",
        _set_values("tier", dict.fromkeys(range(10))),
        ("customers", "expect_column_values_to_not_be_null", "tier"),
        id="nulls-in-non-null",
    ),
    pytest.param(
        "customers",
        _set_values("score", dict.fromkeys(range(100))),
        ("customers", "expect_column_values_to_not_be_null", "score"),
        id="too-many-nulls",
    ),
    pytest.param(
        "customers",
        _set_values("tier", {0: "enterprise"}),
        ("customers", "expect_column_values_to_be_in_set", "tier"),
        id="category-outside-set",
    ),
    pytest.param(
        "orders",
        _set_values("customer_id", {7: 9999}),
        ("orders", "foreign_key_integrity", "customer_id"),
        id="broken-foreign-key",
    ),
    pytest.param(
        "orders",
        _set_values("placed_on", {0: dt.date(2024, 7, 1)}),
        ("orders", "expect_column_values_to_be_between", "placed_on"),
        id="date-after-end",
    ),
    pytest.param(
        "orders",
        lambda t: t.slice(0, t.num_rows - 1),
        ("orders", "expect_table_row_count_to_equal", None),
        id="wrong-row-count",
    ),
    pytest.param(
        "customers",
        lambda t: t.set_column(2, "age", t.column("age").cast(pa.int64())),
        ("customers", "arrow_schema", None),
        id="wrong-arrow-type",
    ),
]


@pytest.mark.parametrize(("table", "change", "expected"), FAULTS)
def test_injected_fault_is_caught_by_the_right_check(
    dataset: Path,
    tmp_path: Path,
    table: str,
    change: Callable[[pa.Table], pa.Table],
    expected: tuple[str, str, str | None],
) -> None:
    tables = _copy(dataset, tmp_path)
    _rewrite(tables, table, change)
    result = validate_tables(_spec(), tables)
    assert not result.success
    assert _failures(result) == {expected}
    assert result.failed == 1 and result.evaluated == EXPECTED_CHECKS


def test_fault_reports_the_offending_values(dataset: Path, tmp_path: Path) -> None:
    tables = _copy(dataset, tmp_path)
    _rewrite(tables, "orders", _set_values("customer_id", {7: 9999, 8: 9998}))
    _rewrite(tables, "customers", _set_values("tier", {0: "enterprise"}))
    result = validate_tables(_spec(), tables)
    fk = _check(result, "orders", "foreign_key_integrity", "customer_id")
    assert fk.observed["unexpected_count"] == 2
    assert fk.observed["partial_unexpected_list"] == [9999, 9998]
    assert fk.observed["unexpected_percent"] == pytest.approx(100 * 2 / 500)
    tier = _check(result, "customers", "expect_column_values_to_be_in_set", "tier")
    assert tier.observed["partial_unexpected_list"] == ["enterprise"]
    json.dumps(result.to_dict(), allow_nan=False)


def test_failing_user_expectation_fails_validation(dataset: Path) -> None:
    narrow = {
        "expectation": "expect_column_values_to_be_between",
        "kwargs": {"column": "amount", "min_value": 1, "max_value": 10},
    }
    result = validate_tables(_spec(orders=[narrow]), dataset)
    assert not result.success
    assert _failures(result) == {("orders", "expect_column_values_to_be_between", "amount")}
    failed = [c for c in result.checks if not c.success]
    assert failed[0].kwargs == narrow["kwargs"] and failed[0].observed["unexpected_count"] > 0


@pytest.mark.parametrize("low", ["2024-01-01", dt.date(2024, 1, 1)])
def test_user_date_bounds_compare_with_date_columns(dataset: Path, low: object) -> None:
    # GX parses "2024-01-01" into a datetime.date, which pandas will not compare with
    # datetime64: the validator must hand GX a datetime instead.
    between = {
        "expectation": "expect_column_values_to_be_between",
        "kwargs": {"column": "placed_on", "min_value": low, "max_value": "2024-06-30"},
    }
    result = validate_tables(_spec(orders=[between]), dataset)
    assert result.success, [c.observed for c in result.checks if not c.success]
    json.dumps(result.to_dict(), allow_nan=False)


def test_unknown_expectation_raises_before_reading_data(tmp_path: Path) -> None:
    typo = {"expectation": "expect_column_values_to_be_betwen", "kwargs": {"column": "amount"}}
    with pytest.raises(SpecError, match="did you mean 'expect_column_values_to_be_between'") as exc:
        validate_tables(_spec(orders=[typo]), tmp_path / "no-such-dir")
    ((path, message),) = exc.value.problems
    assert path == "tables.orders.expectations.0.expectation"
    assert "unknown Great Expectations expectation 'expect_column_values_to_be_betwen'" in message


def test_bad_kwargs_raise_spec_error_with_gx_message(tmp_path: Path) -> None:
    bad = {"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "amount"}}
    with pytest.raises(SpecError, match=r"expectations\.0\.kwargs: .*cannot both be None"):
        validate_tables(_spec(orders=[bad]), tmp_path)


def test_user_expectation_on_unknown_column_raises(tmp_path: Path) -> None:
    bad = {"expectation": "expect_column_values_to_be_unique", "kwargs": {"column": "amout"}}
    with pytest.raises(SpecError, match=r"kwargs\.column: 'amout' .* did you mean 'amount'"):
        validate_tables(_spec(orders=[bad]), tmp_path)


def test_missing_table_raises_not_found(dataset: Path, tmp_path: Path) -> None:
    tables = _copy(dataset, tmp_path)
    shutil.rmtree(tables / "orders")
    with pytest.raises(NotFoundError, match="no Parquet files for table 'orders'"):
        validate_tables(_spec(), tables)


# ---------------------------------------------------------------- tables in several parts

MULTI: dict[str, Any] = {
    "seed": 11,
    "tables": {
        "customers": {
            "rows": 2000,
            "primary_key": "customer_id",
            "columns": {
                "customer_id": {"type": "int"},
                "tier": {"type": "category", "values": {"free": 0.7, "pro": 0.3}},
            },
        },
        "orders": {
            # The engine cuts parts of 65,536 rows here: three parts.
            "rows": 150_000,
            "primary_key": "order_id",
            "columns": {
                "order_id": {"type": "int"},
                "customer_id": {"type": "int", "foreign_key": "customers.customer_id"},
                "amount": {
                    "type": "float",
                    "distribution": {"kind": "lognormal", "mean": 3, "sigma": 0.5},
                    "min": 1,
                    "max": 500,
                    "decimals": 2,
                },
                "score": {"type": "float", "min": 0, "max": 1, "decimals": 3, "null_rate": 0.1},
                "placed_on": {"type": "date", "start": "2024-01-01", "end": "2024-06-30"},
            },
        },
    },
}
# customers: row count, column set, 2 not-null, unique id, tier set, schema, tier proportions
# = 8. orders: row count, column set, 5 not-null, unique id, 3 ranges, schema, FK = 13: one
# each, not per part.
MULTI_CHECKS = 21


def _multi_spec(**table_expectations: list[dict[str, Any]]) -> Spec:
    data = copy.deepcopy(MULTI)
    for table, expectations in table_expectations.items():
        data["tables"][table]["expectations"] = expectations
    return parse_spec(data, "multi.yaml")


def _parts(tables: Path, table: str) -> list[Path]:
    return sorted((tables / table).glob("part-*.parquet"))


def _rewrite_part(tables: Path, table: str, index: int, change: Callable[[pa.Table], pa.Table]) -> None:
    path = _parts(tables, table)[index]
    pq.write_table(change(pq.read_table(path)), path)


def _add_nulls(column: str, count: int) -> Callable[[pa.Table], pa.Table]:
    """Null the first ``count`` non-null values of ``column``."""

    def change(data: pa.Table) -> pa.Table:
        rows = data.column(column).to_pylist()
        present = [i for i, value in enumerate(rows) if value is not None]
        return _set_values(column, dict.fromkeys(present[:count]))(data)

    return change


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean dataset whose orders table spans several part files (and row groups)."""
    root = tmp_path_factory.mktemp("multi")
    generate(_multi_spec(), root, workers=1, chunk_rows=16_384, logical_block_rows=8_192)
    tables = root / "tables"
    assert len(_parts(tables, "orders")) > 1
    return tables


@pytest.fixture(scope="module")
def multi_clean(multi: Path) -> ValidationResult:
    return validate_tables(_multi_spec(), multi)


def test_multi_part_clean_data_passes_with_one_check_per_expectation(
    multi: Path, multi_clean: ValidationResult
) -> None:
    assert multi_clean.success, [c for c in multi_clean.checks if not c.success]
    assert (multi_clean.evaluated, multi_clean.failed) == (MULTI_CHECKS, 0)
    score = _check(multi_clean, "orders", "expect_column_values_to_not_be_null", "score")
    assert score.observed["element_count"] == 150_000  # counted over every part
    assert 0.09 < score.observed["unexpected_percent"] / 100 < 0.11
    assert len(score.observed["partial_unexpected_list"]) == 20
    json.dumps(multi_clean.to_dict(), allow_nan=False)


def test_multi_part_row_count_is_the_sum_of_the_parts(
    multi: Path, multi_clean: ValidationResult, tmp_path: Path
) -> None:
    footers = sum(pq.read_metadata(path).num_rows for path in _parts(multi, "orders"))
    count = _check(multi_clean, "orders", "expect_table_row_count_to_equal", None)
    assert count.observed["observed_value"] == footers == 150_000 and count.success
    tables = _copy(multi, tmp_path)
    _rewrite_part(tables, "orders", -1, lambda t: t.slice(0, t.num_rows - 10))
    result = validate_tables(_multi_spec(), tables)
    assert _failures(result) == {("orders", "expect_table_row_count_to_equal", None)}
    count = _check(result, "orders", "expect_table_row_count_to_equal", None)
    assert count.observed["observed_value"] == 149_990


def test_duplicate_key_in_two_different_parts_is_caught(multi: Path, tmp_path: Path) -> None:
    tables = _copy(multi, tmp_path)
    taken = pq.read_table(_parts(tables, "orders")[2]).column("order_id")[5].as_py()
    _rewrite_part(tables, "orders", 0, _set_values("order_id", {3: taken}))  # each part stays unique
    result = validate_tables(_multi_spec(), tables)
    assert _failures(result) == {("orders", "expect_column_values_to_be_unique", "order_id")}
    unique = _check(result, "orders", "expect_column_values_to_be_unique", "order_id")
    assert unique.observed["unexpected_count"] == 2
    assert unique.observed["partial_unexpected_list"] == [taken, taken]
    assert unique.observed["element_count"] == 150_000 and result.evaluated == MULTI_CHECKS


@pytest.mark.parametrize(("extra_nulls", "passes"), [(1_100, True), (4_000, False)])
def test_null_rate_is_judged_on_the_whole_table_not_per_part(
    multi: Path, tmp_path: Path, extra_nulls: int, passes: bool
) -> None:
    tables = _copy(multi, tmp_path)
    _rewrite_part(tables, "orders", 0, _add_nulls("score", extra_nulls))
    result = validate_tables(_multi_spec(), tables)
    check = _check(result, "orders", "expect_column_values_to_not_be_null", "score")
    part_nulls = [pq.read_table(p, columns=["score"]).column(0).null_count for p in _parts(tables, "orders")]
    first_part_rate = part_nulls[0] / pq.read_metadata(_parts(tables, "orders")[0]).num_rows
    whole_rate = sum(part_nulls) / 150_000
    assert first_part_rate > 1 - check.kwargs["mostly"]  # judged alone, that part would fail
    assert (whole_rate <= 1 - check.kwargs["mostly"]) is passes
    assert check.success is passes and result.success is passes
    assert check.observed["unexpected_count"] == sum(part_nulls)
    assert check.observed["unexpected_percent"] == pytest.approx(100 * whole_rate)


def test_broken_foreign_key_in_the_second_part_is_caught(multi: Path, tmp_path: Path) -> None:
    tables = _copy(multi, tmp_path)
    _rewrite_part(tables, "orders", 1, _set_values("customer_id", {7: 9999}))
    result = validate_tables(_multi_spec(), tables)
    assert _failures(result) == {("orders", "foreign_key_integrity", "customer_id")}
    fk = _check(result, "orders", "foreign_key_integrity", "customer_id")
    assert fk.observed["unexpected_count"] == 1 and fk.observed["partial_unexpected_list"] == [9999]
    assert fk.observed["element_count"] == 150_000


def test_a_part_with_another_arrow_type_fails_the_schema_check(multi: Path, tmp_path: Path) -> None:
    tables = _copy(multi, tmp_path)
    index = pq.read_schema(_parts(tables, "orders")[1]).get_field_index("customer_id")
    _rewrite_part(
        tables, "orders", 1, lambda t: t.set_column(index, "customer_id", t.column(index).cast(pa.int64()))
    )
    result = validate_tables(_multi_spec(), tables)
    assert _failures(result) == {("orders", "arrow_schema", None)}
    schema = _check(result, "orders", "arrow_schema", None)
    assert schema.observed["mismatched"]["customer_id"]["observed"] == "int64"


def test_results_do_not_depend_on_the_batch_size(
    multi: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = _copy(multi, tmp_path)
    _rewrite_part(tables, "orders", 0, _set_values("amount", {1: 9999.0}))
    _rewrite_part(tables, "orders", 2, _set_values("amount", {2: -5.0}))
    whole_parts = validate_tables(_multi_spec(), tables).to_dict()
    # ~10,000-row batches: every part is cut into several GX runs.
    monkeypatch.setattr(synthreg.validators.parts, "BATCH_CELLS", 50_000)
    monkeypatch.setattr(synthreg.validators.parts, "_MIN_BATCH_ROWS", 1_000)
    small_batches = validate_tables(_multi_spec(), tables).to_dict()
    # big tables run our checks after the GX batches instead of beside them, and Arrow gives
    # freed memory back at once: same results
    monkeypatch.setattr(synthreg.validators.suite, "OVERLAP_MAX_ROWS", 0)
    monkeypatch.setattr(synthreg.validators.parts, "LARGE_TABLE_ROWS", 0)
    one_after_other = validate_tables(_multi_spec(), tables).to_dict()
    for data in (whole_parts, small_batches, one_after_other):
        data.pop("seconds")
    assert small_batches == whole_parts == one_after_other
    amount = next(c for c in small_batches["checks"] if c["column"] == "amount" and not c["success"])
    assert amount["observed"]["partial_unexpected_list"] == [9999.0, -5.0]
    assert amount["observed"]["unexpected_count"] == 2


def test_a_large_table_is_checked_with_memory_given_back_at_once() -> None:
    """Past LARGE_TABLE_ROWS, Arrow allocates from jemalloc inside the block; the pool before
    comes back after it, so a warm server or this test session keeps its own."""
    parts_mod = synthreg.validators.parts
    before = pa.default_memory_pool().backend_name
    doc = {"tables": {"t": {"rows": parts_mod.LARGE_TABLE_ROWS, "columns": {"x": {"type": "int"}}}}}
    with parts_mod.lean_memory(parse_spec(doc, "t.yaml")):
        assert pa.default_memory_pool().backend_name == before
    doc["tables"]["t"]["rows"] += 1
    with parts_mod.lean_memory(parse_spec(doc, "t.yaml")):
        inside = pa.default_memory_pool()
        buffer = pa.allocate_buffer(1 << 20)  # from the default pool
        held = inside.bytes_allocated()
    assert pa.default_memory_pool().backend_name == before
    if sys.platform == "linux":  # pyarrow's Linux wheels are built with jemalloc
        assert inside.backend_name == "jemalloc" and held >= buffer.size
    del buffer  # freed into the pool it came from, whatever the default is now


def test_text_values_weigh_more_in_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain text column counts ``_TEXT_CELLS`` cells (GX holds each value as a string), a
    category (int8 dictionary) one: batches of a table with text have fewer rows."""
    parts_mod = synthreg.validators.parts
    n = 200_000
    numbers = pa.array(range(n), pa.int64())
    category = pa.array(["a", "b"] * (n // 2)).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string()))
    text = pa.array([f"user{i}@example.org" for i in range(n)])
    (tmp_path / "t").mkdir()
    table = pa.table({"x": numbers, "y": numbers, "c": category, "s": text})
    pq.write_table(table, tmp_path / "t" / "part-00000.parquet")
    monkeypatch.setattr(parts_mod, "BATCH_CELLS", 100_000 * (3 + parts_mod._TEXT_CELLS))
    monkeypatch.setattr(parts_mod, "_MIN_BATCH_ROWS", 1_000)
    parts = parts_mod.open_parts(tmp_path, "t")
    assert [b.num_rows for b in parts.batches(["x", "y", "c"])] == [n]  # 3 cells a row
    assert [b.num_rows for b in parts.batches(["x", "y", "c", "s"])] == [100_000, 100_000]


def test_small_parts_share_a_batch_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Consecutive parts that fit share one batch (one GX run, not one per part) while it stays
    within the batch size; a part too big for a batch is cut on its own; order is kept."""
    parts_mod = synthreg.validators.parts
    monkeypatch.setattr(parts_mod, "BATCH_CELLS", 1_000)
    monkeypatch.setattr(parts_mod, "_MIN_BATCH_ROWS", 10)
    (tmp_path / "t").mkdir()
    sizes, start = [300, 300, 300, 250, 2500, 100, 0, 100], 0
    for n, rows in enumerate(sizes):
        pq.write_table(pa.table({"x": range(start, start + rows)}), tmp_path / "t" / f"part-{n:05d}.parquet")
        start += rows
    parts = parts_mod.open_parts(tmp_path, "t")
    batches = list(parts.batches(["x"]))  # 1,000 rows a batch
    assert [b.num_rows for b in batches] == [900, 250, 1000, 1000, 500, 200]
    assert pa.concat_tables(batches).column("x").to_pylist() == list(range(start))
    # a part with another type of column starts a new batch (no silent cast)
    pq.write_table(pa.table({"x": pa.array([1.5])}), tmp_path / "t" / "part-00008.parquet")
    assert [b.num_rows for b in parts_mod.open_parts(tmp_path, "t").batches(["x"])][-2:] == [200, 1]


def test_user_aggregate_expectations_see_the_whole_table(multi: Path) -> None:
    amounts = pa.concat_arrays(
        [pq.read_table(p, columns=["amount"]).column(0).combine_chunks() for p in _parts(multi, "orders")]
    )
    mean = pc.mean(amounts).as_py()
    user = [
        {
            "expectation": "expect_column_mean_to_be_between",
            "kwargs": {"column": "amount", "min_value": mean - 1e-6, "max_value": mean + 1e-6},
        },
        {
            "expectation": "expect_table_row_count_to_be_between",
            "kwargs": {"min_value": 150_000, "max_value": 150_000},
        },
        {"expectation": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"}},
        {"expectation": "expect_table_column_count_to_equal", "kwargs": {"value": 5}},
    ]
    result = validate_tables(_multi_spec(orders=user), multi)
    assert result.evaluated == MULTI_CHECKS + len(user)
    assert _failures(result) == {("orders", "expect_column_values_to_be_unique", "customer_id")}
    observed = {c.check: c.observed for c in result.checks if c.table == "orders"}
    assert observed["expect_column_mean_to_be_between"]["observed_value"] == pytest.approx(mean)
    assert observed["expect_table_row_count_to_be_between"]["observed_value"] == 150_000
    assert observed["expect_table_column_count_to_equal"]["observed_value"] == 5


@pytest.mark.parametrize(
    "keys",
    [
        [3, 4, 5, 6, 7],  # one run of consecutive keys: positions by subtraction
        [10, 2, 7, 7, 40, -3],  # unsorted, repeated, with gaps: sorted, then binary search
        [],
    ],
)
def test_key_index_finds_the_same_keys_as_a_set(keys: list[int]) -> None:
    import numpy as np

    from synthreg.validators.checks import KeyIndex

    index = KeyIndex(np.array(keys, dtype=np.int64))
    needles = np.array([-5, -3, 2, 3, 5, 7, 8, 40, 41, 10, 4], dtype=np.int64)
    pos, found = index.positions(needles)
    assert found.tolist() == [v in set(keys) for v in needles.tolist()]
    assert (index.keys[pos[found]] == needles[found]).all()
    if keys:  # the order maps back to the caller's rows (time_order reads parent times by it)
        order = index.order if index.order is not None else np.arange(len(keys))
        assert (np.array(keys)[order] == index.keys).all()


def test_key_index_of_a_column_with_a_null_key_keeps_rows_aligned(tmp_path: Path) -> None:
    """time_order reads the parent's times by row: a null key must keep its row, and match nothing."""
    import numpy as np

    from synthreg.validators.checks import KeyIndex
    from synthreg.validators.parts import open_parts

    (tmp_path / "t").mkdir()
    pq.write_table(
        pa.table({"id": pa.array([5, None, 7, 6], type=pa.int64())}), tmp_path / "t" / "part-0.parquet"
    )
    index = KeyIndex.of_column(open_parts(tmp_path, "t"), "id")
    pos, found = index.positions(np.array([6, 7, 5, 1], dtype=np.int64))
    rows = index.order if index.order is not None else np.arange(4)
    assert found.tolist() == [True, True, True, False]
    assert rows[pos[found]].tolist() == [3, 2, 0]  # the rows of keys 6, 7 and 5


_DEFERRED_RUN = """
import json, sys
from pathlib import Path
from synthreg.generators.spec_io import parse_spec
from synthreg.validators import validate_tables
from synthreg.validators.gx_runner import import_gx

import_gx()
before = {n: type(sys.modules[n]).__name__ for n in ("scipy.stats", "altair")}
spec = parse_spec(json.loads(sys.argv[1]), "test.yaml")
result = validate_tables(spec, Path(sys.argv[2]))
kl = [c for c in result.checks if c.check == "expect_column_kl_divergence_to_be_less_than"]
print(json.dumps({"before": before, "after": type(sys.modules["scipy.stats"]).__name__,
                  "success": [c.success for c in kl], "observed": [c.observed for c in kl]}, default=str))
"""


@pytest.mark.parametrize(("weights", "passes"), [([0.6, 0.3, 0.1], True), ([0.1, 0.1, 0.8], False)])
def test_a_user_expectation_needing_a_deferred_module_still_runs(
    dataset: Path, weights: list[float], passes: bool
) -> None:
    """GX is imported with scipy.stats and altair deferred (~0.7 s of its import): they stay out
    until read, and a user's KL-divergence expectation, which reads scipy.stats, is judged as GX
    judges it. A fresh interpreter, since this one may have imported them already."""
    import json
    import subprocess
    import sys

    kl = {
        "expectation": "expect_column_kl_divergence_to_be_less_than",
        "kwargs": {
            "column": "tier",
            "partition_object": {"values": ["free", "pro", "team"], "weights": weights},
            "threshold": 0.1,
        },
    }
    data = copy.deepcopy(SPEC)
    data["tables"]["customers"]["expectations"] = [kl]
    out = subprocess.run(
        [sys.executable, "-c", _DEFERRED_RUN, json.dumps(data), str(dataset)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] == {"scipy.stats": "_Deferred", "altair": "_Deferred"}
    assert got["after"] == "module"  # read by the KL expectation, so imported for real
    assert got["success"] == [passes], got


_DEFERRED_USE = """
import sys, threading
from synthreg.validators.gx_runner import import_gx

import_gx()
stand_in = sys.modules["scipy.stats"]
assert type(stand_in).__name__ == "_Deferred"
values = []
use = lambda: values.append(float(stand_in.entropy([0.5, 0.5])))
threads = [threading.Thread(target=use) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
import scipy, scipy.stats
stand_in.patched = 7  # reaches the real module, as a test's patch must
print(len(set(values)), type(sys.modules["scipy.stats"]).__name__, scipy.stats is sys.modules["scipy.stats"],
      scipy.stats.patched, "entropy" in dir(stand_in))
"""


def test_a_deferred_module_used_from_threads_is_imported_once_and_forwards() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _DEFERRED_USE], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "module", "True", "7", "True"]


_MEMO_USER = [
    {
        "expectation": "expect_column_values_to_be_between",
        "kwargs": {"column": "age", "min_value": 20, "max_value": 80, "mostly": 0.9},
    },
    {
        "expectation": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "tier", "value_set": ["free", "pro"], "row_condition": "age > 30",
                   "condition_parser": "pandas"},
    },
    {"expectation": "expect_column_pair_values_a_to_be_greater_than_b",
     "kwargs": {"column_A": "age", "column_B": "score", "or_equal": True}},
    {"expectation": "expect_multicolumn_sum_to_equal",
     "kwargs": {"column_list": ["age", "score"], "sum_total": 50}},
]  # fmt: skip


def test_gx_runs_with_memoised_configurations_give_what_gx_gives_without(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GxSuite.run`` builds each expectation's configuration once per run
    (``memo_configurations``): on a table with faults (failures, examples, a ``mostly``, a
    ``row_condition``, pair and multicolumn expectations), every result is the one GX's
    ``Batch.validate`` gives with the property as GX has it, while GX builds under a fifth of
    the configurations; the property is GX's again after the run, and after a run
    that raised."""
    from great_expectations.expectations.expectation import Expectation

    from synthreg.validators.gx_runner import GxRunner, memo_configurations, to_frame
    from synthreg.validators.parts import open_parts
    from synthreg.validators.plan import BATCH, spec_plan, user_expectations

    tables = _copy(dataset, tmp_path)
    _rewrite(tables, "customers", _set_values("tier", {0: "enterprise", 5: "gold"}))
    _rewrite(tables, "customers", _set_values("age", {1: 120, 2: 7}))
    spec = _spec(customers=_MEMO_USER)
    parts = open_parts(tables, "customers")
    plan = spec_plan(spec.tables["customers"]) + user_expectations(spec, "test.yaml")["customers"]
    planned = [p for p in plan if p.scope == BATCH]
    frame = to_frame(parts.read(parts.columns), parts.nullable())
    suite = GxRunner().suite("customers.rows", planned)

    gx_property = Expectation.__dict__["configuration"]
    built: list[int] = []

    def counted(self: Any) -> Any:
        built.append(id(self))
        return gx_property.fget(self)

    monkeypatch.setattr(Expectation, "configuration", property(counted))
    memoised = suite.run(frame)
    in_run = len(built)
    assert Expectation.__dict__["configuration"].fget is counted  # restored after the run
    built.clear()
    plain = suite.batch.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite.suite, result_format="BASIC"
    )
    by_id = {r.expectation_config.id: r for r in plain.results}

    def comparable(result: Any) -> Any:
        return result.to_json_dict()

    assert [comparable(r) for r in memoised] == [comparable(by_id[p.expectation.id]) for p in planned]
    assert sum(not r.success for r in memoised) >= 4  # the faults and the user's narrower checks fail
    # GX makes ~10 expectation objects per planned one in a run, and reads each configuration ~9 times.
    assert len(planned) < in_run < len(built) / 5, (in_run, len(built))

    with pytest.raises(RuntimeError), memo_configurations():
        assert Expectation.__dict__["configuration"].fget is not counted
        raise RuntimeError
    assert Expectation.__dict__["configuration"].fget is counted


def test_memoised_configurations_are_per_thread_and_last_while_any_thread_is_inside() -> None:
    """Runs may overlap in threads: each thread inside keeps its own configurations, a thread
    outside builds one on every read, as GX does, and GX's property is back only when the last
    thread inside leaves."""
    import threading

    from great_expectations.expectations import ExpectColumnValuesToNotBeNull
    from great_expectations.expectations.expectation import Expectation

    from synthreg.validators import gx_runner

    gx_property = Expectation.__dict__["configuration"]
    expectation = ExpectColumnValuesToNotBeNull(column="x")
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def first() -> None:
        with gx_runner.memo_configurations():
            seen["first"] = expectation.configuration
            seen["kept in the first"] = expectation.configuration is seen["first"]
            first_in.set()
            assert second_in.wait(10)
        first_out.set()

    def second() -> None:
        assert first_in.wait(10)
        seen["outside kept"] = expectation.configuration is expectation.configuration
        with gx_runner.memo_configurations():
            second = expectation.configuration
            seen["shared with the first"] = second is seen["first"]
            second_in.set()
            assert first_out.wait(10)
            seen["memo after the first left"] = Expectation.__dict__["configuration"] is not gx_property
            seen["kept in the second"] = expectation.configuration is second
        seen["kept after leaving"] = expectation.configuration is second

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert {k: v for k, v in seen.items() if k != "first"} == {
        "kept in the first": True,
        "outside kept": False,
        "shared with the first": False,
        "memo after the first left": True,
        "kept in the second": True,
        "kept after leaving": False,
    }
    assert Expectation.__dict__["configuration"] is gx_property and gx_runner._Memo.depth == 0


def test_memo_leaves_a_gx_without_the_configuration_property_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a GX release make ``configuration`` something other than a property of
    ``Expectation``, runs go on without the memo rather than fail."""
    from great_expectations.expectations.expectation import Expectation

    from synthreg.validators import gx_runner

    def plain(self: Any) -> str:
        return "built"

    monkeypatch.setattr(Expectation, "configuration", plain)
    with gx_runner.memo_configurations():
        assert Expectation.__dict__["configuration"] is plain
    assert Expectation.__dict__["configuration"] is plain and gx_runner._Memo.depth == 0
