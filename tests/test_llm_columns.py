"""``llm_text`` columns inside a tabular table: ``orders.review`` written by an LLM from each
order's own ``rating``, ``product`` and ``price``, through litellm and the loopback server."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import LLM_MODEL
from llm_server import LLMServer
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.datacards.croissant import card_schema
from synthreg.errors import SpecError
from synthreg.generators.llm.column_text import LlmTextColumn, column_requests, placeholders
from synthreg.generators.spec_io import apply_overrides, parse_spec
from synthreg.integrations import dvc

runner = CliRunner()
PROMPT = "Write a short review of a {product} bought for {price:.2f} EUR and rated {rating} of 5."


def spec_dict(rows: int = 30, **llm: Any) -> dict[str, Any]:
    review = {"prompt": PROMPT, "models": [LLM_MODEL], "min_length": 5, "max_length": 300, **llm}
    return {
        "seed": 3,
        "tables": {
            "users": {
                "rows": 10,
                "primary_key": "user_id",
                "columns": {"user_id": {"type": "int"}, "plan": {"type": "category", "values": ["a", "b"]}},
            },
            "orders": {
                "rows": rows,
                "primary_key": "order_id",
                "columns": {
                    "order_id": {"type": "int"},
                    "user_id": {"type": "int", "foreign_key": "users.user_id"},
                    "rating": {"type": "int", "min": 1, "max": 5},
                    "product": {"type": "category", "values": ["lamp", "kettle", "chair"]},
                    "price": {"type": "float", "min": 5, "max": 200, "decimals": 2},
                    "review": {"type": "llm_text", "llm": review},
                },
            },
        },
    }


def _asked(body: dict[str, Any]) -> tuple[str, str]:
    """(product, rating) the row's first user message asks about."""
    found = re.search(r"of a (\w+) bought .* rated (\d) of 5", body["messages"][1]["content"])
    assert found, body["messages"]
    return found.group(1), found.group(2)


def review_answer(body: dict[str, Any]) -> str:
    """A review that repeats the product and rating it was asked for (distinct per request)."""
    product, rating = _asked(body)
    unique = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:10]
    return json.dumps({"text": f"{rating}/5 for this {product} ({unique})"})


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def create(root: Path, spec_file: Path, *extra: str) -> Any:
    return runner.invoke(app, ["-C", str(root), "create", "shop", "--spec", str(spec_file), "--json", *extra])


