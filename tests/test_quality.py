"""quality_metrics on real generated Parquet (checked against an independent NumPy
recomputation), on hand-built text with known duplicates, and the HTML report."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import synthreg.validators.parts
import synthreg.validators.quality as quality
from synthreg.generators.engine import generate
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import parse_spec
from synthreg.validators import validate_tables
from synthreg.validators.quality import quality_metrics
from synthreg.validators.report import render_validation_report

SPEC: dict[str, Any] = {
    "seed": 5,
    "tables": {
        "items": {
            "rows": 4000,
            "primary_key": "item_id",
            "columns": {
                "item_id": {"type": "int"},
                "tier": {"type": "category", "values": {"free": 0.6, "pro": 0.3, "team": 0.1}},
                "color": {"type": "category", "values": ["red", "green", "blue"], "null_rate": 0.05},
                "active": {"type": "bool", "p": 0.3, "null_rate": 0.1},
                "sentiment": {"type": "category", "values": {"pos": 0.7, "neg": 0.3}, "label": True},
                "review": {"type": "text", "vocab": "review"},
                "price": {
                    "type": "float",
                    "distribution": {"kind": "lognormal", "mean": 3, "sigma": 0.5},
                    "decimals": 2,
                },
                "created_at": {"type": "datetime", "start": "2024-01-01", "end": "2024-12-31"},
            },
        }
    },
}


def _split(table_dir: Path, parts: int) -> None:
    """Rewrite a table's parts as ``parts`` files, row order kept."""
    files = sorted(table_dir.glob("*.parquet"))
    data = pa.concat_tables([pq.read_table(f) for f in files])
    for f in files:
        f.unlink()
    bounds = np.linspace(0, data.num_rows, parts + 1).astype(int)
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        pq.write_table(data.slice(lo, hi - lo), table_dir / f"part-{i:05d}.parquet")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path]:
    """The generated spec data, in three parts."""
    spec = parse_spec(SPEC, "items.yaml")
    out = tmp_path_factory.mktemp("clean")
    generate(spec, out, workers=1)
    _split(out / "tables" / "items", 3)
    return spec, out / "tables"


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _read(tables: Path, name: str = "items") -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in sorted((tables / name).glob("*.parquet"))])


def _shares(values: list[Any]) -> dict[str, float]:
    kept = np.array([str(v).lower() for v in values if v is not None])
    keys, counts = np.unique(kept, return_counts=True)
    return {str(k): c / kept.size for k, c in zip(keys, counts, strict=True)}


def test_proportions_and_nulls_match_numpy(clean: tuple[Spec, Path]) -> None:
    spec, tables = clean
    result = quality_metrics(spec, tables)
    data = _read(tables)
    cols = result["tables"]["items"]["columns"]
    assert result["tables"]["items"]["rows"] == data.num_rows == 4000
    for name in ("tier", "color", "active", "sentiment"):
        values = data.column(name).to_pylist()
        observed = _shares(values)
        assert cols[name]["proportions"] == pytest.approx(observed)
        expected = cols[name]["expected"]
        diffs = [abs(observed.get(k, 0.0) - p) for k, p in expected.items()]
        assert cols[name]["tvd"] == pytest.approx(0.5 * sum(diffs))
        assert cols[name]["max_abs_deviation"] == pytest.approx(max(diffs))
        assert cols[name]["null_rate"] == pytest.approx(sum(v is None for v in values) / len(values))
    assert cols["color"]["expected"] == pytest.approx({"red": 1 / 3, "green": 1 / 3, "blue": 1 / 3})
    assert cols["active"]["expected"] == pytest.approx({"true": 0.3, "false": 0.7})
    assert cols["color"]["null_rate_diff"] == pytest.approx(cols["color"]["null_rate"] - 0.05)
    balance = cols["sentiment"]["label_balance"]
    shares = _shares(data.column("sentiment").to_pylist())
    assert balance["imbalance_ratio"] == pytest.approx(max(shares.values()) / min(shares.values()))
    assert "label_balance" not in cols["tier"]


