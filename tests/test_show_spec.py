"""``registry show``: a story version shows its story and frozen spec; ``--spec`` shows any version's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import point_llm_at
from llm_server import LLMServer
from test_story import KEY_ENV, MODEL, SECRET, Script
from typer.testing import CliRunner

from synthreg.cli.app import app
from synthreg.registry.query import frozen_spec

runner = CliRunner()

# a story with a line that looks like a step header, rich markup and an emoji code: printed verbatim
STORY = "A fitness app with 50k users, subscriptions and workouts.\n\n# story notes [bold]x[/bold] :smile:"


def cli(root: Path, *args: str) -> Any:
    result = runner.invoke(app, ["-C", str(root), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def story_version(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with LLMServer() as server:
        server.answer = Script()
        point_llm_at(workspace, server.api_base, MODEL, KEY_ENV)
        cli(workspace, "create", "fit", "--story", STORY, "--scale", "0.01", "--json")
        yield workspace


def test_story_version_shows_story_and_frozen_spec(story_version: Path) -> None:
    root = story_version
    frozen = (root / "data/fit/v1/spec.yaml").read_text()
    out = cli(root, "show", "fit").stdout
    assert "Story" in out and "Spec (frozen, data/fit/v1/spec.yaml)" in out
    story_at, spec_at = out.index("\nStory\n"), out.index("Spec (frozen")
    assert story_at < spec_at
    assert STORY in out[story_at:spec_at]  # verbatim: no markup, no emoji, no wrapping
    for line in frozen.splitlines():
        assert line in out[spec_at:]
    assert "  users:" in out and "    rows: 500" in out  # a table of the spec, with its scaled rows
    assert cli(root, "show", "fit", "--spec").stdout == out  # --spec changes nothing here


def test_story_version_json(story_version: Path) -> None:
    root = story_version
    info = json.loads(cli(root, "show", "fit@v1", "--json").stdout)
    assert info["story"] == STORY
    assert info["spec_yaml"] == (root / "data/fit/v1/spec.yaml").read_text()
    assert yaml.safe_load(info["spec_yaml"])["tables"]["users"]["rows"] == 500
    assert frozen_spec(root / info["path"]) == {"story": STORY, "spec_yaml": info["spec_yaml"]}


def test_spec_flag_shows_a_plain_versions_frozen_spec(workspace: Path, small_spec: Path) -> None:
    cli(workspace, "create", "small", "--spec", str(small_spec), "--json")
    frozen = (workspace / "data/small/v1/spec.yaml").read_text()
    plain = cli(workspace, "show", "small").stdout
    assert "Spec (frozen" not in plain and "Story" not in plain
    shown = cli(workspace, "show", "small", "--spec").stdout
    assert "Spec (frozen, data/small/v1/spec.yaml)" in shown and "Story" not in shown
    for line in frozen.splitlines():
        assert line in shown
    info = json.loads(cli(workspace, "show", "small", "--json").stdout)
    assert info["story"] is None and "spec_yaml" not in info
    info = json.loads(cli(workspace, "show", "small", "--spec", "--json").stdout)
    assert info["story"] is None and info["spec_yaml"] == frozen


def test_frozen_spec_of_a_missing_directory(tmp_path: Path) -> None:
    assert frozen_spec(tmp_path / "nowhere") == {"story": None, "spec_yaml": None}