def test_review_column_follows_each_rows_rating_and_rebuilds_without_a_server(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path, mlflow_uri: str
) -> None:
    root, server = llm_workspace
    server.answer = review_answer
    result = create(root, write_spec(tmp_path, spec_dict()))
    assert result.exit_code == 0, result.output
    assert "LLM pre-flight: 30 calls to make (0 already recorded)" in result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "approved" and data["rows"] == {"users": 10, "orders": 30}
    vdir = root / data["path"]
    orders = pq.read_table(vdir / "tables" / "orders").to_pylist()
    assert len(orders) == 30 and server.count == 30
    for row in orders:  # conditioned on the row's own values
        assert row["review"].startswith(f"{row['rating']}/5 for this {row['product']} (")
    provenance = pq.read_table(vdir / "llm" / "orders.review.parquet")
    assert provenance.column("row").to_pylist() == list(range(30))
    assert all(provenance.column("ok").to_pylist())
    assert set(provenance.column("model_requested").to_pylist()) == {LLM_MODEL}
    keys = json.loads((vdir / "manifest.json").read_text())["generation"]["llm_call_keys"]
    assert keys == provenance.column("call_key").to_pylist()
    assert len((vdir / "llm_calls.jsonl").read_text().splitlines()) == 30
    validation = json.loads((vdir / "validation.json").read_text())
    lengths = [c for c in validation["checks"] if c.get("column") == "review" and "length" in c["check"]]
    assert lengths and all(c["success"] for c in lengths)
    card = json.loads((vdir / "datacard.json").read_text())
    jsonschema.Draft202012Validator(card_schema()).validate(card)
    assert card["generation"]["llm_calls"] == 30 and card["generation"]["llm"]["models"] == [LLM_MODEL]
    assert card["generation"]["llm"]["tokens_in"] > 0 and not card["generation"]["llm"]["story"]
    assert "replayable from llm_calls.jsonl" in card["generation"]["prompt"]
    assert "- LLM calls: 30, cost: $0.0000 (" in (vdir / "datacard.md").read_text()
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    assert client.get_run(data["mlflow_run_id"]).data.metrics["llm_calls"] == 30
    assert "llm_calls.jsonl" in {a.path for a in client.list_artifacts(data["mlflow_run_id"])}
    quality = json.loads((vdir / "quality.json").read_text())["tables"]["orders"]["columns"]["review"]
    assert quality["text"]["scored"] and quality["text"]["values"] == 30  # free-text metrics apply
    shown = runner.invoke(app, ["-C", str(root), "show", "shop@v1"], env={"COLUMNS": "200"})
    assert (
        f"30 ({LLM_MODEL})" in shown.stdout and "made data; replayable from llm_calls.jsonl" in shown.stdout
    )
    info = json.loads(runner.invoke(app, ["-C", str(root), "show", "shop@v1", "--json"]).stdout)
    assert info["llm"]["calls"] == 30 and info["llm"]["data"] and not info["llm"]["story"]
    from fastapi.testclient import TestClient

    from synthreg.registry.tokens import create_token
    from synthreg.service.app import create_app

    _, token = create_token(synthreg.open(root).workspace, "viewer1", "viewer")
    with TestClient(create_app(root)) as client:  # the version page shows each row's provenance
        client.post("/login", data={"token": token})
        page = client.get("/versions/shop@v1").text
    assert "orders.review.parquet (30 rows)" in page
    assert str(provenance.column("call_key")[0].as_py())[:20] in page
    server.stop()
    report = synthreg.open(root).verify(f"shop@v{data['version']}", rebuild=True)
    assert report.ok, report
    stage = yaml.safe_load((vdir / "dvc.yaml").read_text())["stages"]["shop-v1"]
    assert f"{data['path']}/llm_calls.jsonl" in stage["deps"]  # what the stage's rebuild replays
    assert dvc.status(root) == {}
    with (vdir / "llm_calls.jsonl").open("a") as f:
        f.write("\n")
    assert f"{data['path']}/dvc.yaml:shop-v1" in dvc.status(root)  # an edited call slice: stale stage


def test_unusable_answers_get_one_repair_call_then_a_null_and_a_rejected_version(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace

    def answer(body: dict[str, Any]) -> str:
        _, rating = _asked(body)
        repair = len(body["messages"]) > 2
        if rating == "1":  # never usable: not JSON, and not JSON again when asked to repair
            return "I would rather not"
        if rating == "2" and not repair:  # too short at first, fine once repaired
            return json.dumps({"text": "ok"})
        return review_answer(body)

    server.answer = answer
    result = create(root, write_spec(tmp_path, spec_dict()))
    assert result.exit_code == 3, result.output  # recorded, rejected by the not-null check
    assert synthreg.open(root).list()[0]["latest_status"] == "rejected"
    vdir = root / "data" / "shop" / "v1"
    orders = pq.read_table(vdir / "tables" / "orders").to_pylist()
    prov = pq.read_table(vdir / "llm" / "orders.review.parquet").to_pylist()
    ones = [i for i, r in enumerate(orders) if r["rating"] == 1]
    twos = [i for i, r in enumerate(orders) if r["rating"] == 2]
    assert ones and twos
    assert server.count == 30 + len(ones) + len(twos)  # one repair call per unusable answer
    for i in ones:
        assert orders[i]["review"] is None
        assert prov[i]["ok"] is False and prov[i]["attempt"] == "repair#1"
        assert "not valid JSON" in prov[i]["reason"] and "after repair" in prov[i]["reason"]
        assert prov[i]["content"] == "I would rather not"
    for i in twos:
        assert orders[i]["review"].startswith("2/5 for this")
        assert prov[i]["ok"] is True and prov[i]["attempt"] == "repair#1"
    validation = json.loads((vdir / "validation.json").read_text())
    failed = {c["check"] for c in validation["checks"] if c.get("column") == "review" and not c["success"]}
    assert failed == {"expect_column_values_to_not_be_null"}


def test_budget_runs_out_registers_nothing_and_a_rerun_makes_only_the_missing_calls(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace
    server.answer = review_answer
    spec_file = write_spec(tmp_path, spec_dict(rows=12))
    result = create(root, spec_file, "--max-calls", "5")
    assert result.exit_code == 5, result.output
    assert "column 'orders.review'" in result.output and "budget" in result.output
    assert synthreg.open(root).list() == [] and server.count == 5
    result = create(root, spec_file)
    assert result.exit_code == 0, result.output
    assert "LLM pre-flight: 7 calls to make (5 already recorded)" in result.stderr
    assert server.count == 12


def test_no_model_configured_exits_2_before_generating(workspace: Path, tmp_path: Path) -> None:
    result = create(workspace, write_spec(tmp_path, spec_dict()))
    assert result.exit_code == 2, result.output
    assert "[llm] model" in result.output
    assert synthreg.open(workspace).list() == []


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"prompt": "About {colour}"}, r"review\.llm\.prompt", r"\{colour\} is not a column of orders"),
        ({"prompt": "About {review}"}, r"review\.llm\.prompt", r"another llm_text column"),
        ({"prompt": "About {0}"}, r"review\.llm", r"not a column name"),
        ({"prompt": "About {rating"}, r"review\.llm", r"literal braces"),
        ({"max_rows": 10}, r"tables\.orders\.rows", r"30 LLM calls.*max_rows \(10\)"),
        ({"models": ["gpt-4o"]}, r"review\.llm\.models", r"provider-qualified"),
        ({"min_length": 50, "max_length": 10}, r"review\.llm", r"swap them"),
        ({"temprature": 0.5}, r"review\.llm", r"unknown key 'temprature'.*temperature"),
    ],
)
def test_bad_llm_text_columns_are_spec_errors(change: dict[str, Any], where: str, message: str) -> None:
    with pytest.raises(SpecError, match=f"(?s){where}.*{message}"):
        parse_spec(spec_dict(**change), "shop.yaml")


