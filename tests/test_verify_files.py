"""``registry verify`` checks every file of a version, not only the Parquet parts: spec.yaml
against spec_sha256, the other small files against git (the version's commit, HEAD for the
DataCards), nothing untracked."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from llm_server import LLMServer
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app

runner = CliRunner()
V1 = "data/small/v1"


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


def git(root: Path, *args: str) -> str:
    who = ["-c", "user.name=mallory", "-c", "user.email=mallory@localhost"]
    done = subprocess.run(["git", *who, *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, small_spec_text: str) -> Path:
    """small@v1, v2 (seed 4), v3 (rollback to v1) and v4 (v1 without young users)."""
    base = tmp_path_factory.mktemp("verify")
    spec = base / "small.yaml"
    spec.write_text(small_spec_text)
    reg = synthreg.init(base / "ws")
    reg.create("small", spec=spec)
    reg.create("small", spec=spec, seed=4)
    reg.rollback("small", 1, reason="back")
    reg.disable("small@v1", reason="minors", table="users", where="age < 20")
    return reg.root


@pytest.fixture
def clean(ws: Path) -> Iterator[Path]:
    """The shared workspace, its v1 put back as git has it after each test."""
    assert cli(ws, "verify", "small@v1").exit_code == 0
    yield ws
    git(ws, "checkout", "HEAD", "--", V1)
    git(ws, "clean", "-fdq", "--", V1)


def _edit_json(path: Path, key: str, value: Any) -> None:
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data, indent=2) + "\n")


def _spec(vdir: Path) -> None:
    path = vdir / "spec.yaml"
    path.write_text(path.read_text().replace("seed: 3", "seed: 5"))


def _datacard(vdir: Path) -> None:
    _edit_json(vdir / "datacard.json", "summary", "Real customer data.")


TAMPERS: dict[str, tuple[Callable[[Path], object], list[str]]] = {
    "spec.yaml": (_spec, ["spec.yaml hashes to", f"{V1}/spec.yaml differs from what git commit"]),
    "validation.json": (
        lambda v: _edit_json(v / "validation.json", "evaluated", 999),
        [f"{V1}/validation.json differs from what git commit"],
    ),
    "quality.json": (
        lambda v: _edit_json(v / "quality.json", "quality_score", 1.0),
        [f"{V1}/quality.json differs from what git commit"],
    ),
    "pii.json": (
        lambda v: (v / "pii.json").write_text("{}\n"),
        [f"{V1}/pii.json differs from what git commit"],
    ),
    "manifest.json": (
        lambda v: _edit_json(v / "manifest.json", "message", "nothing to see"),
        [f"{V1}/manifest.json differs from what git commit"],
    ),
    "a deleted plot": (
        lambda v: (v / "plots/users.age.svg").unlink(),
        [f"{V1}/plots/users.age.svg is missing (it is in git commit"],
    ),
    "datacard.json": (_datacard, [f"{V1}/datacard.json differs from git HEAD"]),
    "datacard.md": (
        lambda v: (v / "datacard.md").write_text("# small v1\n\nall good\n"),
        [f"{V1}/datacard.md differs from git HEAD"],
    ),
    "an untracked file": (
        lambda v: (v / "plots/extra.png").write_bytes(b"\x89PNG"),
        [f"{V1}/plots/extra.png is not tracked by git"],
    ),
}


@pytest.mark.parametrize("kind", list(TAMPERS))
def test_verify_names_each_tampered_file(clean: Path, kind: str) -> None:
    tamper, messages = TAMPERS[kind]
    tamper(clean / V1)
    result = cli(clean, "verify", "small@v1")
    assert result.exit_code == 1, result.output
    for message in messages:
        assert message in result.stderr
    data = json.loads(cli(clean, "verify", "small@v1", "--json").stdout)
    assert data["ok"] is False and any(messages[-1] in p for p in data["problems"])


def test_an_edit_committed_to_git_afterwards_is_caught(clean: Path) -> None:
    made_in = synthreg.open(clean).show("small@v1")["git_commit"]
    _edit_json(clean / V1 / "validation.json", "evaluated", 999)
    git(clean, "commit", "-qam", "fix a typo")
    result = cli(clean, "verify", "small@v1")
    assert result.exit_code == 1
    assert f"{V1}/validation.json differs from what git commit {made_in[:12]}" in result.stderr
    assert f"git checkout {made_in[:12]} -- {V1}/validation.json" in result.stderr
    git(clean, "checkout", made_in, "--", f"{V1}/validation.json")
    git(clean, "commit", "-qm", "put it back")
    assert cli(clean, "verify", "small@v1").exit_code == 0


@pytest.mark.parametrize("ref", ["small@v2", "small@v3", "small@v4"])
def test_untouched_versions_verify(ws: Path, ref: str) -> None:
    """A generated, a restored and a derived version: their spec.yaml hashes to spec_sha256."""
    result = cli(ws, "verify", ref, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checked"]["small_files"] >= 5


LLM_SPEC: dict[str, Any] = {
    "seed": 1,
    "tables": {
        "users": {"rows": 20, "primary_key": "user_id", "columns": {"user_id": {"type": "int"}}},
        "replies": {
            "llm": {
                "task": "Customer-service replies to complaints.",
                "labels": {"polite": "Courteous and helpful.", "impolite": "Curt and dismissive."},
                "categories": {"travel": ["air", "train"]},
                "samples": 4,
                "models": ["openai/test-model"],
                "min_length": 5,
                "few_shot": 0,
                "seed": 7,
            }
        },
    },
}


def _answer(body: dict[str, Any]) -> str:
    """A distinct answer per request (curation drops near-duplicates)."""
    digest = hashlib.sha256(json.dumps([body["messages"], body.get("seed")]).encode()).digest()
    text = "About your " + " ".join(f"w{b}" for b in digest[:10]) + "."
    return json.dumps({"text": text, "reasoning": "x"})


def test_an_edited_llm_side_table_is_named(llm_workspace: tuple[Path, LLMServer], tmp_path: Path) -> None:
    root, server = llm_workspace
    server.answer = _answer
    spec = tmp_path / "mixed.yaml"
    spec.write_text(yaml.safe_dump(LLM_SPEC))
    created = cli(root, "create", "mixed", "--spec", str(spec), "--json")
    assert created.exit_code in (0, 3), created.output
    ref, vdir = json.loads(created.stdout)["ref"], json.loads(created.stdout)["path"]
    assert cli(root, "verify", ref).exit_code == 0
    side = root / vdir / "llm/replies.plan.parquet"
    data = bytearray(side.read_bytes())
    data[len(data) // 2] ^= 0xFF
    side.write_bytes(bytes(data))
    result = cli(root, "verify", ref)
    assert result.exit_code == 1
    assert f"{vdir}/llm/replies.plan.parquet differs from what git commit" in result.stderr
