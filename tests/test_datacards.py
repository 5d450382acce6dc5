"""DataCards against their consumers: JSON Schema, huggingface_hub, datasets, mlcroissant; plots; PII scan.

One real version (git + DVC + MLflow sqlite + GX) is created per module; tests that change
files work on a copy of its directory.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest
import yaml

import synthreg
from synthreg.datacards import svg
from synthreg.datacards.croissant import DATA_TYPES, card_schema, to_croissant, write_croissant
from synthreg.datacards.pii import is_reserved_domain, luhn_valid, sample_rows, scan
from synthreg.datacards.plots import plan_plots, table_plots
from synthreg.generators.spec import COLUMN_TYPES, Spec
from synthreg.generators.spec_io import parse_spec

CARD_SPEC = r"""
description: Customers of a subscription box, with a churn label.
seed: 11
license: cc-by-4.0
tags: [retail, tabular]
task_categories: [tabular-classification]
tables:
  customers:
    rows: 1500
    description: One row per customer.
    primary_key: customer_id
    columns:
      customer_id: {type: int}
      first_name: {type: text, vocab: first_name}
      last_name: {type: text, vocab: last_name}
      email: {type: text, vocab: email, from: [first_name, last_name]}
      phone: {type: text, vocab: phone}
      city: {type: text, vocab: city}
      website: {type: text, vocab: url}
      street: {type: text, vocab: street_address}
      age: {type: int, distribution: {kind: normal, mean: 41, std: 12}, min: 18, max: 95}
      birthday: {type: date, start: 1940-01-01, end: 2006-12-31}
      acquisition_channel:
        type: category
        values: {paid_social_campaign: 0.3, organic_search_results: 0.5, referral_from_friend: 0.2}
      churned: {type: bool, p: 0.18, label: true}
  orders:
    rows: 4000
    description: Orders placed by customers.
    primary_key: order_id
    columns:
      order_id: {type: int}
      customer_id: {type: int, foreign_key: customers.customer_id, skew: 0.6}
      amount:
        type: float
        distribution: {kind: lognormal, mean: 3, sigma: 0.6}
        min: 1
        max: 900
        decimals: 2
      ordered_at: {type: datetime, start: 2024-01-01, end: 2025-06-30}
      box: {type: category, values: [small, medium, large]}
"""


@pytest.fixture(scope="module")
def spec() -> Spec:
    """CARD_SPEC parsed."""
    return parse_spec(yaml.safe_load(CARD_SPEC), "card.yaml")


@pytest.fixture(scope="module")
def vdir(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    """The directory of a real, registered version ``boxes@v1``."""
    base = tmp_path_factory.mktemp("datacards")
    (base / "card.yaml").write_text(CARD_SPEC)
    reg = synthreg.init(base / "ws")
    result = reg.create("boxes", spec=base / "card.yaml")
    return base / "ws" / result.path


@pytest.fixture(scope="module")
def card(vdir: Path) -> dict[str, Any]:
    """The version's ``datacard.json``."""
    data: dict[str, Any] = json.loads((vdir / "datacard.json").read_text())
    return data


@pytest.fixture
def vcopy(vdir: Path, tmp_path: Path) -> Path:
    """A writable copy of the version directory."""
    target = tmp_path / "v1"
    shutil.copytree(vdir, target)
    for path in target.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


# ---------------------------------------------------------------- JSON Schema