def test_llm_key_belongs_to_llm_text_columns_only() -> None:
    spec = spec_dict()
    review = spec["tables"]["orders"]["columns"]["review"]
    spec["tables"]["orders"]["columns"]["review"] = {"type": "llm_text"}
    with pytest.raises(SpecError, match=r"llm_text column needs 'llm'"):
        parse_spec(spec, "shop.yaml")
    spec["tables"]["orders"]["columns"]["review"] = {
        "type": "llm_text",
        "llm": review["llm"],
        "vocab": "city",
    }
    with pytest.raises(SpecError, match=r"written by the LLM alone: remove vocab"):
        parse_spec(spec, "shop.yaml")
    spec["tables"]["orders"]["columns"]["review"] = {"type": "int", "llm": review["llm"]}
    with pytest.raises(SpecError, match=r"'llm' .* applies to llm_text columns, not int"):
        parse_spec(spec, "shop.yaml")


def test_bad_spec_exits_2_and_scaling_past_max_rows_is_refused(workspace: Path, tmp_path: Path) -> None:
    result = create(workspace, write_spec(tmp_path, spec_dict(prompt="About {colour}")))
    assert result.exit_code == 2, result.output
    assert "colour" in result.output
    spec = parse_spec(spec_dict(max_rows=40), "shop.yaml")
    assert apply_overrides(spec, scale=1.2).tables["orders"].rows == 36
    with pytest.raises(SpecError, match=r"max_rows \(40\)"):
        apply_overrides(spec, scale=2)


def test_requests_are_keyed_per_row_rotate_models_and_render_formats() -> None:
    col = LlmTextColumn(prompt="{a:.1f} and {b} {{literal}}", models=["p/m1", "p/m2"], seed=4)
    assert placeholders(col.prompt) == ["a", "b"]
    rows = [{"a": 1.25, "b": "x"}, {"a": 1.25, "b": "x"}, {"a": 2.0, "b": None}]
    requests = column_requests("t", "c", col, rows, None)
    assert [r.row_id for r in requests] == ["t.c:0", "t.c:1", "t.c:2"]
    assert [r.model for r in requests] == ["p/m1", "p/m2", "p/m1"]
    assert requests[0].messages[1]["content"] == "1.2 and x {literal}"
    assert requests[2].messages[1]["content"] == "2.0 and unknown {literal}"
    assert len({r.key for r in requests}) == 3  # equal prompts never collapse to one answer
    again = column_requests("t", "c", col, rows, None)
    assert [r.key for r in again] == [r.key for r in requests]
    assert [r.seed for r in requests] != [
        r.seed for r in column_requests("t", "c", col.model_copy(update={"seed": 5}), rows, None)
    ]


