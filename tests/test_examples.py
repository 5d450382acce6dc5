"""Every template in examples/ loads, generates at a small scale and passes its own checks.

Each spec is scaled down to 2%, generated, validated with ``validate_tables`` (Great
Expectations plus our schema and foreign-key checks), and then checked independently
with DuckDB: every foreign key resolves and every ``after:`` time order holds, with
the pairs read from the spec model rather than listed here.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, load_spec
from synthreg.validators import validate_tables

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
SCALE = 0.02


def _after_pairs(spec: Spec) -> list[tuple[str, str, str, str, str, str]]:
    """(child, column, via fk, parent, parent key, parent column) for every ``after:``."""
    pairs = []
    for tname, table in spec.tables.items():
        fks = table.foreign_keys()
        for cname, col in table.columns.items():
            if col.after is None:
                continue
            parent, pcol = col.after.split(".", 1)
            via = col.via or next(fk for fk, (p, _) in fks.items() if p == parent)
            pairs.append((tname, cname, via, parent, fks[via][1], pcol))
    return pairs


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda path: path.name)
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path]:
    path: Path = request.param
    spec = apply_overrides(load_spec(path), scale=SCALE, source=str(path))
    root = tmp_path_factory.mktemp(path.stem)
    generate(spec, root, workers=1)
    return spec, root / "tables"


def _connect(spec: Spec, tables: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for name in spec.tables:
        con.execute(f"create view {name} as select * from read_parquet('{tables / name}/*.parquet')")
    return con


def test_example_passes_its_validation_suite(generated: tuple[Spec, Path]) -> None:
    spec, tables = generated
    result = validate_tables(spec, tables)
    failures = [(c.table, c.check, c.column, c.observed) for c in result.checks if not c.success]
    assert result.success and result.failed == 0, failures
    assert result.evaluated > 0


def test_every_foreign_key_resolves(generated: tuple[Spec, Path]) -> None:
    spec, tables = generated
    con = _connect(spec, tables)
    for tname, table in spec.tables.items():
        assert con.execute(f"select count(*) from {tname}").fetchone() == (table.rows,)
        for column, (parent, key) in table.foreign_keys().items():
            orphans = con.execute(
                f"select count(*) from {tname} c where c.{column} is not null "
                f"and not exists (select 1 from {parent} p where p.{key} = c.{column})"
            ).fetchone()
            assert orphans == (0,), f"{tname}.{column} -> {parent}.{key}: orphan rows"


def test_every_after_pair_holds(generated: tuple[Spec, Path]) -> None:
    spec, tables = generated
    con = _connect(spec, tables)
    for child, column, via, parent, key, pcol in _after_pairs(spec):
        joined, violations = con.execute(
            f"select count(*), count(*) filter (where c.{column} < p.{pcol}) "
            f"from {child} c join {parent} p on c.{via} = p.{key} "
            f"where c.{column} is not null and p.{pcol} is not null"
        ).fetchone()
        where = f"{child}.{column} after {parent}.{pcol} (via {via})"
        assert joined > 0, f"{where}: no joined rows, the check would be vacuous"
        assert violations == 0, f"{where}: {violations} of {joined} rows precede their parent"


def test_templates_declare_what_the_registry_needs() -> None:
    assert {p.name for p in EXAMPLES} >= {"saas.yaml", "healthcare.yaml", "fintech.yaml"}
    for path in EXAMPLES:
        spec = load_spec(path)
        assert spec.description and spec.tags, path.name
        assert spec.tables and all(t.primary_key for t in spec.tables.values()), path.name