def test_text_stats_match_numpy(clean: tuple[Spec, Path]) -> None:
    spec, tables = clean
    text = quality_metrics(spec, tables)["tables"]["items"]["columns"]["review"]["text"]
    values = [v for v in _read(tables).column("review").to_pylist() if v is not None]
    lengths = np.array([len(v) for v in values])
    for name, q in (("p5", 0.05), ("p50", 0.5), ("p95", 0.95)):
        assert text["length"][name] == int(np.quantile(lengths, q, method="inverted_cdf"))
    assert text["distinct_ratio"] == pytest.approx(len(set(values)) / len(values))
    assert text["sample"] == len(values)  # under SAMPLE_VALUES: every row
    words = [w for v in values for w in v.lower().replace(",", "").replace(".", "").split()]
    assert text["distinct_1"] == pytest.approx(len(set(words)) / len(words))
    assert text["scored"] is True
    # the review vocabulary is independent of the label: every text appears under both labels
    assert text["label_conflicts"]["rows"] == len(values)


def _duplicate_rows(tables: Path, k: int) -> None:
    """Overwrite the last ``k`` rows of the last part with copies of its first ``k`` rows, keys kept."""
    part = sorted((tables / "items").glob("*.parquet"))[-1]
    data = pq.read_table(part)
    m = data.num_rows
    taken = data.take(np.r_[0 : m - k, 0:k])
    key = data.schema.get_field_index("item_id")
    pq.write_table(taken.set_column(key, "item_id", data.column("item_id")), part)