def test_disable_and_rollback_of_an_llm_version_still_rebuild_without_a_server(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace
    server.answer = review_answer
    assert create(root, write_spec(tmp_path, spec_dict())).exit_code == 0
    reg = synthreg.open(root)
    derived = reg.disable("shop@v1", table="orders", where="rating = 1", reason="one-star reviews withheld")
    restored = reg.rollback("shop", 1, reason="back to all reviews")
    calls = server.count
    server.stop()
    for number in (derived.version, restored.version):
        vdir = root / "data" / "shop" / f"v{number}"
        assert (vdir / "llm_calls.jsonl").is_file() and (vdir / "llm" / "orders.review.parquet").is_file()
        assert json.loads((vdir / "manifest.json").read_text())["llm"]["api_base"] == server_base(root)
        report = reg.verify(f"shop@v{number}", rebuild=True)
        assert report.ok, report
    orders = pq.read_table(root / "data" / "shop" / f"v{derived.version}" / "tables" / "orders").to_pylist()
    assert orders and all(r["rating"] != 1 and r["review"].startswith(f"{r['rating']}/5") for r in orders)
    diff = reg.diff("shop@v1", f"shop@v{derived.version}")
    assert diff["tables"]["orders"]["columns"]["review"]["type"] == "llm_text"
    assert "orders.review" in diff["summary"]["changed_columns"]  # the one-star reviews are gone
    assert calls == 30  # no call was made after create


def server_base(root: Path) -> str:
    import tomllib

    return str(tomllib.loads((root / "registry.toml").read_text())["llm"]["api_base"])


def long_answer(body: dict[str, Any]) -> str | None:
    """Text long enough for the examples' length bounds; the judge keeps the server's answer."""
    schema = body["response_format"]["json_schema"]
    if "reasoning" not in schema["schema"]["properties"] or "label" in schema["schema"]["properties"]:
        return None if "label" in schema["schema"]["properties"] else review_like(body)
    unique = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:12]
    return json.dumps(
        {"text": f"Thanks for waiting, we have sorted it out for you ({unique}).", "reasoning": "ok"}
    )


def review_like(body: dict[str, Any]) -> str:
    unique = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:12]
    return json.dumps({"text": f"It does what it says and arrived on time ({unique})."})


@pytest.mark.parametrize(
    ("example", "rows"), [("shop_reviews.yaml", "orders=25"), ("support_replies.yaml", "replies=8")]
)
def test_llm_examples_create_through_the_loopback_server(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path, example: str, rows: str
) -> None:
    root, server = llm_workspace
    server.answer = long_answer
    text = (Path(__file__).resolve().parents[1] / "examples" / "llm" / example).read_text()
    # The loopback server speaks the OpenAI protocol only: the Anthropic model goes through it by name.
    spec_file = tmp_path / example
    spec_file.write_text(text.replace("anthropic/claude-3-5-haiku-20241022", "openai/claude-3-5-haiku"))
    result = create(root, spec_file, "--rows", rows)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    table, count = rows.split("=")
    assert data["status"] == "approved" and data["rows"][table] == int(count)
    models = {body["model"] for body in server.requests}
    assert len(models) == 2 if example == "shop_reviews.yaml" else len(models) >= 2  # rotated per row


