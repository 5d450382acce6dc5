"""Governance rules without back doors: a version that failed validation never becomes current
unless an audited override approves it; a rollback keeps the review policy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app

runner = CliRunner()

STRICT = (
    "    expectations:\n"
    "      - expectation: expect_column_values_to_be_between\n"
    "        kwargs: {column: age, min_value: 50, max_value: 60}\n"
)


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


def _set_policy(root: Path, rule: str = "validation_passed", require_human: bool = False) -> None:
    path = root / "registry.toml"
    lines = [
        f'auto_approve = "{rule}"'
        if line.startswith("auto_approve =")
        else f"require_human = {str(require_human).lower()}"
        if line.startswith("require_human =")
        else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def failed(workspace: Path, small_spec_text: str, tmp_path: Path) -> Path:
    """A workspace whose strict@v1 failed validation (rejected, no current)."""
    spec = tmp_path / "strict.yaml"
    marker = "      signed_up_at: {type: datetime, start: 2023-01-01, end: 2024-12-31}\n"
    spec.write_text(small_spec_text.replace(marker, marker + STRICT))
    result = cli(workspace, "create", "strict", "--spec", str(spec))
    assert result.exit_code == 3, result.output
    return workspace


def test_approving_a_failed_version_is_refused(failed: Path) -> None:
    refused = cli(failed, "review", "strict@v1", "--approve", "--note", "looks fine to me")
    assert refused.exit_code == 5, refused.output
    assert "strict@v1 failed validation" in refused.stderr
    assert "never becomes current" in refused.stderr
    assert "--override-validation --reason TEXT" in refused.stderr
    assert cli(failed, "show", "strict").exit_code == 4  # still no current
    assert synthreg.open(failed).show("strict@v1")["status"] == "rejected"
    assert [e["action"] for e in synthreg.open(failed).audit(dataset="strict")] == ["create"]


def test_override_options_are_checked(failed: Path) -> None:
    no_reason = cli(failed, "review", "strict@v1", "--approve", "--override-validation")
    assert no_reason.exit_code == 2 and "--override-validation needs --reason TEXT" in no_reason.stderr
    rejecting = cli(failed, "review", "strict@v1", "--reject", "--override-validation", "--reason", "x")
    assert rejecting.exit_code == 2 and "goes with --approve only" in rejecting.stderr
    stray = cli(failed, "review", "strict@v1", "--approve", "--reason", "x")
    assert stray.exit_code == 2 and "--reason is the reason of a validation override" in stray.stderr


def test_an_audited_override_approves_and_shows(failed: Path) -> None:
    result = cli(
        failed,
        "--actor",
        "alice",
        "review",
        "strict@v1",
        "--approve",
        "--override-validation",
        "--reason",
        "ages out of range on purpose: edge-case data",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["after"], data["current"], data["override_validation"]) == ("approved", 1, True)
    assert data["override"]["by"] == "alice"
    reg = synthreg.open(failed)
    assert reg.show("strict")["version"] == 1
    event = reg.audit(dataset="strict")[-1]
    assert event["action"] == "approve" and event["actor"] == "alice"
    assert event["details"]["override_validation"] is True
    assert event["details"]["reason"] == "ages out of range on purpose: edge-case data"
    card = json.loads((failed / "data/strict/v1/datacard.json").read_text())
    assert card["validation"]["success"] is False and card["identity"]["status"] == "approved"
    assert card["validation"]["override"]["reason"] == "ages out of range on purpose: edge-case data"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=failed, capture_output=True, text=True)
    assert status.stdout == ""  # the card with the override was committed with the review
    assert cli(failed, "verify", "strict@v1").exit_code == 0


def test_rollback_to_a_failed_version_is_refused_even_forced(failed: Path) -> None:
    forced = cli(failed, "rollback", "strict", "--to", "v1", "--force", "--reason", "need it back")
    assert forced.exit_code == 5, forced.output
    assert "strict@v1 failed validation" in forced.stderr and "--override-validation" in forced.stderr
    assert [v["version"] for v in synthreg.open(failed).show("strict@v1")["versions"]] == [1]
    assert cli(failed, "show", "strict").exit_code == 4


def test_rollback_keeps_the_review_policy(workspace: Path, small_spec: Path) -> None:
    reg = synthreg.open(workspace)
    reg.create("small", spec=small_spec)
    reg.create("small", spec=small_spec, seed=4)
    _set_policy(workspace, require_human=True)
    plain = cli(workspace, "rollback", "small", "--to", "v1", "--reason", "v2 drifted", "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.stdout)["status"] == "pending"  # a human has to approve v3
    assert reg.show("small")["version"] == 2
    assert cli(workspace, "review", "small@v1", "--reject", "--note", "bad").exit_code == 0
    forced = cli(workspace, "rollback", "small", "--to", "v1", "--force", "--reason", "audit asked")
    assert forced.exit_code == 0, forced.output
    assert "v4: restored from v1" in forced.stdout and "pending by the review policy" in forced.stdout
    assert "registry review small@v4 --approve --note TEXT" in forced.stdout
    assert reg.show("small@v4")["status"] == "pending" and reg.show("small")["version"] == 2
    _set_policy(workspace, rule="validation_passed and rows > 100000")
    ruled = cli(workspace, "rollback", "small", "--to", "v1", "--force", "--reason", "again", "--json")
    assert json.loads(ruled.stdout)["status"] == "pending"  # auto_approve's rule is not met
    _set_policy(workspace, rule="validation_passed and quality_score >= 0")
    quality = cli(workspace, "rollback", "small", "--to", "v1", "--force", "--reason", "q", "--json")
    assert json.loads(quality.stdout)["status"] == "approved"  # v1's quality came along
    assert reg.show("small")["version"] == 6 and reg.show("small@v6")["quality"] is not None
    passing = cli(workspace, "review", "small@v3", "--approve", "--override-validation", "--reason", "x")
    assert passing.exit_code == 2 and "small@v3 passed validation" in passing.stderr
    assert cli(workspace, "review", "small@v3", "--approve", "--note", "ok").exit_code == 0
    assert reg.show("small")["version"] == 6  # current follows the newest approved one