def test_injected_duplicate_rows_are_measured(clean: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, tables = clean
    before = quality_metrics(spec, tables)
    assert before["tables"]["items"]["duplicate_rows"] == 0
    corrupted = _copy(tables, tmp_path / "tables")
    _duplicate_rows(corrupted, 120)
    after = quality_metrics(spec, corrupted)
    assert after["tables"]["items"]["duplicate_rows"] == 120
    assert after["tables"]["items"]["duplicate_row_rate"] == pytest.approx(120 / 4000)
    assert len(_read(corrupted).column("item_id").unique()) == 4000  # keys still unique
    assert after["components"]["duplicate_rows"]["value"] == pytest.approx(1 - 120 / 4000)
    assert 0.0 <= after["quality_score"] < before["quality_score"] <= 1.0


def test_score_drops_with_nulls_and_failed_validation(clean: tuple[Spec, Path], tmp_path: Path) -> None:
    spec, tables = clean
    passed = {"success": True, "evaluated": 10, "failed": 0, "success_ratio": 1.0, "checks": []}
    failed = {"success": False, "evaluated": 10, "failed": 5, "success_ratio": 0.5, "checks": []}
    good = quality_metrics(spec, tables, passed)
    assert good["components"]["validation"]["value"] == 1.0
    assert quality_metrics(spec, tables, failed)["quality_score"] < good["quality_score"]
    corrupted = _copy(tables, tmp_path / "tables")
    part = sorted((corrupted / "items").glob("*.parquet"))[0]
    data = pq.read_table(part)
    nulls = pa.nulls(data.num_rows, data.schema.field("tier").type)
    pq.write_table(data.set_column(data.schema.get_field_index("tier"), "tier", nulls), part)
    bad = quality_metrics(spec, corrupted, passed)
    assert bad["tables"]["items"]["columns"]["tier"]["null_excess"] == pytest.approx(data.num_rows / 4000)
    assert 0.0 <= bad["quality_score"] < good["quality_score"] <= 1.0
    for result in (good, bad):
        assert set(result["components"]) <= set(quality.WEIGHTS)
        assert all(0.0 <= c["value"] <= 1.0 for c in result["components"].values())
        assert result["formula"] == quality.FORMULA


def test_same_numbers_on_every_run_and_any_part_layout(
    clean: tuple[Spec, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, tables = clean
    first = json.dumps(quality_metrics(spec, tables), sort_keys=True, allow_nan=False)
    assert json.dumps(quality_metrics(spec, tables), sort_keys=True, allow_nan=False) == first
    one_part = _copy(tables, tmp_path / "tables")
    _split(one_part / "items", 1)
    assert json.dumps(quality_metrics(spec, one_part), sort_keys=True, allow_nan=False) == first
    # as for a large table: Arrow's freed memory goes back at once (pyarrow's call must exist)
    monkeypatch.setattr(synthreg.validators.parts, "LARGE_TABLE_ROWS", 0)
    assert json.dumps(quality_metrics(spec, tables), sort_keys=True, allow_nan=False) == first


# ---------------------------------------------------------------- hand-built text


def _letters(seed: str, n: int = 40) -> str:
    """A stable pseudo-random lower-case string (sha256 hex digits mapped to a-p)."""
    digest = hashlib.sha256(seed.encode()).hexdigest()[:n]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


def _edit(text: str, at: int = 20) -> str:
    """One character changed, mid-string (the worst case for shingles)."""
    new = "z" if text[at] != "z" else "y"
    return text[:at] + new + text[at + 1 :]


TEXT_SPEC: dict[str, Any] = {
    "tables": {
        "texts": {
            "rows": 270,
            "primary_key": "id",
            "columns": {
                "id": {"type": "int"},
                "body": {"type": "text", "vocab": "review"},
                "label": {"type": "category", "values": ["pos", "neg"], "label": True},
            },
        }
    }
}


@pytest.fixture
def text_table(tmp_path: Path) -> tuple[Spec, Path]:
    """200 distinct 40-char texts, 30 exact copies (10 re-cased and punctuated, 10 under the
    other label) and 40 near copies (one character changed): 270 rows in two parts."""
    bases = [_letters(f"base-{i}") for i in range(200)]
    labels = ["pos" if i % 2 else "neg" for i in range(200)]
    body, label = list(bases), list(labels)
    for i in range(30):  # exact copies of bases 0..29
        body.append(f"  {bases[i].upper()} !!" if i < 10 else bases[i])
        flip = 10 <= i < 20
        label.append(("pos" if labels[i] == "neg" else "neg") if flip else labels[i])
    for i in range(100, 140):  # near copies of bases 100..139
        body.append(_edit(bases[i]))
        label.append(labels[i])
    table = pa.table({"id": pa.array(range(1, 271), pa.int32()), "body": body, "label": label})
    out = tmp_path / "tables" / "texts"
    out.mkdir(parents=True)
    pq.write_table(table.slice(0, 150), out / "part-00000.parquet")
    pq.write_table(table.slice(150), out / "part-00001.parquet")
    return parse_spec(TEXT_SPEC, "texts.yaml"), tmp_path / "tables"


def test_exact_and_near_duplicates_and_label_conflicts(text_table: tuple[Spec, Path]) -> None:
    spec, tables = text_table
    text = quality_metrics(spec, tables)["tables"]["texts"]["columns"]["body"]["text"]
    assert text["normalized"] is True
    assert text["exact_duplicate_rate"] == pytest.approx(30 / 270)
    assert text["distinct_ratio"] == pytest.approx(250 / 270)  # raw: the 10 re-cased copies differ
    assert text["sample_distinct"] == 240
    assert text["near_duplicate_texts"] == 40  # every near copy, no distinct string
    assert text["near_duplicate_rate"] == pytest.approx(40 / 270)
    assert text["label_conflicts"] == {"label": "label", "texts": 10, "rows": 20, "rate": 20 / 270}


def test_structured_text_counts_only_identical_values_as_duplicates(text_table: tuple[Spec, Path]) -> None:
    """Names, e-mail addresses and patterns are not normalised: lower-casing and dropping the
    punctuation would merge different ones (``a.b@x.org`` and ``ab@xorg``); nor are their word
    diversity and near duplicates measured (names share words and differ by a letter)."""
    _, tables = text_table
    doc = copy.deepcopy(TEXT_SPEC)
    doc["tables"]["texts"]["columns"]["body"]["vocab"] = "company"
    found = quality_metrics(parse_spec(doc, "texts.yaml"), tables)
    text = found["tables"]["texts"]["columns"]["body"]["text"]
    assert text["scored"] is False and text["normalized"] is False
    assert not {"distinct_1", "near_duplicate_rate", "sample"} & set(text)  # free text only
    assert text["exact_duplicate_rate"] == pytest.approx(20 / 270)  # the 10 re-cased copies differ
    assert text["distinct_ratio"] == pytest.approx(250 / 270)
    # 10 identical texts under both labels; the re-cased ones kept theirs
    assert text["label_conflicts"] == {"label": "label", "texts": 10, "rows": 20, "rate": 20 / 270}


def test_distinct_texts_are_not_near_duplicates() -> None:
    texts = sorted({_letters(f"d-{i}") for i in range(500)})
    assert quality._clusters(texts) == len(texts)
    near = sorted({*texts[:50], *(_edit(t, 5 + i % 30) for i, t in enumerate(texts[:50]))})
    assert quality._clusters(near) == 50


# ---------------------------------------------------------------- counted part by part (quality_parts)


def _by_parts(spec: Spec, tables: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metrics by DuckDB over whole tables, and counted part by part (tasks in this process)."""
    return quality.table_quality(spec, tables), quality.table_quality(spec, tables, by_parts=True)


def test_counts_part_by_part_give_the_same_metrics(
    clean: tuple[Spec, Path], text_table: tuple[Spec, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every metric counted part by part, with buckets, equals DuckDB's over the whole table: rows
    repeated across parts, nulls, shares, a labelled free-text column (texts under 2+ labels, near
    copies, the sample), and a labelled structured one (counted without normalising)."""
    from synthreg.generators import group_rules
    from synthreg.validators import quality_parts

    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 1_000)  # several buckets
    buckets: list[int] = []
    real = quality_parts._bucket
    monkeypatch.setattr(quality_parts, "_bucket", lambda *a: buckets.append(a[2]) or real(*a))
    spec, tables = clean
    repeated = _copy(tables, tmp_path / "repeated")
    first, last = sorted((repeated / "items").glob("*.parquet"))[::2]
    head, tail = pq.read_table(first), pq.read_table(last)
    rows = tail.num_rows - 150
    copied = pa.concat_tables([tail.slice(0, rows), head.slice(0, 150)])  # 150 rows of part 0, again
    pq.write_table(copied.set_column(0, "item_id", tail.column("item_id")), last)
    text_spec, text_tables = text_table
    doc = copy.deepcopy(TEXT_SPEC)
    doc["tables"]["texts"]["columns"]["body"]["vocab"] = "company"
    cases = [
        (spec, tables),
        (spec, repeated),
        (text_spec, text_tables),
        (parse_spec(doc, "t.yaml"), text_tables),
    ]
    for case_spec, case_tables in cases:
        whole, parted = _by_parts(case_spec, case_tables)
        assert json.dumps(parted, sort_keys=True) == json.dumps(whole, sort_keys=True)
    assert max(buckets) > 1  # the items table in 12 buckets
    items = quality.table_quality(spec, repeated, by_parts=True)["items"]
    assert items["duplicate_rows"] == 150
    assert items["columns"]["review"]["text"]["label_conflicts"]["texts"] > 0
    texts = quality.table_quality(text_spec, text_tables, by_parts=True)["texts"]["columns"]["body"]["text"]
    assert texts["label_conflicts"]["texts"] == 10 and texts["near_duplicate_texts"] == 40


def test_parts_counted_as_they_are_written_are_not_counted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``QualityObserver`` in the engine's workers counts each part as it is written; merged, the
    metrics are DuckDB's and no part is counted again, except one rewritten since (its size or
    modification time changed) or counted with other buckets."""
    from synthreg.generators import group_rules
    from synthreg.generators.engine import Observers, observed_by
    from synthreg.validators import quality_parts

    doc = copy.deepcopy(SPEC)
    doc["tables"]["items"]["rows"] = 200_000  # parts of 65,536 rows
    spec = parse_spec(doc, "items.yaml")
    hot = tmp_path / "hot"
    observe = Observers(None, quality_parts.QualityObserver(spec, hot))
    gen = generate(spec, tmp_path / "gen", workers=2, observe=observe)
    observed = observed_by(gen.observed, 1)
    assert len(observed["items"]) > 2 and all(
        isinstance(r, quality_parts.PartQuality) for _, r in observed["items"]
    )
    assert all(r is None for _, r in observed_by(gen.observed, 0)["items"])
    tables = tmp_path / "gen" / "tables"
    counted: list[Path] = []
    real = quality_parts._part
    monkeypatch.setattr(quality_parts, "_part", lambda path, *a: counted.append(path) or real(path, *a))
    whole = quality.table_quality(spec, tables)
    assert quality.table_quality(spec, tables, by_parts=True, observed=observed) == whole
    assert counted == []
    part = sorted((tables / "items").glob("*.parquet"))[1]
    data = pq.read_table(part)
    tier = pa.array(["free"] * data.num_rows).dictionary_encode().cast(data.schema.field("tier").type)
    pq.write_table(data.set_column(data.schema.get_field_index("tier"), "tier", tier), part)
    whole = quality.table_quality(spec, tables)
    assert quality.table_quality(spec, tables, by_parts=True, observed=observed) == whole
    assert counted == [part]
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 100_000)  # other buckets than the workers'
    assert quality.table_quality(spec, tables, by_parts=True, observed=observed) == whole
    assert len(counted) == 1 + len(observed["items"])
    monkeypatch.undo()
    counted.clear()
    monkeypatch.setattr(quality_parts, "_part", lambda path, *a: counted.append(path) or real(path, *a))
    first = sorted((tables / "items").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(first).slice(1_000), first)  # every later part's rows move
    whole = quality.table_quality(spec, tables)
    assert quality.table_quality(spec, tables, by_parts=True, observed=observed) == whole
    assert len(counted) == len(observed["items"])  # each sampled other rows: all counted again
    # a table whose group rules rewrite its parts after the engine: not counted as written
    doc["tables"]["items"]["constraints"] = [
        {"kind": "max_rows_per_group", "group_by": ["tier"], "limit": 10**6, "action": "drop"}
    ]
    ruled = quality_parts.QualityObserver(parse_spec(doc, "items.yaml"), hot)
    assert ruled("items", first, 0) is None and observe.observers[1]("items", first, 0) is not None


def test_part_by_part_shares_past_the_class_limit_and_parts_of_two_schemas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column with more values than ``MAX_CLASSES`` over the table, though not in any one part, is
    over the limit either way; a table whose parts differ in schema is counted by DuckDB (its
    columns' types, and so its hashes, may differ between parts), with the same result."""
    from synthreg.validators import quality_parts

    monkeypatch.setattr(quality, "MAX_CLASSES", 2)
    doc = {
        "tables": {
            "t": {
                "rows": 6,
                "columns": {
                    "c": {"type": "category", "values": ["a", "b", "c"]},
                    "d": {"type": "category", "values": ["x", "y"]},
                },
            }
        }
    }
    spec = parse_spec(doc, "t.yaml")
    folder = tmp_path / "tables" / "t"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"c": ["a", "b", "a"], "d": ["x", "y", "x"]}), folder / "part-00000.parquet")
    pq.write_table(pa.table({"c": ["c", "c", None], "d": ["y", "y", "x"]}), folder / "part-00001.parquet")
    whole, parted = _by_parts(spec, tmp_path / "tables")
    assert parted == whole
    assert parted["t"]["columns"]["c"] == {**parted["t"]["columns"]["c"], "classes_over": 2}
    assert parted["t"]["columns"]["d"]["proportions"] == {"x": 0.5, "y": 0.5}
    counted: list[list[str]] = []
    real = quality_parts.counts_by_parts
    monkeypatch.setattr(
        quality_parts,
        "counts_by_parts",
        lambda layouts, *a: counted.append(list(real(layouts, *a))) or real(layouts, *a),
    )
    pq.write_table(
        pa.table({"c": pa.array(["c", "c", None]).dictionary_encode(), "d": ["y", "y", "x"]}),
        folder / "part-00001.parquet",
    )
    whole, parted = _by_parts(spec, tmp_path / "tables")
    assert parted == whole and counted == [[]]  # not counted by parts


