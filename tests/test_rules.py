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


@pytest.mark.parametrize(
    ("span_ms", "stats", "mode"),
    [
        (10**9, True, "low"),  # ~12 days: uint32
        (10**12, True, "high"),  # ~32 years: uint32 + uint8
        (10**13, True, "whole"),  # ~317 years: int64
        (10**12, False, "whole"),  # no footer statistics: int64
        (10**12, "lying", "whole"),  # a footer range that misses values: int64
    ],
)
def test_parent_times_are_exact_in_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, span_ms: int, stats: bool | str, mode: str
) -> None:
    """The compact parent times give back every value (and null) exactly, at any key order;
    the layout follows the span and falls back to int64 without footer statistics."""
    from synthreg.validators import rules
    from synthreg.validators.checks import KeyIndex
    from synthreg.validators.parts import open_parts

    monkeypatch.setattr(rules, "_COMPACT_FROM_BYTES", 0)  # compact even for a small parent
    rng = np.random.default_rng(3)
    ms = 1_600_000_000_000 + rng.integers(0, span_ms, 3000)
    ms[[5, 6, 2999]] = [1_600_000_000_000, 1_600_000_000_000 + span_ms, 1_600_000_000_000 + 1]
    keys = rng.permutation(3000).astype(np.int64) + 10  # unsorted keys: the index reorders
    nulls = np.zeros(3000, dtype=bool)
    nulls[[7, 100, 2500]] = True
    (tmp_path / "p").mkdir()
    for i, sl in enumerate((slice(0, 1000), slice(1000, 3000))):
        table = pa.table(
            {"id": keys[sl], "t": pa.array(ms[sl], pa.int64(), mask=nulls[sl]).cast(pa.timestamp("ms"))}
        )
        pq.write_table(table, tmp_path / "p" / f"part-{i:05d}.parquet", write_statistics=bool(stats))
    if stats == "lying":
        monkeypatch.setattr(
            rules, "_footer_range", lambda *_: (1_600_000_000_002, 1_600_000_000_000 + span_ms)
        )
    parent = open_parts(tmp_path, "p")
    index = KeyIndex.of_column(parent, "id")
    times = rules._ParentTimes(parent, "t", index.order)
    layout = "whole" if times.whole is not None else "high" if times.high is not None else "low"
    assert layout == mode
    wanted = rng.permutation(keys)
    pos, found = index.positions(wanted)
    assert found.all()
    expected = np.where(nulls, np.iinfo(np.int64).min, ms)[np.argsort(keys)][
        np.searchsorted(np.sort(keys), wanted)
    ]
    np.testing.assert_array_equal(times.at(pos), expected)