def test_card_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = card_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_real_card_validates_against_the_schema(card: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(card_schema()).validate(card)
    assert card["identity"]["name"] == "boxes" and card["composition"]["total_rows"] == 5500


def _without(card: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in card.items() if k != key}


def _with(card: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    broken = json.loads(json.dumps(card))
    *parents, last = path.split(".")
    node = broken
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return broken


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda c: _without(c, "risks"), "'risks' is a required property"),
        (lambda c: _without(c, "huggingface"), "'huggingface' is a required property"),
        (lambda c: _with(c, "identity.content_digest", "ABC123"), "does not match"),
        (lambda c: _with(c, "identity.content_digest", "f" * 63), "does not match"),
        (lambda c: _with(c, "identity.status", "approvedish"), "is not one of"),
        (lambda c: _with(c, "identity.version", "1"), "is not of type 'integer'"),
        (lambda c: _with(c, "huggingface.configs", []), "should be non-empty"),
        (lambda c: _with(c, "composition.tables.0.fields.0", {"name": "x"}), "is a required property"),
        (lambda c: _with(c, "composition.tables.0.fields.0.type", "string"), "is not one of"),
    ],
    ids=[
        "no-risks",
        "no-huggingface",
        "digest-not-hex",
        "digest-short",
        "bad-status",
        "version-string",
        "no-configs",
        "field-incomplete",
        "field-type",
    ],
)
def test_broken_cards_fail_the_schema(card: dict[str, Any], breakage: Any, message: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.Draft202012Validator(card_schema()).validate(breakage(card))


# ---------------------------------------------------------------- Hugging Face


def test_datacard_md_loads_as_a_hugging_face_dataset_card(vdir: Path) -> None:
    """``DatasetCard.validate()`` posts to huggingface.co, so the header is checked offline instead."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    hf = DatasetCard.load(vdir / "datacard.md")
    data = hf.data.to_dict()
    assert data["license"] == "cc-by-4.0"
    assert data["tags"] == ["retail", "synthetic", "synthreg", "tabular"]
    assert data["annotations_creators"] == ["machine-generated"]
    assert [c["config_name"] for c in data["configs"]] == ["customers", "orders"]
    assert data["configs"][0]["data_files"] == [{"split": "train", "path": "tables/customers/*.parquet"}]
    # Every key is a named DatasetCardData parameter, except the two Hub keys it keeps in **kwargs.
    params = set(inspect.signature(DatasetCardData.__init__).parameters) - {"self", "kwargs"}
    assert set(data) - params == {"configs", "tags"}
    assert DatasetCardData(**data).to_dict() == data
    configs = MetadataConfigs.from_dataset_card_data(hf.data)  # datasets' own data_files check
    assert configs.get_default_config_name() == "customers"


def test_hugging_face_header_uses_known_vocabularies(card: dict[str, Any]) -> None:
    from importlib import resources

    known = resources.files("datasets.utils.resources")
    header = card["huggingface"]
    assert set(header["size_categories"]) <= set(json.loads((known / "size_categories.json").read_text()))
    assert set(header["multilinguality"]) <= set(json.loads((known / "multilingualities.json").read_text()))
    assert set(header["language"]) <= set(json.loads((known / "languages.json").read_text()))
    creators = json.loads((known / "creators.json").read_text())
    assert set(header["annotations_creators"]) <= set(creators["annotations"])
    assert set(header["language_creators"]) <= set(creators["language"])


def test_datasets_loads_a_table_offline(vdir: Path, tmp_path: Path) -> None:
    import datasets

    files = {"train": str(vdir / "tables" / "customers" / "*.parquet")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == 1500
    assert loaded["train"].column_names[:2] == ["customer_id", "first_name"]


def test_datasets_resolves_the_card_configs_offline(vcopy: Path, tmp_path: Path) -> None:
    """``load_dataset(dir, config)`` reads the YAML ``configs`` of ``README.md`` (not ``datacard.md``)."""
    import datasets

    if not (vcopy / "README.md").exists():
        shutil.copy(vcopy / "datacard.md", vcopy / "README.md")
    loaded = datasets.load_dataset(str(vcopy), "orders", cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == 4000
    default = datasets.load_dataset(str(vcopy), cache_dir=str(tmp_path / "cache"))
    assert default["train"].num_rows == 1500


# ---------------------------------------------------------------- Croissant


def test_croissant_passes_mlcroissant_without_errors_or_warnings(card: dict[str, Any], vcopy: Path) -> None:
    import mlcroissant as mlc

    path = write_croissant(card, vcopy, pii=scan(vcopy, _spec_of(vcopy)))
    dataset = mlc.Dataset(jsonld=path)  # raises ValidationError on any error
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    assert dataset.metadata.data_collection_type == ["Synthetic"]
    assert "no e-mail outside reserved example" in str(dataset.metadata.personal_sensitive_information)
    # The file sets resolve against the directory of croissant.json: every row comes back.
    assert sum(1 for _ in dataset.records("orders")) == 4000
    first = next(iter(dataset.records("customers")))
    assert first["customers/customer_id"] == 1 and isinstance(first["customers/churned"], bool)


def _spec_of(version_dir: Path) -> Spec:
    return parse_spec(yaml.safe_load((version_dir / "spec.yaml").read_text()), "spec.yaml")


def test_croissant_has_rai_provenance_and_file_checksums(card: dict[str, Any], vdir: Path) -> None:
    doc = to_croissant(card, vdir)
    assert doc["@type"] == "sc:Dataset" and doc["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert doc["rai:dataCollectionType"] == "Synthetic"
    assert doc["rai:dataLimitations"] == card["risks"]["limitations"]
    generated = doc["prov:wasGeneratedBy"]
    props = {p["name"]: p["value"] for p in generated["additionalProperty"]}
    assert props == {
        "seed": 11,
        "spec_sha256": card["generation"]["spec_sha256"],
        "model": card["generation"]["model"],
    }
    assert generated["prov:wasAssociatedWith"]["name"] == card["generation"]["model"]
    file_sets = [d for d in doc["distribution"] if d["@type"] == "cr:FileSet"]
    assert [fs["includes"] for fs in file_sets] == ["tables/customers/*.parquet", "tables/orders/*.parquet"]
    for fs in file_sets:
        assert list(vdir.glob(fs["includes"])), fs
    for obj in (d for d in doc["distribution"] if d["@type"] == "cr:FileObject"):
        assert hashlib.sha256((vdir / obj["contentUrl"]).read_bytes()).hexdigest() == obj["sha256"]


def test_croissant_fields_map_types_and_keys(card: dict[str, Any], vdir: Path) -> None:
    doc = to_croissant(card, vdir)
    customers, orders = doc["recordSet"]
    types = {f["name"]: f["dataType"] for f in customers["field"]}
    assert types["customer_id"] == "sc:Integer" and types["birthday"] == "sc:Date"
    assert types["churned"] == "sc:Boolean" and types["email"] == "sc:Text"
    assert customers["key"] == {"@id": "customers/customer_id"}
    fk = next(f for f in orders["field"] if f["name"] == "customer_id")
    assert fk["references"] == {"field": {"@id": "customers/customer_id"}}
    assert fk["source"] == {"fileSet": {"@id": "orders-parquet"}, "extract": {"column": "customer_id"}}
    assert set(DATA_TYPES) == set(COLUMN_TYPES)  # every spec type has a Croissant type


# ---------------------------------------------------------------- plots


SVG = "{http://www.w3.org/2000/svg}"


def _svg_texts(path: Path) -> tuple[ElementTree.Element, list[str]]:
    root = ElementTree.parse(path).getroot()  # well-formed XML, or this raises
    return root, [t.text or "" for t in root.iter(f"{SVG}text")]


def test_plots_one_svg_per_planned_column(vdir: Path, spec: Spec, tmp_path: Path) -> None:
    paths = table_plots(vdir, spec, tmp_path / "a")
    planned = [p for t in spec.table_order() for p in plan_plots(spec, t)]
    assert [p.name for p in paths] == [p.filename for p in planned]
    assert planned[0].column == "churned" and planned[0].kind == "label"
    assert {p.column for p in planned} == {
        "churned",
        "age",
        "birthday",
        "acquisition_channel",
        "amount",
        "ordered_at",
        "box",
    }  # keys and high-cardinality text are not drawn
    for plot, path in zip(planned, paths, strict=True):
        root, texts = _svg_texts(path)
        assert root.tag == f"{SVG}svg" and (root.get("width"), root.get("height")) == ("600", "350")
        assert texts[0].startswith(f"{plot.table}.{plot.column}: ")
        assert len(list(root.iter(f"{SVG}rect"))) > 2  # the background and bars
    # the shares written on the bars are the data's
    channel = next(p for p, q in zip(paths, planned, strict=True) if q.column == "acquisition_channel")
    values = sample_rows(vdir, "customers", ["acquisition_channel"], 200_000).column(0).drop_null()
    counts = {d["values"]: d["counts"] for d in pa.compute.value_counts(values.cast(pa.string())).to_pylist()}
    shown = {t for t in _svg_texts(channel)[1] if t.endswith("%")}
    assert {f"{n / len(values):.1%}" for n in counts.values()} <= shown
    label = _svg_texts(paths[0])[0]
    assert {r.get("fill") for r in label.iter(f"{SVG}rect")} == {"white", "#DD8452"}  # the label colour


def test_plot_names_are_escaped(tmp_path: Path) -> None:
    """A category named like markup is text in the SVG, not an element."""
    (tmp_path / "tables" / "t").mkdir(parents=True)
    names = ["<script>alert(1)</script>", 'a"b&c']
    pq.write_table(pa.table({"c": names * 50}), tmp_path / "tables" / "t" / "part-00000.parquet")
    doc = {"tables": {"t": {"rows": 100, "columns": {"c": {"type": "category", "values": names}}}}}
    (path,) = table_plots(tmp_path, parse_spec(doc, "t.yaml"), tmp_path / "plots")
    root, texts = _svg_texts(path)
    assert not list(root.iter(f"{SVG}script")) and set(names) <= set(texts)


def test_a_long_title_is_fitted_into_the_width() -> None:
    short = ElementTree.fromstring(svg.Chart(title="t.c: distribution, n=10").svg())
    long = ElementTree.fromstring(svg.Chart(title="a_table_name." + "x" * 120 + ": distribution").svg())
    assert next(short.iter(f"{SVG}text")).get("textLength") is None
    assert float(next(long.iter(f"{SVG}text")).get("textLength") or 0) <= 600


def test_svg_ticks_are_round() -> None:
    assert svg.nice_ticks(0, 97) == ([0.0, 20.0, 40.0, 60.0, 80.0], 20.0)
    assert svg.linear_ticks(4.5, 5.5, integer=True) == [(5.0, "5")]
    assert svg.linear_ticks(0, 0.5) == [
        (0.0, "0.0"),
        (0.1, "0.1"),
        (0.2, "0.2"),
        (0.3, "0.3"),
        (0.4, "0.4"),
        (0.5, "0.5"),
    ]
    assert svg.count_ticks(2345)[0][-1] == (2000.0, "2,000")
    assert svg.nice_ticks(float("-inf"), 5)[0] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # never a crash
    assert [label for _, label in svg.share_ticks(0.73)] == ["0%", "20%", "40%", "60%"]
    day = 86400.0
    start = 1_700_000_000.0  # 2023-11-14
    assert [label for _, label in svg.time_ticks(start, start + 3 * 365 * day)] == [
        "2024-01", "2024-07", "2025-01", "2025-07", "2026-01", "2026-07"
    ]  # fmt: skip
    assert [label for _, label in svg.time_ticks(start, start + 5 * 365 * day)] == [
        "2024", "2025", "2026", "2027", "2028"
    ]  # fmt: skip
    assert [label for _, label in svg.time_ticks(start, start + 100 * day)] == [
        "2023-12", "2024-01", "2024-02"
    ]  # fmt: skip
    hours = svg.time_ticks(start, start + 5 * 3600)
    assert 2 <= len(hours) <= 6 and all(":" in label for _, label in hours)
    ends = [label for _, label in svg.time_ticks(start, start + 0.2)]
    assert ends == ["2023-11-14 22:13:20"] * 2  # no round instant between: the ends


def test_plots_are_deterministic_and_capped(vdir: Path, spec: Spec, tmp_path: Path) -> None:
    first = table_plots(vdir, spec, tmp_path / "a", max_per_table=2)
    again = table_plots(vdir, spec, tmp_path / "b", max_per_table=2)
    assert len(first) == 4
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]


# ---------------------------------------------------------------- PII scan


def test_scan_is_clean_on_generated_data(vdir: Path, spec: Spec) -> None:
    result = scan(vdir, spec)
    assert result == {
        "looks_like_real_personal_data": False,
        "findings": [],
        "columns_scanned": [
            "customers.first_name",
            "customers.last_name",
            "customers.email",
            "customers.phone",
            "customers.city",
            "customers.website",
            "customers.street",
            "customers.acquisition_channel",
            "orders.box",
        ],
        "sample": 10000,
    }


def _rewrite(part: Path, column: str, values: dict[int, str]) -> None:
    table = pq.read_table(part)
    new = table.column(column).to_pylist()
    for row, value in values.items():
        new[row] = value
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, pa.array(new, pa.string())), part)


def test_scan_flags_real_looking_emails_and_card_numbers(vcopy: Path, spec: Spec) -> None:
    part = sorted((vcopy / "tables" / "customers").glob("*.parquet"))[0]
    _rewrite(part, "email", {i: f"john.doe{i}@gmail.com" for i in range(0, 300, 2)})
    _rewrite(part, "street", {7: "paid with 4539 1488 0343 6467", 9: "card 4111 1111 1111 1111"})
    result = scan(vcopy, spec)
    assert result["looks_like_real_personal_data"] is True
    found = {(f["column"], f["kind"]): f for f in result["findings"]}
    assert set(found) == {("email", "email"), ("street", "payment_card")}
    assert found[("email", "email")]["share"] == pytest.approx(150 / 1500)
    assert found[("email", "email")]["examples"][0].endswith("@gmail.com")
    assert found[("street", "payment_card")]["examples"] == ["**** **** **** 6467"]
    assert found[("street", "payment_card")]["share"] == pytest.approx(1 / 1500)


def test_scan_samples_deterministically(vdir: Path, spec: Spec) -> None:
    small = scan(vdir, spec, sample=100)
    assert small == scan(vdir, spec, sample=100) and small["sample"] == 100
    rows = sample_rows(vdir, "orders", ["order_id"], 50)
    assert rows.num_rows == 50 and rows.column_names == ["order_id"]
    ids = rows.column("order_id").to_pylist()
    assert ids == sorted(ids) and ids == sample_rows(vdir, "orders", ["order_id"], 50).column(0).to_pylist()


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("ada.lovelace@example.com", set()),
        ("x@mail.example", set()),
        ("x@inbox.test", set()),
        ("x@sub.example.org", set()),
        ("x@host.invalid", set()),
        ("ada@gmail.com", {"email"}),
        ("ada@example.com.evil.io", {"email"}),
        ("+1-212-555-0142", set()),
        ("(212) 555-0199", set()),
        ("+44 7700 900123", set()),
        ("+1-212-555-0242", {"phone"}),
        ("+49 30 12345678", {"phone"}),
        ("call 415 867 5309", {"phone"}),
        ("4539 1488 0343 6467", {"payment_card"}),
        ("4539148803436468", set()),  # Luhn fails
        ("4111111111111111", set()),  # a published test number
        ("DE89 3704 0044 0532 0130 00", {"iban"}),
        ("DE89 3704 0044 0532 0130 01", set()),  # checksum fails
        ("SSN 123-45-6789", {"national_id"}),
        ("000-12-3456", set()),
        ("666-12-3456", set()),
        ("912-34-5678", set()),
        ("ORD-004211", set()),
        ("2024-05-01", set()),
    ],
)
def test_detectors(text: str, kinds: set[str], tmp_path: Path) -> None:
    from synthreg.datacards.pii import _DETECTORS

    assert {kind for kind, detect in _DETECTORS.items() if next(detect(text), None)} == kinds


def _exhaustive_findings(values: list[str | None]) -> dict[str, tuple[int, list[str]]]:
    """Every detector on every distinct value, in value_counts' order: what the scan reported
    before it filtered the values in Arrow."""
    from synthreg.datacards.pii import _DETECTORS, EXAMPLES, _mask

    present = [v for v in values if v is not None]
    found: dict[str, tuple[int, list[str]]] = {}
    for text in dict.fromkeys(present):
        for kind, detect in _DETECTORS.items():
            hit = next(detect(text), None)
            if hit is not None:
                count, examples = found.get(kind, (0, []))
                found[kind] = (count + present.count(text), [*examples, _mask(kind, hit)][:EXAMPLES])
    return found


def test_the_arrow_prefilter_drops_no_value_a_detector_matches() -> None:
    """The scan runs each detector only on the values its weaker RE2 pattern passes; random values
    over digits (ASCII and Arabic-Indic, which Python's \\d matches), separators, letters and
    "@" find what running every detector on every value finds."""
    import random

    from synthreg.datacards.pii import _CARD, _EMAIL, _IBAN, _PHONE, _SSN, _candidates, _column_findings

    rng = random.Random(7)
    alphabet = "0123456789" * 4 + "\u0661\u0662\u0663\u0669" + " ().-+@" * 2 + "DEGBxyz" + ".com"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(4, 26))) for _ in range(20000)]
    values += ["+\u0664\u0669 \u0663\u0660 \u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "ada@gmail.com"]
    values += [
        "4539 1488 0343 6467",
        "DE89 3704 0044 0532 0130 00",
        "SSN 123-45-6789",
        "(415) 867-5309",
        None,
    ]
    distinct = pa.array(list(dict.fromkeys(values)))
    candidates = {kind: set(found.tolist()) for kind, found in _candidates(distinct).items()}
    patterns = {"email": _EMAIL, "phone": _PHONE, "payment_card": _CARD, "iban": _IBAN, "national_id": _SSN}
    for kind, pattern in patterns.items():
        matched = {i for i, v in enumerate(distinct.to_pylist()) if v is not None and pattern.search(v)}
        assert matched, kind  # the random values exercise every detector
        assert matched <= candidates[kind], kind
    got = _column_findings("t", "c", pa.chunked_array([pa.array(values)]))
    present = len([v for v in values if v is not None])
    want = _exhaustive_findings(values)
    assert {f["kind"]: (round(f["share"] * present), f["examples"]) for f in got} == want
    assert set(want) == {"email", "phone", "payment_card", "iban", "national_id"}


def test_reserved_domains_and_luhn() -> None:
    assert is_reserved_domain("EXAMPLE.NET") and is_reserved_domain("a.b.localhost")
    assert not is_reserved_domain("example.co") and not is_reserved_domain("notexample.com")
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