def test_part_by_part_labels_are_compared_as_duckdb_compares_them(tmp_path: Path) -> None:
    """A float label of 0.0 in one part and -0.0 in another is one label, as DuckDB's ``count(DISTINCT
    ...)`` over the whole table has it: the text under both is no label conflict."""
    doc = {
        "tables": {
            "t": {
                "rows": 4,
                "columns": {
                    "body": {"type": "text", "vocab": "review"},
                    "lab": {"type": "float", "label": True},
                },
            }
        }
    }
    folder = tmp_path / "tables" / "t"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"body": ["a", "b"], "lab": [0.0, 1.0]}), folder / "part-00000.parquet")
    pq.write_table(pa.table({"body": ["a", "b"], "lab": [-0.0, 2.0]}), folder / "part-00001.parquet")
    whole, parted = _by_parts(parse_spec(doc, "t.yaml"), tmp_path / "tables")
    assert parted == whole
    assert parted["t"]["columns"]["body"]["text"]["label_conflicts"]["texts"] == 1  # "b": 1.0 and 2.0


# ---------------------------------------------------------------- HTML report


@pytest.fixture(scope="module")
def failing(clean: tuple[Spec, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """A real validation that fails: a ``<script>`` value injected into a category column."""
    spec, tables = clean
    bad = _copy(tables, tmp_path_factory.mktemp("bad") / "tables")
    part = sorted((bad / "items").glob("*.parquet"))[0]
    data = pq.read_table(part)
    tier = data.column("tier").cast(pa.string()).to_pylist()
    tier[:5] = ["<script>alert('x')</script>"] * 5
    pq.write_table(data.set_column(data.schema.get_field_index("tier"), "tier", pa.array(tier)), part)
    validation = validate_tables(spec, bad).to_dict()
    return validation, quality_metrics(spec, bad, validation)


def test_report_lists_failures_and_escapes_data(failing: tuple[dict, dict]) -> None:
    validation, metrics = failing
    assert not validation["success"]
    page = render_validation_report("items <v1>", validation, metrics)
    names = {c["check"] for c in validation["checks"] if not c["success"]}
    assert "expect_column_values_to_be_in_set" in names
    assert all(name in page for name in names)
    assert page.index("Failed checks") < page.index("All checks") < page.index("Quality metrics")
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert "items &lt;v1&gt;" in page


def test_report_is_self_contained() -> None:
    check = {
        "table": "t",
        "check": "expect_column_values_to_match_regex",
        "column": "url",
        "kwargs": {"regex": "^https://"},
        "success": False,
        "observed": {"partial_unexpected_list": ["http://evil.example/x", "HTTPS://A.B"]},
        "source": "great_expectations",
    }
    validation = {"success": False, "evaluated": 1, "failed": 1, "success_ratio": 0.0, "engine": "gx",
                  "seconds": 0.1, "checks": [check]}  # fmt: skip
    page = render_validation_report("see https://example.com", validation)
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "<script" not in lowered and "<link" not in lowered and "src=" not in lowered
    assert "expect_column_values_to_match_regex" in page
    assert "evil.example" in page


def _reference_clusters(texts: list[str]) -> int:
    """The near-duplicate clustering written plainly: group by group, band after band, each
    member against up to PROBES earlier members (nearest first) whose signatures agree on
    MIN_AGREEMENT values, with Python sets."""
    if len(texts) < 2:
        return len(texts)
    hashes, starts = quality._shingles(texts)
    sig = quality._signatures(hashes, starts)
    ends = np.append(starts[1:], hashes.size)
    sets = [frozenset(hashes[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]
    parent = list(range(len(texts)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    rows = quality.ROWS_PER_BAND
    for b in range(quality.BANDS):
        band = sig[:, b * rows : (b + 1) * rows]
        key = band[:, 0]
        for j in range(1, rows):
            key = quality._mix(key) ^ band[:, j]
        groups: dict[int, list[int]] = {}
        for i in np.argsort(key, kind="stable").tolist():
            groups.setdefault(int(key[i]), []).append(i)
        for k in sorted(groups):
            group = sorted(groups[k])
            for pos in range(1, len(group)):
                a = group[pos]
                for other in reversed(group[max(0, pos - quality.PROBES) : pos]):
                    if find(a) == find(other):
                        break
                    x, y = sets[a], sets[other]
                    inter = len(x & y)
                    close = int((sig[a] == sig[other]).sum()) >= quality.MIN_AGREEMENT  # else not compared
                    if close and inter >= quality.NEAR_DUPLICATE_THRESHOLD * (len(x) + len(y) - inter):
                        parent[find(a)] = find(other)
                        break
    return len({find(i) for i in range(len(texts))})


@pytest.mark.parametrize("alphabet", ["ab", "abc", "abcdefgh ", "xyzé漢 "])
def test_clusters_match_the_plain_algorithm(alphabet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(len(alphabet))
    texts: set[str] = set()
    for _ in range(300):
        base = list(rng.choice(list(alphabet), size=int(rng.integers(0, 30))))
        texts.add("".join(base))
        for _ in range(int(rng.integers(0, 4))):
            if base:
                base[int(rng.integers(len(base)))] = str(rng.choice(list(alphabet)))
            texts.add("".join(base))
    ordered = sorted(texts)
    expected = _reference_clusters(ordered)
    assert expected < len(ordered)  # there are near duplicates to find
    assert quality._clusters(ordered) == expected

    # the vectorised pair similarity (used when there are many pairs per text) agrees too
    def vectorised(hashes: np.ndarray, starts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if not a.size:
            return np.zeros(0, dtype=bool)
        size, inter = quality._intersections(hashes, starts, a, b)
        return inter >= quality.NEAR_DUPLICATE_THRESHOLD * (size[a] + size[b] - inter)

    monkeypatch.setattr(quality, "_similar", vectorised)
    assert quality._clusters(ordered) == expected
