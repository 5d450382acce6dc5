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


def test_redistribute_keeps_the_column_total_when_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = generate(_spec(), tmp_path / "free")
    assert _max_group_sum(tmp_path / "free/tables/shifts") > 14  # a few groups exceed 14 hours
    counts = _spy_buckets(monkeypatch, 6_000)  # what is moved crosses buckets
    result = generate(_spec(constraints=_limit("redistribute", 14)), tmp_path / "r", workers=2)
    assert counts == [4]
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


def test_group_ids_make_the_groups_a_sort_of_the_keys_makes() -> None:
    """``group_ids`` (each column's ranks combined in mixed radix) puts rows in the same groups as
    ``np.unique(keys, axis=0)``, numbered 0..n-1 (which group gets which number is free)."""
    import pyarrow as pa

    from synthreg.generators.group_rules import _key, group_ids

    rng = np.random.default_rng(5)
    n = 5000
    words = np.array(["b", "a", "c", None, "dd"], dtype=object)
    dictionary = pa.array(words[rng.integers(0, 3, n)], type=pa.string()).dictionary_encode()
    data = pa.table(
        {
            "near": pa.array(rng.integers(-3, 40, n)),  # ranked through a table of the span
            "far": pa.array(rng.integers(-(2**62), 2**62, n) // 2**40 * 2**40),  # by sorting
            "f": pa.array(np.round(rng.normal(0, 2, n), 1)),
            "s": pa.array(words[rng.integers(0, 5, n)], type=pa.string()),
            "b": pa.array(rng.random(n) < 0.5),
        }
    )
    # a dictionary column whose chunks have different dictionaries (parts met in a bucket)
    other = pa.array(words[rng.integers(1, 5, n)], type=pa.string()).dictionary_encode()
    chunks = pa.chunked_array([dictionary.slice(0, 2000), other.slice(2000)])
    data = data.append_column("d", chunks)
    for columns in (
        ["near"],
        ["far"],
        ["d"],
        ["f", "s"],
        ["near", "far", "d", "b"],
        ["s", "f", "near", "far"],
    ):
        decoded = [
            _key(pa.chunked_array([data.column(c).cast(pa.string())])) if c == "d" else _key(data.column(c))
            for c in columns
        ]
        expected = np.unique(np.stack(decoded, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
        got = group_ids(data, columns)
        pairs = set(zip(got.tolist(), expected.tolist(), strict=True))
        assert len(pairs) == len(set(expected.tolist())) == got.max() + 1, columns  # one-to-one, dense
    assert len(group_ids(data.slice(0, 0), ["near", "s"])) == 0


_CHAIN = [  # string and date keys, floats with and without decimals, each kind of rule
    {
        "kind": "sum_limit",
        "group_by": ["employee_id", "work_date"],
        "column": "hours",
        "limit": 8,
        "action": "cap",
    },
    {
        "kind": "sum_limit",
        "group_by": ["name_initial"],
        "column": "raw",
        "limit": 39_500,
        "action": "redistribute",
    },
    {"kind": "max_rows_per_group", "group_by": ["employee_id", "work_date"], "limit": 30, "action": "drop"},
    {"kind": "sum_limit", "group_by": ["employee_id"], "column": "raw", "limit": 2_800, "action": "drop"},
    {"kind": "unique_combination", "columns": ["employee_id", "work_date", "name_initial"], "action": "drop"},
]


def _chain_spec(rules: list[dict[str, Any]]) -> Any:
    data = copy.deepcopy(BASE)
    columns = data["tables"]["shifts"]["columns"]
    columns["raw"] = {
        "type": "float",
        "distribution": {"kind": "uniform", "low": 1, "high": 6},
        "null_rate": 0.1,
    }
    columns["name_initial"] = {"type": "category", "values": {c: 1 / 16 for c in "ABCDEFGHIJKLMNOP"}}
    data["tables"]["shifts"]["constraints"] = rules
    data["tables"]["shifts"]["rows"] = 200_000  # 4 parts (digest blocks of 65,536 rows)
    return parse_spec(data, "shifts.yaml")


def _spy_buckets(monkeypatch: pytest.MonkeyPatch, rows_per_bucket: int) -> list[int]:
    from synthreg.generators import group_rules

    counts: list[int] = []
    real = group_rules._bucket_count
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", rows_per_bucket)
    monkeypatch.setattr(group_rules, "_SPLIT_MIN_ROWS", 1)
    monkeypatch.setattr(group_rules, "_bucket_count", lambda *a: counts.append(real(*a)) or counts[-1])
    return counts


def test_group_rules_give_one_result_for_any_buckets_parts_and_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shuffle by group hash gives the bytes of one bucket in one process: rows of a group
    meet in one bucket in table order, and the redistribution's sums are exact."""
    from synthreg.generators.group_rules import _bucket_count

    spec = _chain_spec(_CHAIN)
    assert _bucket_count(200_000, 1) == 1
    whole = generate(spec, tmp_path / "whole", workers=1)  # one bucket, in this process
    counts = _spy_buckets(monkeypatch, 20_000)
    split = generate(spec, tmp_path / "split", chunk_rows=1_500, workers=2)
    assert counts == [10]  # 200,000 rows in 10 buckets, from several parts, on 2 workers
    assert len(split.tables["shifts"].files) == 4
    assert split.content_digest == whole.content_digest
    # the digest the rewriting tasks pieced together is the one reading the files gives
    from synthreg.digest import TableHasher

    hasher = TableHasher(split.tables["shifts"].schema)
    for path in split.tables["shifts"].files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=10_000):
            hasher.update(batch)
    assert hasher.hexdigest() == split.tables["shifts"].digest and hasher.rows == split.rows["shifts"]
    changed = split.params["constraints"]["shifts"]
    assert changed == whole.params["constraints"]["shifts"]
    assert all(changed[f"{r['kind']}#{i}"]["rows_changed"] > 0 for i, r in enumerate(_CHAIN)), changed
    assert not (tmp_path / "split" / ".groups").exists()  # the pieces are gone
    assert not list((tmp_path / "split").rglob("*.tmp"))


def test_dropping_keeps_the_first_rows_of_each_group_in_table_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked against pandas over the whole unconstrained table, with 7 buckets."""
    rules = [
        {
            "kind": "max_rows_per_group",
            "group_by": ["name_initial", "work_date"],
            "limit": 30,
            "action": "drop",
        },
        {"kind": "unique_combination", "columns": ["employee_id", "name_initial"], "action": "drop"},
    ]
    free = generate(_chain_spec([]), tmp_path / "free", workers=2)
    counts = _spy_buckets(monkeypatch, 30_000)
    kept = generate(_chain_spec(rules), tmp_path / "kept", chunk_rows=2_500, workers=2)
    assert counts == [7]
    table = pq.read_table(tmp_path / "free/tables/shifts").to_pandas()
    table = table[table.groupby(["name_initial", "work_date"], observed=True).cumcount() < 30]
    table = table.drop_duplicates(["employee_id", "name_initial"])
    assert kept.rows["shifts"] == len(table) < free.rows["shifts"]
    got = pq.read_table(tmp_path / "kept/tables/shifts").to_pandas()
    assert got["id"].tolist() == table["id"].tolist()


def test_a_moved_value_that_does_not_fit_leaves_every_part_as_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    rules = [
        {
            "kind": "sum_limit",
            "group_by": ["employee_id"],
            "column": "n",
            "limit": 20_000,
            "action": "redistribute",
        }
    ]
    data = copy.deepcopy(BASE)
    data["tables"]["shifts"]["rows"] = 200_000  # 4 parts
    # int8; the rows of a few employees sum far past the limit, others have room for thousands each
    data["tables"]["shifts"]["columns"]["n"] = {"type": "int", "min": 1, "max": 60}
    data["tables"]["shifts"]["columns"]["employee_id"]["skew"] = 10
    free = generate(parse_spec(data, "shifts.yaml"), tmp_path / "free", chunk_rows=2_500, workers=2)
    data["tables"]["shifts"]["constraints"] = rules
    counts = _spy_buckets(monkeypatch, 30_000)
    with pytest.raises(SpecError, match=r"tables\.shifts\.constraints\.0: moving n within its limit makes"):
        generate(parse_spec(data, "shifts.yaml"), tmp_path / "c", chunk_rows=2_500, workers=2)
    assert counts == [7]

    def digests(root: Path) -> list[str]:
        parts = sorted((root / "tables/shifts").iterdir())
        return [p.name + hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]

    assert len(free.tables["shifts"].files) > 1
    assert digests(tmp_path / "c") == digests(tmp_path / "free")  # no part rewritten, no .tmp left
    assert not (tmp_path / "c" / ".groups").exists()


def test_exact_sums_merge_to_the_correctly_rounded_total() -> None:
    """A redistribution's excess and room are summed by bucket and merged: the merged total is
    ``math.fsum`` of all the values, however they were split (a float sum is not)."""
    import math

    from synthreg.generators.group_rules import _exact, _merge_exact

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(0, 6, 50_000), [0.0, 1e-300, 1e12, 3.0, 0.1]])
    rng.shuffle(values)
    expected = math.fsum(values)
    for pieces in (1, 2, 7, 1000):
        assert _merge_exact([_exact(p) for p in np.array_split(values, pieces)]) == expected
    assert float(np.sum(values[:20_000])) + float(np.sum(values[20_000:])) != expected  # why it matters
    assert _merge_exact([]) == 0.0 and _merge_exact([_exact(np.array([]))]) == 0.0


def test_text_hashes_equal_strings_alike_wherever_they_sit() -> None:
    """Buckets put equal keys together: a string hashes the same sliced, in another array, or
    dictionary-encoded (a category column), and a null apart from the empty string."""
    import pyarrow as pa

    from synthreg.generators.group_rules import _buckets, _text_hash

    words = ["", "a", "ab", "abcdefgh", "abcdefghi", "ünïcødé, a longer string", None]
    plain = pa.array(words)
    sliced = pa.array(["x", "yy", *words]).slice(2)  # offsets that do not start at 0
    assert np.array_equal(_text_hash(plain), _text_hash(sliced))
    assert len(set(_text_hash(plain).tolist())) == len(words)  # these all differ, null included
    as_plain = pa.table({"k": plain})
    as_category = pa.table(
        {"k": pa.chunked_array([plain.slice(0, 3).dictionary_encode(), plain.slice(3).dictionary_encode()])}
    )
    assert np.array_equal(_buckets(as_plain, ["k"], 1000), _buckets(as_category, ["k"], 1000))
    assert len(_text_hash(pa.array([], type=pa.string()))) == 0
