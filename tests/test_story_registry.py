"""``registry spec draft`` and ``registry create --story`` through real litellm and a loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import point_llm_at
from llm_server import LLMServer
from sqlmodel import select
from test_story import FITNESS, KEY_ENV, MODEL, SECRET, Script
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.registry.store import GenerationRun, read_session

runner = CliRunner()


@pytest.fixture
def llm_workspace(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, LLMServer]]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with LLMServer() as server:
        server.answer = Script()
        point_llm_at(workspace, server.api_base, MODEL, KEY_ENV)
        yield workspace, server


def test_spec_draft_prints_a_spec_and_registers_nothing(llm_workspace: tuple[Path, LLMServer]) -> None:
    root, _server = llm_workspace
    result = runner.invoke(app, ["-C", str(root), "spec", "draft", "--story", FITNESS])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.stdout)
    assert spec["tables"]["users"]["rows"] == 50_000
    assert synthreg.open(root).list() == []


def test_create_from_a_story_records_prompt_model_and_calls(llm_workspace: tuple[Path, LLMServer]) -> None:
    root, server = llm_workspace
    result = runner.invoke(
        app, ["-C", str(root), "create", "fit", "--story", FITNESS, "--scale", "0.01", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows"]["users"] == 500
    vdir = root / data["path"]
    calls = (vdir / "llm_calls.jsonl").read_text().splitlines()
    assert len(calls) == 3 == server.count
    manifest = json.loads((vdir / "manifest.json").read_text())
    assert len(manifest["generation"]["llm_call_keys"]) == 3
    reg = synthreg.open(root)
    with read_session(reg.workspace.engine) as session:
        run = session.exec(select(GenerationRun)).one()
    assert FITNESS in run.prompt and run.model == MODEL
    card = json.loads((vdir / "datacard.json").read_text())["generation"]
    assert card["llm_calls"] == 3 and card["llm"]["story"] and not card["llm"]["data"]
    assert card["prompt"].startswith("a plain-language story, drafted into spec.yaml by an LLM")
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            assert SECRET.encode() not in path.read_bytes(), path
    assert reg.verify(f"fit@v{data['version']}", rebuild=True).ok  # the frozen spec rebuilds without an LLM
