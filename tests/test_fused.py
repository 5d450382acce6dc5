"""Per-row expectations run by the generation workers (synthreg/validators/fused.py): merged, they
give exactly what validate_tables computes from the files, in a pool and on a Dask cluster; a part
changed after the worker saw it, or a table the constraints rewrote, is validated from its files."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import row_suite_runs

from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import parse_spec
from synthreg.validators import suite
from synthreg.validators.fused import PartTallies, PartValidator
from synthreg.validators.suite import validate_tables

SPEC: dict[str, Any] = {
    "seed": 5,
    "tables": {
        "customers": {
            "rows": 3000,
            "primary_key": "customer_id",
            "columns": {
                "customer_id": {"type": "int"},
                "visits": {"type": "int", "min": 0, "max": 40, "null_rate": 0.05},
                "tier": {"type": "category", "values": {"free": 0.7, "pro": 0.3}},
            },
        },
        "orders": {
            "rows": 150_000,  # several parts at the chunk sizes below
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
                "express": {"type": "bool", "p": 0.2, "null_rate": 0.02},
            },
            # fails on purpose: counts, percent and the first examples must merge exactly
            "expectations": [
                {
                    "expectation": "expect_column_values_to_be_between",
                    "kwargs": {"column": "amount", "max_value": 30},
                },
                {
                    "expectation": "expect_column_values_to_not_be_null",
                    "kwargs": {"column": "score", "mostly": 0.95},
                },
            ],
        },
    },
}


def _spec(data: dict[str, Any] = SPEC) -> Spec:
    return parse_spec(copy.deepcopy(data), "fused.yaml")


def _without_seconds(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "seconds"}


def _counted(real: Any, name: str, calls: list[str]) -> Any:
    def wrapper(*args: Any) -> Any:
        calls.append(name)
        return real(*args)

    return wrapper


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path, dict[str, Any]]:
    spec = _spec()
    root = tmp_path_factory.mktemp("fused")
    gen = generate(
        spec,
        root,
        workers=2,
        chunk_rows=16_384,
        logical_block_rows=8_192,
        observe=PartValidator(spec, "fused.yaml"),
    )
    assert len(gen.observed["orders"]) > 1
    assert all(isinstance(r, PartTallies) for _, r in gen.observed["orders"])
    return spec, root / "tables", gen.observed


def test_merged_results_are_the_ones_read_from_the_files(
    pooled: tuple[Spec, Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables, observed = pooled
    runs = row_suite_runs(monkeypatch)
    read: list[str] = []  # key columns read here for uniqueness and foreign keys
    for name in ("unique_check", "fk_check"):
        monkeypatch.setattr(suite, name, _counted(getattr(suite, name), name, read))
    merged = validate_tables(spec, tables, source="fused.yaml", from_parts=observed).to_dict()
    assert runs == []  # no per-row suite ran here: every table came from the workers
    assert read == []  # nor were the keys read: the workers' facts (ordered, consecutive) sufficed
    monkeypatch.undo()
    runs = row_suite_runs(monkeypatch)
    plain = validate_tables(spec, tables, source="fused.yaml").to_dict()
    assert runs  # and these did
    assert _without_seconds(merged) == _without_seconds(plain)
    amount = next(c for c in merged["checks"] if c["column"] == "amount" and "max_value" in c["kwargs"]
                  and c["kwargs"]["max_value"] == 30)  # fmt: skip
    assert not amount["success"] and amount["observed"]["unexpected_count"] > 0
    assert len(amount["observed"]["partial_unexpected_list"]) == 20


def test_a_part_changed_after_the_worker_saw_it_is_read_again(
    pooled: tuple[Spec, Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables, observed = pooled
    copy_dir = tmp_path / "tables"
    import shutil

    shutil.copytree(tables, copy_dir)  # copies keep sizes but not modification times
    part = sorted((copy_dir / "orders").glob("part-*.parquet"))[1]
    data = pq.read_table(part)
    pq.write_table(data.slice(0, data.num_rows - 1), part)
    runs = row_suite_runs(monkeypatch)
    merged = validate_tables(spec, copy_dir, source="fused.yaml", from_parts=observed).to_dict()
    assert runs  # read from the files
    runs.clear()
    plain = validate_tables(spec, copy_dir, source="fused.yaml").to_dict()
    assert _without_seconds(merged) == _without_seconds(plain)


def test_a_worker_that_could_not_validate_leaves_it_to_validate_tables(tmp_path: Path) -> None:
    data = copy.deepcopy(SPEC)
    data["tables"]["orders"]["expectations"] = [
        {"expectation": "expect_no_such_thing", "kwargs": {"column": "amount"}}
    ]
    spec = _spec(data)
    gen = generate(spec, tmp_path, workers=1, chunk_rows=16_384, observe=PartValidator(spec, "fused.yaml"))
    assert all(r is None for _, r in gen.observed["orders"])
    from synthreg.errors import SpecError

    with pytest.raises(SpecError, match="expect_no_such_thing"):
        validate_tables(spec, tmp_path / "tables", source="fused.yaml", from_parts=gen.observed)


def test_on_a_dask_cluster_the_workers_validate_and_the_results_merge(
    pooled: tuple[Spec, Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables, _ = pooled
    gen = generate(
        spec, tmp_path, cluster="local:2", chunk_rows=16_384, logical_block_rows=8_192,
        observe=PartValidator(spec, "fused.yaml"),
    )  # fmt: skip
    assert all(isinstance(r, PartTallies) for _, r in gen.observed["orders"])
    runs = row_suite_runs(monkeypatch)
    merged = validate_tables(
        spec, tmp_path / "tables", source="fused.yaml", from_parts=gen.observed
    ).to_dict()
    assert runs == []
    plain = validate_tables(spec, tables, source="fused.yaml").to_dict()  # the pool's parts
    assert _without_seconds(merged) == _without_seconds(plain)


def test_create_with_the_workers_validating_records_the_same_validation(
    workspace: Path, small_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import synthreg
    from synthreg import env
    from synthreg.registry import sidecar

    monkeypatch.setenv(sidecar.SIDECAR, "0")  # validate in this process, where the runs are counted
    runs = row_suite_runs(monkeypatch)
    reg = synthreg.open(workspace)
    made, row_runs = {}, {}
    for setting in ("1", "0"):
        monkeypatch.setenv(env.FUSED, setting)
        runs.clear()
        made[setting] = reg.create(f"fused{setting}", spec=small_spec, workers=2)
        row_runs[setting] = len(runs)
    assert row_runs == {"1": 0, "0": 2}  # the workers ran both tables' per-row suites
    docs = [json.loads((workspace / made[s].path / "validation.json").read_text()) for s in ("1", "0")]
    assert made["1"].content_digest == made["0"].content_digest
    assert _without_seconds(docs[0]) == _without_seconds(docs[1])
    assert docs[0]["evaluated"] > 0


def test_when_create_asks_the_workers_to_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    from synthreg import env
    from synthreg.registry.create import _part_validator
    from synthreg.validators.gx_runner import preload

    preload()  # as in the warm server, whose pool workers inherit it
    spec = _spec()
    monkeypatch.delenv(env.FUSED, raising=False)
    assert _part_validator(spec, 2, "tcp://scheduler:8786") is not None  # a remote cluster
    assert _part_validator(spec, 2, "local:2") is None  # fresh workers would each import GX
    assert _part_validator(spec, 2, None) is None  # 2 cores: generation keeps both busy
    assert _part_validator(spec, 8, None) is not None  # many workers, GX imported here
    monkeypatch.setenv(env.FUSED, "1")
    assert _part_validator(spec, 2, "local:2") is not None
    monkeypatch.setenv(env.FUSED, "0")
    assert _part_validator(spec, 8, "tcp://scheduler:8786") is None
