"""Version diffs on real generated data, checked against figures computed here with NumPy."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from synthreg.errors import NotFoundError
from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, parse_spec
from synthreg.registry.diff import DiffResult, diff_versions
from synthreg.registry.diff_report import render_html, render_markdown

SPEC = r"""
description: Diff test spec.
seed: 5
tables:
  customers:
    rows: 2000
    primary_key: customer_id
    columns:
      customer_id: {type: int}
      name: {type: text, vocab: full_name}
      segment: {type: category, values: {retail: 0.6, smb: 0.3, enterprise: 0.1}}
      churn: {type: category, values: {stay: 0.8, leave: 0.2}, label: true}
      age: {type: int, distribution: {kind: normal, mean: 40, std: 12}, min: 18, max: 90}
      signed_up_at: {type: datetime, start: 2023-01-01, end: 2024-12-31}
  orders:
    rows: 4000
    primary_key: order_id
    columns:
      order_id: {type: int}
      customer_id: {type: int, foreign_key: customers.customer_id, skew: 0.5}
      amount: {type: float, distribution: {kind: lognormal, mean: 3, sigma: 0.6}, min: 1, decimals: 2}
      quantity: {type: int, distribution: {kind: poisson, lam: 2}, min: 1, max: 20}
      channel: {type: category, values: [web, store, phone]}
      note: {type: text, pattern: 'N-\d{4}'}
  events:
    rows: 1500
    columns:
      customer_id: {type: int, foreign_key: customers.customer_id}
      kind: {type: category, values: [view, click, buy]}
      value: {type: float, distribution: {kind: normal, mean: 10, std: 3}}
"""

# The edits that turn v1 into v3: exact expected row changes.
DELETED, CHANGED, APPENDED = 100, 150, 80
EVENTS_DELETED, EVENTS_DUPLICATED = 40, 25


# ---------------------------------------------------------------- building versions


def _write_version(spec: Spec, directory: Path, version: int) -> None:
    result = generate(spec, directory, workers=1)
    (directory / "spec.yaml").write_text(spec.frozen_yaml())
    manifest = {
        "dataset": "shop",
        "version": version,
        "seed": spec.seed,
        "spec_sha256": spec.sha256(),
        "content_digest": result.content_digest,
        "tables": {
            n: {"rows": t.rows, "digest": t.digest, "files": [p.name for p in t.files]}
            for n, t in result.tables.items()
        },
        "generation": {"model": "synthreg-numpy/test", "params": {"rows": result.rows, **result.params}},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _read(directory: Path, table: str) -> pa.Table:
    parts = sorted((directory / "tables" / table).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def _rewrite(directory: Path, table: str, data: pa.Table) -> None:
    """Replace a table's parts with two new ones (a version has several parts)."""
    for old in (directory / "tables" / table).glob("*.parquet"):
        old.unlink()
    half = data.num_rows // 2
    pq.write_table(data.slice(0, half), directory / "tables" / table / "part-00000.parquet")
    pq.write_table(data.slice(half), directory / "tables" / table / "part-00001.parquet")


def _edit_customers(directory: Path) -> None:
    t = _read(directory, "customers")
    keys = t["customer_id"].to_numpy()
    changed = np.isin(keys, keys[200 : 200 + CHANGED])
    ages = t["age"].to_numpy()
    age = np.where(changed, 95, ages).astype(ages.dtype)
    segment = np.where(changed, "vip", np.asarray(t["segment"].to_pylist(), dtype=object))
    t = t.set_column(t.schema.get_field_index("age"), "age", pa.array(age))
    seg_field = t.schema.get_field_index("segment")
    t = t.set_column(seg_field, "segment", pc.dictionary_encode(pa.array(segment, pa.string())))
    kept = t.filter(pa.array(~np.isin(keys, keys[10 : 10 + DELETED])))
    extra = t.slice(500, APPENDED)
    new_keys = pa.array(np.arange(10_001, 10_001 + APPENDED), t.schema.field("customer_id").type)
    extra = extra.set_column(0, "customer_id", new_keys)
    _rewrite(directory, "customers", pa.concat_tables([kept, extra]))