def test_the_api_key_is_in_no_written_file(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key reaches the server, and no file of the workspace (git objects inflated), the call
    store, the MLflow DB or its artifacts holds it."""
    import zlib

    from conftest import LLM_KEY_ENV

    secret = "sk-test-COLUMNSECRET4242"
    monkeypatch.setenv(LLM_KEY_ENV, secret)
    root, server = llm_workspace
    server.answer = review_answer
    assert create(root, write_spec(tmp_path, spec_dict(rows=6))).exit_code == 0
    assert all(h.get("authorization") == f"Bearer {secret}" for h in server.headers)
    mlflow_db = Path(mlflow_uri.removeprefix("sqlite:///"))
    files = [p for p in [*root.rglob("*"), *mlflow_db.parent.rglob("*")] if p.is_file()]
    assert any(p.name == "calls.sqlite" for p in files) and mlflow_db in files
    for path in files:
        data = path.read_bytes()
        if ".git" in path.parts and "objects" in path.parts:
            with contextlib.suppress(zlib.error):  # pack files and indexes: scanned as they are
                data = zlib.decompress(data)
        assert secret.encode() not in data, path


def test_a_create_killed_mid_calls_resumes_without_asking_a_recorded_call_again(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    """SIGKILL a ``registry create`` process while its calls run; the rerun asks the server only
    for the rows whose answers were not recorded, and nothing of the killed run is registered."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    root, server = llm_workspace
    server.answer = review_answer
    server.delay_ms = 150
    spec_file = write_spec(tmp_path, spec_dict(rows=60))
    args = ["-C", str(root), "create", "shop", "--spec", str(spec_file)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthreg", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while server.count < 12 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    asked_before = server.count
    with sqlite3.connect(root / ".registry" / "llm" / "calls.sqlite") as con:
        recorded = con.execute("SELECT count(*) FROM calls").fetchone()[0]
    assert 0 < recorded < 60 and asked_before < 60
    assert synthreg.open(root).list() == []  # the killed run registered nothing
    result = create(root, spec_file)
    assert result.exit_code == 0, result.output
    assert f"LLM pre-flight: {60 - recorded} calls to make ({recorded} already recorded)" in result.stderr
    assert server.count - asked_before == 60 - recorded  # no recorded call was asked again
    rows = pq.read_table(root / "data" / "shop" / "v1" / "tables" / "orders").to_pylist()
    assert all(r["review"].startswith(f"{r['rating']}/5") for r in rows)


def test_a_failed_call_is_no_answer_not_a_repair(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    """A call that gets no answer (HTTP 401, not retried) is not 'repaired': the create stops
    (exit 5, nothing registered) and a rerun asks only for that row."""
    root, server = llm_workspace
    server.answer = review_answer
    server.fail("401", times=1)
    spec_file = write_spec(tmp_path, spec_dict(rows=6))
    result = create(root, spec_file)
    assert result.exit_code == 5, result.output
    assert "column 'orders.review': some calls failed and 1 row(s) have no answer" in result.output
    assert server.count == 6 and all(len(body["messages"]) == 2 for body in server.requests)  # no repair
    assert synthreg.open(root).list() == []
    result = create(root, spec_file)
    assert result.exit_code == 0, result.output
    assert server.count == 7


def test_nulls_render_as_unknown_and_format_specs_must_fit_the_column(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    spec = spec_dict(rows=20, prompt="A {product} for {price:.2f} EUR rated {rating} of 5.")
    spec["tables"]["orders"]["columns"]["price"]["null_rate"] = 0.4
    col = LlmTextColumn(prompt="A {product} for {price:.2f} EUR rated {rating} of 5.", models=[LLM_MODEL])
    rendered = column_requests(
        "orders", "review", col, [{"product": "lamp", "price": None, "rating": 3}], None
    )
    assert rendered[0].messages[1]["content"] == "A lamp for unknown EUR rated 3 of 5."
    root, server = llm_workspace
    server.answer = lambda body: json.dumps(
        {"text": f"review {hashlib.sha256(str(body).encode()).hexdigest()}"}
    )
    result = create(root, write_spec(tmp_path, spec))
    assert result.exit_code == 0, result.output
    assert any("for unknown EUR" in body["messages"][1]["content"] for body in server.requests)
    with pytest.raises(
        SpecError, match=r"review\.llm\.prompt.*format '\.2f' does not apply to a category column"
    ):
        parse_spec(spec_dict(prompt="A {product:.2f}"), "shop.yaml")


def test_an_llm_text_column_in_an_empty_table_rebuilds(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace
    result = create(root, write_spec(tmp_path, spec_dict(rows=0)))
    assert result.exit_code == 0, result.output
    vdir = root / "data" / "shop" / "v1"
    assert server.count == 0 and (vdir / "llm_calls.jsonl").read_text() == ""
    assert synthreg.open(root).verify("shop@v1", rebuild=True).ok


def test_a_fallback_answer_replays_and_credentials_in_api_base_are_never_written(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    import zlib

    root, server = llm_workspace
    server.answer = review_answer
    config = root / "registry.toml"
    text = config.read_text().replace(
        '# fallbacks = ["groq/llama-3.3-70b-versatile"]', 'fallbacks = ["openai/test-fb"]'
    )
    secret_base = server.api_base.replace("http://", "http://user:PASSWORD4242@")
    config.write_text(text.replace(server.api_base, secret_base))
    server.fail("401", times=1, model="test-model")
    result = create(root, write_spec(tmp_path, spec_dict(rows=6)))
    assert result.exit_code == 0, result.output
    assert "test-fb" in {body["model"] for body in server.requests}  # the fallback answered a row
    generation = json.loads((root / "data" / "shop" / "v1" / "manifest.json").read_text())["generation"]
    assert generation["llm_fallbacks"] == ["openai/test-fb"] and generation["llm_api_base"] == server.api_base
    for path in (p for p in root.rglob("*") if p.is_file() and p.name != "registry.toml"):
        data = path.read_bytes()
        if ".git" in path.parts and "objects" in path.parts:
            with contextlib.suppress(zlib.error):
                data = zlib.decompress(data)
        assert b"PASSWORD4242" not in data, path
    server.stop()
    assert synthreg.open(root).verify("shop@v1", rebuild=True).ok  # the replay follows the fallback too


def test_the_engine_cannot_read_an_llm_text_column_and_its_settings_freeze_whole() -> None:
    spec = spec_dict()
    spec["tables"]["orders"]["constraints"] = [
        {"kind": "unique_combination", "columns": ["review"], "action": "drop"}
    ]
    with pytest.raises(SpecError, match=r"tables\.orders\.constraints\.0.*reads review, an llm_text column"):
        parse_spec(spec, "shop.yaml")
    frozen = yaml.safe_load(parse_spec(spec_dict(), "shop.yaml").frozen_yaml())
    llm = frozen["tables"]["orders"]["columns"]["review"]["llm"]
    assert llm["temperature"] == 0.8 and llm["max_tokens"] == 300 and llm["seed"] == 0  # defaults included


def test_verify_detects_an_edited_call_slice_without_rebuilding(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    from synthreg.errors import VerificationError

    root, server = llm_workspace
    server.answer = review_answer
    assert create(root, write_spec(tmp_path, spec_dict(rows=4))).exit_code == 0
    reg = synthreg.open(root)
    assert reg.verify("shop@v1").ok
    path = root / "data" / "shop" / "v1" / "llm_calls.jsonl"
    original = path.read_text()
    records = [json.loads(line) for line in original.splitlines()]
    records[0]["response"]["content"] = json.dumps({"text": "5/5 a planted review"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(VerificationError, match=r"llm_calls\.jsonl does not match its sha256.*edited"):
        reg.verify("shop@v1")
    records[0]["request"]["messages"][1]["content"] = "a forged prompt"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(VerificationError, match=r"1 call\(s\) in llm_calls\.jsonl do not hash to their key"):
        reg.verify("shop@v1")
    path.write_text(original)
    assert reg.verify("shop@v1").ok


def test_answers_with_unicode_line_separators_register_verify_and_rebuild(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    """U+2028 / U+0085 inside an answer stay inside its JSONL line (str.splitlines would split there);
    a damaged line is reported by verify, not a crash."""
    from synthreg.errors import VerificationError

    root, server = llm_workspace
    server.answer = lambda body: json.dumps(
        {"text": json.loads(review_answer(body))["text"] + "\u2028Kind regards\u0085Shop"}, ensure_ascii=False
    )
    result = create(root, write_spec(tmp_path, spec_dict(rows=4)))
    assert result.exit_code == 0, result.output
    reg = synthreg.open(root)
    assert reg.verify("shop@v1", rebuild=True).ok
    path = root / "data" / "shop" / "v1" / "llm_calls.jsonl"
    assert "\u2028" in path.read_text(encoding="utf-8")
    with path.open("a", encoding="utf-8") as f:
        f.write('{"key": "abc", "request": {"x": NaN}}\n{"truncated\n')
    with pytest.raises(VerificationError, match=r"line 5 of llm_calls\.jsonl is not a call record.*line 6"):
        reg.verify("shop@v1")