def test_time_order_with_compact_parent_times_catches_one_ms(
    data: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One child row a millisecond before its parent fails the check with compact parent times."""
    from synthreg.validators import rules

    monkeypatch.setattr(rules, "_COMPACT_FROM_BYTES", 0)
    spec, tables = data
    assert ("time_order", "start_at") not in _failed(spec, tables)
    path = sorted((tables / "shifts").glob("part-*.parquet"))[0]
    shifts = pq.read_table(path)
    users = pa.concat_tables(pq.read_table(p) for p in sorted((tables / "users").glob("part-*.parquet")))
    joined = dict(
        zip(users.column("id").to_pylist(), users.column("joined").cast(pa.int64()).to_pylist(), strict=True)
    )
    start = shifts.column("start_at").cast(pa.int64()).to_numpy().copy()
    start[3] = joined[shifts.column("user_id")[3].as_py()] - 1
    i = shifts.schema.get_field_index("start_at")
    pq.write_table(shifts.set_column(i, "start_at", pa.array(start).cast(shifts.schema.field(i).type)), path)
    checks = [c for c in validate_tables(spec, tables).checks if c.check == "time_order"]
    assert checks[0].success is False and checks[0].observed["unexpected_count"] == 1


def test_parent_times_past_year_9999_and_after_a_struct_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Footer statistics Python cannot turn into a datetime (past year 9999), or a timestamp column
    after a struct (Parquet leaves and Arrow fields differ), still give exact parent times."""
    from synthreg.validators import rules
    from synthreg.validators.checks import KeyIndex
    from synthreg.validators.parts import open_parts

    monkeypatch.setattr(rules, "_COMPACT_FROM_BYTES", 0)
    for name, ms in (("late", [0, 5, 253_402_300_800_000]), ("nested", [10**12, 10**12 + 7, 10**12 + 9])):
        table = pa.table(
            {
                "s": pa.array([{"a": 1, "b": 2}] * 3),
                "id": pa.array([1, 2, 3], pa.int64()),
                "t": pa.array(ms, pa.int64()).cast(pa.timestamp("ms")),
            }
        )
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part-00000.parquet")
        parent = open_parts(tmp_path, name)
        times = rules._ParentTimes(parent, "t", KeyIndex.of_column(parent, "id").order)
        np.testing.assert_array_equal(times.at(np.array([2, 0, 1])), [ms[2], ms[0], ms[1]])
    assert rules._footer_range(open_parts(tmp_path, "nested"), "t") == (10**12, 10**12 + 9)


@pytest.mark.parametrize("rows_per_bucket", [1 << 30, 1000])  # one bucket read whole; 6 buckets
def test_group_checks_measure_whole_groups_a_bucket_at_a_time(
    data: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch, rows_per_bucket: int
) -> None:
    """What the checks report equals pandas over the whole table, however many buckets."""
    from synthreg.generators import group_rules
    from synthreg.generators.spec import Constraint

    spec, tables = data
    _rewrite(tables, "shifts", "hours", lambda c: pc.multiply(c, 3.0))  # some groups over 6 hours
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", rows_per_bucket)
    monkeypatch.setattr(group_rules, "_SPLIT_MIN_ROWS", 1)
    files = sorted((tables / "shifts").glob("part-*.parquet"))
    frame = pq.read_table(files).to_pandas()
    rules = {
        "sum": {"kind": "sum_limit", "group_by": ["user_id", "day"], "column": "hours", "limit": 6},
        "rows": {"kind": "max_rows_per_group", "group_by": ["day"], "limit": 590},
        "unique": {"kind": "unique_combination", "columns": ["user_id", "day"]},
    }
    facts = {
        k: group_rules.measure(spec, "shifts", Constraint(**r), files, slack=1e-6) for k, r in rules.items()
    }
    sums = frame.groupby(["user_id", "day"])["hours"].sum()
    per_day = frame.groupby("day").size()
    pairs = frame.groupby(["user_id", "day"]).size()
    assert facts["sum"] == group_rules.GroupFacts(len(sums), int((sums > 6 + 1e-6).sum()), float(sums.max()))
    assert facts["rows"] == group_rules.GroupFacts(
        len(per_day), int((per_day > 590).sum()), float(per_day.max())
    )
    assert facts["unique"] == group_rules.GroupFacts(len(pairs), int((pairs > 1).sum()), float(pairs.max()))
    assert facts["sum"].over and facts["rows"].over and facts["unique"].over  # each one fails somewhere


def test_a_table_whose_group_rules_drop_rows_passes_its_own_checks(tmp_path: Path) -> None:
    """Rows a group rule drops are fewer than the spec's count, chosen by the columns it groups by:
    the row count is checked as at most the spec's, and the shares of those columns are not
    checked (they were 0.6/0.3/0.1; capping each day's rows per channel moves them)."""
    visits = {
        "rows": 20_000,
        "primary_key": "id",
        "columns": {
            "id": {"type": "int"},
            "channel": {"type": "category", "values": {"a": 0.6, "b": 0.3, "c": 0.1}},
            "plan": {"type": "category", "values": {"free": 0.7, "pro": 0.3}},
            "day": {"type": "date", "start": "2024-01-01", "end": "2024-01-10"},
        },
        "constraints": [
            {"kind": "max_rows_per_group", "group_by": ["day", "channel"], "limit": 800, "action": "drop"}
        ],
    }
    spec = parse_spec({"seed": 2, "tables": {"visits": visits}}, "visits.yaml")
    made = generate(spec, tmp_path, workers=1)
    assert 15_000 < made.rows["visits"] < 20_000
    result = validate_tables(spec, tmp_path / "tables")
    assert result.failed == 0, [c for c in result.checks if not c.success]
    checks = {(c.check, c.column): c for c in result.checks}
    rows = checks[("expect_table_row_count_to_be_between", None)]
    assert rows.kwargs == {"min_value": 1, "max_value": 20_000} and rows.success
    assert ("category_proportions", "plan") in checks and ("category_proportions", "channel") not in checks


@pytest.mark.parametrize("kind", ["int", "text", "float"])
def test_uniqueness_counted_by_buckets_equals_reading_the_whole_column(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A key that does not increase, over 3 parts: counted a bucket of values at a time, the
    verdict, counts and first examples (row order) are those of reading the column whole."""
    from synthreg.generators import group_rules
    from synthreg.validators.checks import unique_check
    from synthreg.validators.parts import open_parts
    from synthreg.validators.plan import Planned

    rng = np.random.default_rng(9)
    ints = rng.integers(0, 25_000, 30_000)  # ~5,000 values repeat, across parts too
    column = {
        "int": pa.array(ints),
        "text": pa.array([None if i % 97 == 0 else f"k{i}" for i in ints.tolist()]),
        "float": pa.array(np.where(ints % 89 == 0, np.nan, ints / 2.0), mask=ints % 101 == 0),
    }[kind]
    (tmp_path / "t").mkdir()
    for part in range(3):
        pq.write_table(
            pa.table({"key": column.slice(part * 10_000, 10_000)}), tmp_path / f"t/part-{part}.parquet"
        )
    parts = open_parts(tmp_path, "t")
    planned = Planned("expect_column_values_to_be_unique", "key", {"column": "key"}, None, "unique")
    whole = unique_check(parts, planned)
    calls: list[int] = []
    real = group_rules.repeats
    monkeypatch.setattr(group_rules, "repeats", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 4_000)  # 8 buckets
    split = unique_check(parts, planned)
    assert calls and not whole.success
    assert split.observed == whole.observed and split.success == whole.success
    assert len(whole.observed["partial_unexpected_list"]) == 20
    assert (whole.observed["missing_count"] > 0) == (kind != "int")  # nulls and NaN are missing


@pytest.mark.parametrize("kind", ["int", "text"])
def test_foreign_keys_looked_up_by_buckets_equal_holding_the_parent_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Parent keys that are no consecutive run (shuffled, with gaps), child values with nulls and
    values that are no key, over several parts: the check by hash buckets reports what holding
    the parent's keys reports (counts, and the first absent values in row order)."""
    from synthreg.generators import group_rules
    from synthreg.validators.checks import KeySet, fk_by_buckets, fk_check
    from synthreg.validators.parts import open_parts

    rng = np.random.default_rng(4)
    keys = rng.permutation(np.arange(0, 30_000, 3))  # 10,000 keys with gaps, shuffled
    values = rng.integers(0, 30_000, 24_000)  # two in three are no key
    as_text = (lambda a: pa.array([f"id-{v}" for v in a.tolist()])) if kind == "text" else pa.array
    child = as_text(values)
    child = pc.if_else(pa.array(values % 11 == 0), pa.scalar(None, type=child.type), child)  # nulls
    for name, column, size in (("p", as_text(keys), 5_000), ("c", child, 8_000)):
        (tmp_path / name).mkdir()
        for part in range(len(column) // size):
            table = pa.table({"k" if name == "p" else "fk": column.slice(part * size, size)})
            pq.write_table(table, tmp_path / name / f"part-{part}.parquet")
    parent, children = open_parts(tmp_path, "p"), open_parts(tmp_path, "c")
    held = fk_check(children, "fk", "p", "k", lambda: KeySet.of_column(parent, "k"))
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 5_000)  # 7 buckets
    split = fk_by_buckets(children, "fk", parent, "k")
    assert not held.success and held.observed["missing_count"] > 0
    assert split.observed == held.observed and split.success == held.success


def test_validation_looks_foreign_keys_up_by_buckets_only_when_parent_keys_are_no_run(
    data: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from synthreg.generators import group_rules

    spec, tables = data
    calls: list[str] = []
    real = group_rules.absent
    monkeypatch.setattr(group_rules, "absent", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 1_000)
    assert validate_tables(spec, tables).failed == 0 and calls == []  # generated keys are a run
    _rewrite(tables, "users", "id", lambda c: pc.multiply(c, 2))  # now they have gaps
    failed = _failed(spec, tables)
    assert calls == ["user_id"] and ("foreign_key_integrity", "user_id") in failed


def _as_parts(tables: Path, table: str, data: pa.Table, parts: int) -> None:
    for old in (tables / table).glob("*.parquet"):
        old.unlink()
    size = -(-data.num_rows // parts)
    for part in range(parts):
        pq.write_table(data.slice(part * size, size), tables / table / f"part-{part:05d}.parquet")


def test_time_order_by_buckets_equals_holding_the_parent_keys(
    data: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parent keys shuffled, with gaps, repeats and a null; parent and child times with nulls;
    child keys null, negative or no key; 3 parts each: compared a bucket at a time
    (``group_rules.late``), the counts and the first keys of the late rows in row order are
    those of holding the parent's keys and times (a repeated key: its first row's time)."""
    from synthreg.generators import group_rules
    from synthreg.validators.parts import open_parts
    from synthreg.validators.rules import time_order_checks

    spec, tables = data
    rng = np.random.default_rng(12)
    users = pa.concat_tables([pq.read_table(p) for p in sorted((tables / "users").glob("*.parquet"))])
    ids = rng.permutation(np.arange(users.num_rows) * 3)
    ids[5:40] = ids[100:135]  # repeated keys, in other rows (and parts) than their first
    id_col = pa.array(ids, mask=np.arange(users.num_rows) == 7).cast(users.schema.field("id").type)
    joined = users.column("joined").combine_chunks()
    joined = pc.if_else(pa.array(rng.random(users.num_rows) < 0.05), pa.scalar(None, joined.type), joined)
    users = users.set_column(users.schema.get_field_index("id"), "id", id_col)
    users = users.set_column(users.schema.get_field_index("joined"), "joined", joined)
    _as_parts(tables, "users", users, 3)
    shifts = pa.concat_tables([pq.read_table(p) for p in sorted((tables / "shifts").glob("*.parquet"))])
    n = shifts.num_rows
    fk = rng.choice(np.concatenate([ids, [-3, 1, 2, 4]]), n)  # some no key, one negative
    fk_col = pa.array(fk, mask=rng.random(n) < 0.03).cast(shifts.schema.field("user_id").type)
    start = shifts.column("start_at").combine_chunks()
    early = pc.subtract(start, pa.scalar(800 * 86_400_000, pa.duration("ms")))  # before some joins
    start = pc.if_else(pa.array(rng.random(n) < 0.3), early.cast(start.type), start)
    start = pc.if_else(pa.array(rng.random(n) < 0.04), pa.scalar(None, start.type), start)
    shifts = shifts.set_column(shifts.schema.get_field_index("user_id"), "user_id", fk_col)
    shifts = shifts.set_column(shifts.schema.get_field_index("start_at"), "start_at", start)
    _as_parts(tables, "shifts", shifts, 3)
    parts = open_parts(tables, "shifts")
    held = time_order_checks(spec, parts, lambda t: open_parts(tables, t))
    calls: list[str] = []
    real = group_rules.late
    monkeypatch.setattr(group_rules, "late", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 1_000)  # 8 buckets
    split = time_order_checks(spec, parts, lambda t: open_parts(tables, t))
    assert calls == ["start_at"]
    assert not held[0].success and held[0].observed["checked"] > 0
    assert len(held[0].observed["parent_keys"]) == 5
    assert [c.observed for c in split] == [c.observed for c in held]


@pytest.mark.parametrize("seed", range(5))
def test_category_counts_by_dictionary_code_equal_the_decoded_counts(seed: int) -> None:
    """Category shares count a dictionary column by its codes, chunk by chunk: the counts are the
    decoded values' with chunks of different dictionaries, a dictionary holding a value twice
    (where Arrow's value_counts of the dictionary array miscounts) or a null, null rows, codes of
    any integer type and sliced chunks."""
    from synthreg.validators.rules import _count_into

    rng = np.random.default_rng(seed)
    words = ["a", "b", "c", "d", None]
    code_type = [pa.int8(), pa.int16(), pa.uint8(), pa.int32(), pa.int64()][seed]
    chunks = []
    for _ in range(4):
        drawn = list(rng.choice(np.array(words, dtype=object), size=rng.integers(1, 7)))
        dictionary = pa.array(drawn, type=pa.string())
        codes = rng.integers(0, len(dictionary), size=200)
        mask = rng.random(200) < 0.1
        chunk = pa.DictionaryArray.from_arrays(pa.array(codes, code_type, mask=mask), dictionary)
        chunks.append(chunk.slice(int(rng.integers(0, 50)), int(rng.integers(0, 150))))  # offsets too
    values = pa.chunked_array(chunks, type=pa.dictionary(code_type, pa.string()))
    got: dict[Any, int] = {}
    _count_into(got, values)
    decoded = pc.value_counts(values.cast(pa.string()).drop_null()).to_pylist()
    assert got == {d["values"]: d["counts"] for d in decoded}
    plain: dict[Any, int] = {}
    _count_into(plain, values.cast(pa.string()))
    assert plain == got