def _edit_orders(directory: Path) -> None:
    """Schema changes only: add coupon, remove channel, retype quantity int -> float (same values)."""
    t = _read(directory, "orders")
    t = t.drop_columns(["channel"])
    quantity = t.schema.get_field_index("quantity")
    t = t.set_column(quantity, "quantity", pc.cast(t["quantity"], pa.float64()))
    coupons = np.where(np.arange(t.num_rows) % 3 == 0, "SAVE10", "none")
    t = t.append_column("coupon", pc.dictionary_encode(pa.array(coupons, pa.string())))
    _rewrite(directory, "orders", t)


def _edit_events(directory: Path) -> None:
    """No primary key: delete some rows, duplicate others."""
    t = _read(directory, "events")
    keep = np.ones(t.num_rows, dtype=bool)
    keep[100 : 100 + EVENTS_DELETED] = False
    _rewrite(
        directory, "events", pa.concat_tables([t.filter(pa.array(keep)), t.slice(500, EVENTS_DUPLICATED)])
    )


def _edit_spec(directory: Path) -> None:
    data = yaml.safe_load((directory / "spec.yaml").read_text())
    columns = data["tables"]["orders"]["columns"]
    del columns["channel"]
    columns["quantity"]["type"] = "float"
    columns["coupon"] = {"type": "category", "values": ["none", "SAVE10"]}
    (directory / "spec.yaml").write_text(parse_spec(data).frozen_yaml())


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1; v2: another seed, more rows, shifted distributions; v3: v1 edited by hand; v1copy."""
    root = tmp_path_factory.mktemp("diff")
    spec = parse_spec(yaml.safe_load(SPEC))
    _write_version(spec, root / "v1", 1)
    data = apply_overrides(spec, seed=6, rows={"customers": 2300, "orders": 4500}).model_dump(by_alias=True)
    data["tables"]["customers"]["columns"]["segment"]["values"] = {
        "retail": 0.4,
        "smb": 0.4,
        "enterprise": 0.2,
    }
    data["tables"]["orders"]["columns"]["amount"]["distribution"]["params"]["mean"] = 3.4
    _write_version(parse_spec(data), root / "v2", 2)
    shutil.copytree(root / "v1", root / "v3")
    _edit_customers(root / "v3")
    _edit_orders(root / "v3")
    _edit_events(root / "v3")
    _edit_spec(root / "v3")
    shutil.copytree(root / "v1", root / "v1copy")
    return {"root": root, "v1": root / "v1", "v2": root / "v2", "v3": root / "v3", "v1copy": root / "v1copy"}


@pytest.fixture(scope="module")
def d12(versions: dict[str, Path]) -> DiffResult:
    return diff_versions(
        versions["v1"], versions["v2"], "shop@v1", "shop@v2", plots_dir=versions["root"] / "p12"
    )


@pytest.fixture(scope="module")
def d13(versions: dict[str, Path]) -> DiffResult:
    return diff_versions(
        versions["v1"], versions["v3"], "shop@v1", "shop@v3", plots_dir=versions["root"] / "p13"
    )


# ---------------------------------------------------------------- independent figures


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """max |F_a(x) - F_b(x)| over the pooled sample."""
    a, b = np.sort(a), np.sort(b)
    pooled = np.concatenate([a, b])
    fa = np.searchsorted(a, pooled, side="right") / len(a)
    fb = np.searchsorted(b, pooled, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def _psi(a: np.ndarray, b: np.ndarray) -> float:
    edges = np.unique(np.quantile(a, [i / 10 for i in range(1, 10)]))
    pa = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1) / len(a)
    pb = np.bincount(np.searchsorted(edges, b, side="left"), minlength=len(edges) + 1) / len(b)
    pa, pb = np.maximum(pa, 1e-4), np.maximum(pb, 1e-4)
    return float(np.sum((pb - pa) * np.log(pb / pa)))


def _shares(values: list[Any]) -> dict[str, float]:
    cats, counts = np.unique(np.asarray([v for v in values if v is not None], dtype=str), return_counts=True)
    return {str(c): n / counts.sum() for c, n in zip(cats, counts, strict=True)}


def _js(p: dict[str, float], q: dict[str, float]) -> float:
    keys = sorted(p.keys() | q.keys())
    pv, qv = np.array([p.get(k, 0.0) for k in keys]), np.array([q.get(k, 0.0) for k in keys])
    m = (pv + qv) / 2
    kl = lambda x: np.sum(np.where(x > 0, x * np.log2(np.where(x > 0, x, 1) / m), 0.0))  # noqa: E731
    return math.sqrt(0.5 * kl(pv) + 0.5 * kl(qv))


def _key_changes(a: pa.Table, b: pa.Table, key: str) -> dict[str, int]:
    rows_a = {r.pop(key): r for r in a.to_pylist()}
    rows_b = {r.pop(key): r for r in b.to_pylist()}
    both = rows_a.keys() & rows_b.keys()
    changed = sum(1 for k in both if rows_a[k] != rows_b[k])
    return {
        "added": len(rows_b.keys() - rows_a.keys()),
        "removed": len(rows_a.keys() - rows_b.keys()),
        "changed": changed,
        "unchanged": len(both) - changed,
    }


# ---------------------------------------------------------------- new seed, new row counts, shifted spec


def test_rows_and_key_changes_match_a_direct_comparison(d12: DiffResult, versions: dict[str, Path]) -> None:
    for table, key in (("customers", "customer_id"), ("orders", "order_id")):
        a, b = _read(versions["v1"], table), _read(versions["v2"], table)
        t = d12.tables[table]
        assert t["status"] == "both"
        assert t["rows"] == {"a": a.num_rows, "b": b.num_rows}
        expected = _key_changes(a, b, key)
        assert {k: t["rows_diff"][k] for k in expected} == expected
        assert t["rows_diff"]["mode"] == "key" and t["rows_diff"]["key"] == key
    assert d12.tables["customers"]["rows"] == {"a": 2000, "b": 2300}
    assert d12.tables["customers"]["rows_diff"]["added"] == 300
    assert d12.tables["customers"]["rows_diff"]["examples"]["added"] == [2001, 2002, 2003, 2004, 2005]


def test_numeric_stats_ks_and_psi_match_numpy(d12: DiffResult, versions: dict[str, Path]) -> None:
    cases = [("customers", "age"), ("orders", "amount"), ("customers", "signed_up_at")]
    for table, column in cases:
        a = _read(versions["v1"], table)[column].cast(
            pa.int64() if column == "signed_up_at" else pa.float64()
        )
        b = _read(versions["v2"], table)[column].cast(
            pa.int64() if column == "signed_up_at" else pa.float64()
        )
        xa, xb = a.to_numpy().astype(float), b.to_numpy().astype(float)
        stats = d12.tables[table]["columns"][column]
        assert stats["kind"] == "numeric"
        assert stats["ks"] == pytest.approx(_ks(xa, xb), abs=1e-12)
        assert stats["psi"] == pytest.approx(_psi(xa, xb), rel=1e-9)
        if column != "signed_up_at":  # dates are compared as epoch seconds, NumPy has milliseconds here
            assert stats["a"]["mean"] == pytest.approx(xa.mean(), rel=1e-12)
            assert stats["b"]["std"] == pytest.approx(xb.std(ddof=1), rel=1e-9)
            assert stats["a"]["quantiles"]["p95"] == pytest.approx(np.quantile(xa, 0.95), rel=1e-12)
            assert stats["b"]["min"] == xb.min() and stats["b"]["max"] == xb.max()
        assert stats["a"]["count"] == len(xa) and stats["a"]["nulls"] == 0
    amount = d12.tables["orders"]["columns"]["amount"]
    assert amount["changed"] and any(r.startswith("KS") for r in amount["reasons"])
    assert not d12.tables["customers"]["columns"]["age"]["changed"]  # another seed, same distribution


def test_categorical_js_new_categories_and_label_ratio(d12: DiffResult, versions: dict[str, Path]) -> None:
    pa_ = _shares(_read(versions["v1"], "customers")["segment"].to_pylist())
    pb_ = _shares(_read(versions["v2"], "customers")["segment"].to_pylist())
    segment = d12.tables["customers"]["columns"]["segment"]
    assert segment["kind"] == "categorical"
    assert segment["js"] == pytest.approx(_js(pa_, pb_), abs=1e-12)
    assert segment["a"]["proportions"] == pytest.approx(pa_) and segment["b"]["proportions"] == pytest.approx(
        pb_
    )
    assert segment["changed"] and segment["js"] > 0.05
    churn = d12.tables["customers"]["columns"]["churn"]
    expected = _shares(_read(versions["v2"], "customers")["churn"].to_pylist())
    assert churn["label_ratio"]["b"] == pytest.approx(expected)
    assert set(churn["label_ratio"]["delta"]) == {"stay", "leave"}
    assert "label_ratio" not in segment


def test_text_columns_report_lengths_and_distinct_ratio(d12: DiffResult, versions: dict[str, Path]) -> None:
    for table, column in (("customers", "name"), ("orders", "note")):
        values = [v for v in _read(versions["v2"], table)[column].to_pylist() if v is not None]
        stats = d12.tables[table]["columns"][column]
        assert stats["kind"] == "text"
        assert stats["b"]["distinct_ratio"] == pytest.approx(len(set(values)) / len(values))
        lengths = np.array([len(v) for v in values], dtype=float)
        assert stats["b"]["length"]["p50"] == pytest.approx(np.quantile(lengths, 0.5))
        a_lengths = np.array([len(v) for v in _read(versions["v1"], table)[column].to_pylist()], dtype=float)
        assert stats["ks"] == pytest.approx(_ks(a_lengths, lengths), abs=1e-12)


def test_generation_changes(d12: DiffResult) -> None:
    g = d12.generation
    assert g["seed"] == {"a": 5, "b": 6}
    assert g["model"] == {"a": "synthreg-numpy/test", "b": "synthreg-numpy/test"}
    assert g["spec_sha256"]["a"] != g["spec_sha256"]["b"]
    assert g["params"]["rows.customers"] == [2000, 2300]
    assert "rows.events" not in g["params"]
    assert "-seed: 5" in g["spec_diff"] and "+seed: 6" in g["spec_diff"]
    assert g["spec_changed"]
    assert "seed 5 -> 6" in d12.summary["text"]


# ---------------------------------------------------------------- v1 edited by hand: exact expectations


def test_edited_copy_gives_exact_row_changes(d13: DiffResult) -> None:
    customers = d13.tables["customers"]["rows_diff"]
    assert (customers["added"], customers["removed"], customers["changed"]) == (APPENDED, DELETED, CHANGED)
    assert customers["unchanged"] == 2000 - DELETED - CHANGED
    assert customers["examples"]["added"] == [10_001, 10_002, 10_003, 10_004, 10_005]
    assert customers["examples"]["removed"] == [11, 12, 13, 14, 15]
    assert customers["examples"]["changed"] == [201, 202, 203, 204, 205]
    # Schema changes only: the retyped quantity keeps its values, so no row changed.
    orders = d13.tables["orders"]["rows_diff"]
    assert (orders["added"], orders["removed"], orders["changed"], orders["unchanged"]) == (0, 0, 0, 4000)
    events = d13.tables["events"]["rows_diff"]
    assert events["mode"] == "row_hash" and events["changed"] is None
    assert (events["added"], events["removed"]) == (EVENTS_DUPLICATED, EVENTS_DELETED)
    assert events["unchanged"] == 1500 - EVENTS_DELETED
    segment = d13.tables["customers"]["columns"]["segment"]
    assert segment["new"] == ["vip"] and segment["changed"]


def test_schema_changes(d13: DiffResult) -> None:
    schema = d13.tables["orders"]["schema"]
    assert schema == {
        "added": ["coupon"],
        "removed": ["channel"],
        "type_changed": {"quantity": ["int", "float"]},
    }
    quantity = d13.tables["orders"]["columns"]["quantity"]
    assert quantity["type"] == ["int", "float"] and quantity["ks"] == 0.0
    assert quantity["changed"] and quantity["reasons"] == ["type changed"]
    assert d13.tables["customers"]["schema"] == {"added": [], "removed": [], "type_changed": {}}
    s = d13.summary
    assert (s["columns_added"], s["columns_removed"], s["columns_retyped"]) == (1, 1, 1)
    assert re.search(r"^\+\s+coupon:$", d13.generation["spec_diff"], re.MULTILINE)
    assert re.search(r"^-\s+channel:$", d13.generation["spec_diff"], re.MULTILINE)
    assert not d13.generation["params"]  # same manifest facts: only the data was edited


def test_identical_versions_have_no_changes(versions: dict[str, Path]) -> None:
    d = diff_versions(versions["v1"], versions["v1copy"], "shop@v1", "shop@v1-copy")
    for table in d.tables.values():
        assert not table["changed"]
        assert table["rows_diff"]["added"] == table["rows_diff"]["removed"] == 0
        assert table["rows_diff"]["changed"] in (0, None)
        assert table["schema"] == {"added": [], "removed": [], "type_changed": {}}
        for stats in table["columns"].values():
            assert not stats["changed"] and stats["reasons"] == []
            assert stats.get("ks") in (None, 0.0) and stats.get("js") in (None, 0.0)
            assert stats.get("psi") in (None, 0.0)
    assert d.summary["text"] == "shop@v1 -> shop@v1-copy: no changes"
    assert d.summary["columns_changed"] == 0 and d.generation["spec_diff"] == ""


def test_a_dropped_table_is_reported_removed(versions: dict[str, Path], tmp_path: Path) -> None:
    v4 = tmp_path / "v4"
    shutil.copytree(versions["v1"], v4)
    shutil.rmtree(v4 / "tables" / "events")
    data = yaml.safe_load((v4 / "spec.yaml").read_text())
    del data["tables"]["events"]
    (v4 / "spec.yaml").write_text(parse_spec(data).frozen_yaml())
    d = diff_versions(versions["v1"], v4, "shop@v1", "shop@v4")
    events = d.tables["events"]
    assert events["status"] == "removed" and events["rows"] == {"a": 1500, "b": 0}
    assert events["rows_diff"]["removed"] == 1500 and d.summary["tables_removed"] == 1


def test_missing_version_parts_raise_not_found(versions: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist: check the ref"):
        diff_versions(versions["v1"], tmp_path / "nope", "shop@v1", "shop@v9")
    broken = tmp_path / "broken"
    shutil.copytree(versions["v1"], broken)
    shutil.rmtree(broken / "tables" / "orders")
    with pytest.raises(NotFoundError, match="no Parquet parts"):
        diff_versions(versions["v1"], broken, "shop@v1", "shop@broken")


# ---------------------------------------------------------------- serialisation, reports, plots


def test_to_dict_is_json(d12: DiffResult, d13: DiffResult) -> None:
    for d in (d12, d13):
        data = json.loads(json.dumps(d.to_dict(), allow_nan=False))
        assert data["a"] == "shop@v1" and data["seconds"] > 0
        assert set(data) == {"a", "b", "generation", "tables", "summary", "seconds"}


def test_plots_are_made_for_changed_columns(d12: DiffResult, versions: dict[str, Path]) -> None:
    plotted = {
        f"{t}.{c}": s["plot"]
        for t, table in d12.tables.items()
        for c, s in table["columns"].items()
        if "plot" in s
    }
    assert {"customers.segment", "orders.amount"} <= plotted.keys()
    assert set(plotted) <= set(d12.summary["changed_columns"])
    for name in plotted.values():
        assert (versions["root"] / "p12" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_report(d12: DiffResult, d13: DiffResult) -> None:
    md = render_markdown(d13, "plots")
    for qualified in d13.summary["changed_columns"]:
        assert f"| {qualified.split('.', 1)[1]} |" in md
    assert "```diff" in md and "Columns added: coupon" in md and "channel" in md
    assert "Label balance of churn" in md
    md12 = render_markdown(d12, "plots")
    assert "![customers.segment: a vs b](plots/customers.segment.png)" in md12
    assert "| KS | PSI | JS |" in md12


def test_html_report_is_self_contained(d12: DiffResult, versions: dict[str, Path]) -> None:
    page = render_html(d12, versions["root"] / "p12")
    assert "http://" not in page and "https://" not in page
    assert "data:image/png;base64," in page
    assert page.count("<img ") == sum(
        1 for t in d12.tables.values() for s in t["columns"].values() if "plot" in s
    )
    assert "shop@v1" in page and "<style>" in page
