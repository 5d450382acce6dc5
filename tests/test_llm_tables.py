"""A spec table made by an LLM (``llm``): ``registry create`` through litellm and the loopback
server, then ``verify --rebuild`` replaying the version's calls with the server stopped."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pyarrow.parquet as pq
import pytest
import yaml
from llm_server import LLMServer
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.datacards.croissant import card_schema
from synthreg.errors import SpecError
from synthreg.generators.llm.labeled import ROWS_SCHEMA
from synthreg.generators.spec_io import apply_overrides, parse_spec
from synthreg.integrations import git

runner = CliRunner()
MODEL = "openai/test-model"

LLM_TABLE: dict[str, Any] = {
    "task": "Customer-service replies to complaints.",
    "labels": {"polite": "Courteous and helpful.", "impolite": "Curt and dismissive."},
    "categories": {"travel": ["air", "train"]},
    "samples": 12,
    "models": [MODEL],
    "min_length": 5,
    "few_shot": 0,
    "seed": 7,
}
SPEC: dict[str, Any] = {
    "seed": 1,
    "tables": {
        "users": {
            "rows": 50,
            "primary_key": "user_id",
            "columns": {"user_id": {"type": "int"}, "plan": {"type": "category", "values": ["a", "b"]}},
        },
        "replies": {"llm": LLM_TABLE},
    },
}


WORDS = [
    "booking",
    "refund",
    "ticket",
    "seat",
    "delay",
    "voucher",
    "station",
    "gate",
    "luggage",
    "platform",
    "receipt",
    "order",
]


def answer(body: dict[str, Any]) -> str:
    """A distinct, contract-abiding answer per request: words picked by a hash of the request, so
    no two answers are near-duplicates (curation would drop them)."""
    digest = hashlib.sha256(json.dumps([body["messages"], body.get("seed")]).encode()).digest()
    text = " ".join(f"{WORDS[b % len(WORDS)]}{b}" for b in digest[:10])
    return json.dumps({"text": f"About your {text}.", "reasoning": "scripted"})


@pytest.fixture
def llm_workspace(llm_workspace: tuple[Path, LLMServer]) -> tuple[Path, LLMServer]:
    """The shared LLM workspace, its server answering with ``answer``."""
    llm_workspace[1].answer = answer
    return llm_workspace


def write_spec(tmp_path: Path, spec: dict[str, Any]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_create_registers_the_llm_table_and_rebuilds_without_a_server(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace
    spec_file = write_spec(tmp_path, SPEC)
    result = runner.invoke(app, ["-C", str(root), "create", "mixed", "--spec", str(spec_file), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"] == {"users": 50, "replies": 12}
    assert "LLM pre-flight: 12 calls to make (0 already recorded)" in result.stderr
    vdir = root / data["path"]
    table = pq.read_table(vdir / "tables" / "replies" / "part-00000.parquet")
    assert table.num_rows == 12
    assert {"sample_id", "label", "call_key", "prompt_hash", "model_requested"} <= set(table.column_names)
    assert table.schema.equals(ROWS_SCHEMA)
    assert (vdir / "llm" / "replies.plan.parquet").is_file()
    assert (vdir / "llm" / "replies.rejects.parquet").is_file()
    calls = (vdir / "llm_calls.jsonl").read_text().splitlines()
    assert len(calls) == 12 == server.count
    manifest = json.loads((vdir / "manifest.json").read_text())
    keys = manifest["generation"]["llm_call_keys"]
    assert len(keys) == 12 and set(keys) == set(table.column("call_key").to_pylist())
    assert [json.loads(line)["key"] for line in calls] == keys
    committed = git.run(root, "ls-files", data["path"]).split()
    assert f"{data['path']}/llm/replies.plan.parquet" in committed
    assert f"{data['path']}/llm_calls.jsonl" in committed
    server.stop()
    assert synthreg.open(root).verify(f"mixed@v{data['version']}", rebuild=True).ok


def test_llm_table_with_columns_is_a_spec_error() -> None:
    bad = {"tables": {"t": {"llm": LLM_TABLE, "columns": {"x": {"type": "int"}}}}}
    with pytest.raises(SpecError, match=r"tables\.t\.llm.*cannot have columns"):
        parse_spec(bad, "bad.yaml")
    with pytest.raises(SpecError, match=r"tables\.t\.llm\.samples.*differs"):
        parse_spec({"tables": {"t": {"llm": LLM_TABLE, "rows": 3}}}, "bad.yaml")


def test_llm_table_with_columns_exits_2(workspace: Path, tmp_path: Path) -> None:
    bad = {"tables": {"t": {"llm": LLM_TABLE, "columns": {"x": {"type": "int"}}}}}
    result = runner.invoke(
        app, ["-C", str(workspace), "create", "bad", "--spec", str(write_spec(tmp_path, bad))]
    )
    assert result.exit_code == 2, result.output
    assert "tables.t.llm" in result.output


def test_missing_llm_model_exits_2(workspace: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["-C", str(workspace), "create", "mixed", "--spec", str(write_spec(tmp_path, SPEC))]
    )
    assert result.exit_code == 2, result.output
    assert "[llm] model" in result.output
    assert synthreg.open(workspace).list() == []


def test_budget_exhausted_registers_nothing_and_a_rerun_resumes(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    root, server = llm_workspace
    config = root / "registry.toml"
    text = config.read_text()
    config.write_text(text.replace("# max_usd = 1.0", "max_calls = 5"))
    args = ["-C", str(root), "create", "mixed", "--spec", str(write_spec(tmp_path, SPEC))]
    result = runner.invoke(app, args)
    assert result.exit_code == 5, result.output
    assert "budget" in result.output
    assert synthreg.open(root).list() == []
    assert server.count == 5
    config.write_text(text)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "LLM pre-flight: 7 calls to make (5 already recorded)" in result.stderr
    assert server.count == 12  # only the 7 missing answers were asked for


def test_scale_keeps_llm_samples_and_rows_override_sets_them() -> None:
    spec = parse_spec(SPEC, "mixed.yaml")
    assert spec.tables["replies"].rows == 12 and spec.engine_order() == ["users"]
    scaled = apply_overrides(spec, scale=2)
    assert scaled.tables["users"].rows == 100 and scaled.tables["replies"].rows == 12
    resized = apply_overrides(spec, rows={"replies": 4})
    assert resized.tables["replies"].rows == 4
    assert resized.tables["replies"].llm is not None and resized.tables["replies"].llm.samples == 4
    assert parse_spec(yaml.safe_load(resized.frozen_yaml())) == resized


def test_max_calls_flag_overrides_the_settings(llm_workspace: tuple[Path, LLMServer], tmp_path: Path) -> None:
    root, server = llm_workspace
    args = ["-C", str(root), "create", "mixed", "--spec", str(write_spec(tmp_path, SPEC))]
    assert runner.invoke(app, [*args, "--max-calls", "-1"]).exit_code == 2
    result = runner.invoke(app, [*args, "--max-calls", "3"])
    assert result.exit_code == 5, result.output
    assert server.count == 3 and synthreg.open(root).list() == []


def test_rejects_and_curation_are_kept_aside_not_fatal(
    llm_workspace: tuple[Path, LLMServer], tmp_path: Path
) -> None:
    """Malformed answers go to rejects, duplicates are dropped by the table's curation policy
    (kept in llm/<t>.dropped.parquet with the reason); the version is approved and rebuilds."""
    root, server = llm_workspace

    def scripted(body: dict[str, Any]) -> str:
        seed = body.get("seed", 0)
        if seed % 5 == 0:
            return '{"text": "unterminated'
        if seed % 5 == 1:
            return json.dumps(
                {"text": "Thank you, your refund is on its way.", "reasoning": "same each time"}
            )
        return answer(body)

    server.answer = scripted
    result = runner.invoke(
        app, ["-C", str(root), "create", "mixed", "--spec", str(write_spec(tmp_path, SPEC)), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    vdir = root / data["path"]
    rejects = pq.read_table(vdir / "llm" / "replies.rejects.parquet")
    dropped = pq.read_table(vdir / "llm" / "replies.dropped.parquet").to_pylist()
    kept = pq.read_table(vdir / "tables" / "replies" / "part-00000.parquet")
    assert rejects.num_rows and dropped and data["status"] == "approved"
    assert {r["drop_reason"] for r in dropped} == {"duplicate"}
    assert (
        kept.num_rows + rejects.num_rows + len(dropped)
        == 12
        == data["rows"]["replies"] + rejects.num_rows + len(dropped)
    )
    texts = kept.column("text").to_pylist()
    assert texts.count("Thank you, your refund is on its way.") == 1  # one of the duplicate cluster stays
    count = json.loads((vdir / "validation.json").read_text())["checks"]
    row_check = next(c for c in count if c["table"] == "replies" and "row_count" in c["check"])
    assert row_check["success"] and row_check["kwargs"] == {"min_value": 1, "max_value": 12}
    summary = json.loads((vdir / "llm" / "replies.summary.json").read_text())
    assert summary == {
        "samples": 12,
        "rows": kept.num_rows,
        "rejects": rejects.num_rows,
        "judge_rejects": 0,
        "dropped": {"duplicate": len(dropped)},
        "judge_agreement": None,
    }
    card = json.loads((vdir / "datacard.json").read_text())
    jsonschema.Draft202012Validator(card_schema()).validate(card)
    line = (
        f"- LLM table `replies`: 12 samples planned, {kept.num_rows} rows kept, {rejects.num_rows} rejected"
    )
    assert line in (vdir / "datacard.md").read_text()
    server.stop()
    assert synthreg.open(root).verify(f"mixed@v{data['version']}", rebuild=True).ok
    # A version made before curation existed records no llm_curation: its replay keeps every row.
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert manifest["generation"].pop("llm_curation") == 1
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    from synthreg.registry.materialize import materialize_into

    materialize_into(vdir, tmp_path / "old")
    assert pq.read_table(tmp_path / "old" / "tables" / "replies").num_rows == 12 - rejects.num_rows


def test_curation_policy_is_part_of_the_spec() -> None:
    keep_all = {**LLM_TABLE, "curation": {"drop_duplicates": False, "drop_length": False}}
    spec = parse_spec({"tables": {"replies": {"llm": keep_all}}}, "c.yaml")
    assert spec.tables["replies"].llm is not None and not spec.tables["replies"].llm.curation.drop_duplicates
    with pytest.raises(
        SpecError, match=r"tables\.replies\.llm\.curation.*unknown key 'drop_dupes'.*drop_duplicates"
    ):
        parse_spec(
            {"tables": {"replies": {"llm": {**LLM_TABLE, "curation": {"drop_dupes": True}}}}}, "c.yaml"
        )
