"""The review policy of registry.toml decides a new version's status."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.errors import WorkspaceError
from synthreg.registry.policy import evaluate_rule

runner = CliRunner()


def _set_policy(root: Path, rule: str, require_human: bool = False) -> None:
    path = root / "registry.toml"
    text = path.read_text()
    text = text.replace('auto_approve = "validation_passed"', f"auto_approve = {rule!r}".replace("'", '"'))
    text = text.replace("require_human = false", f"require_human = {str(require_human).lower()}")
    path.write_text(text)


@pytest.mark.parametrize(
    ("rule", "facts", "expected"),
    [
        ("validation_passed", {"validation_passed": True}, True),
        (
            "validation_passed and quality_score >= 0.9",
            {"validation_passed": True, "quality_score": 0.95},
            True,
        ),
        (
            "validation_passed and quality_score >= 0.9",
            {"validation_passed": True, "quality_score": 0.5},
            False,
        ),
        ("validation_passed and quality_score >= 0.9", {"validation_passed": True}, False),  # not measured
        (
            "not (failed_checks > 0) and (rows < 10 or success_ratio == 1)",
            {"failed_checks": 0, "rows": 50, "success_ratio": 1.0},
            True,
        ),
    ],
)
def test_rules(rule: str, facts: dict[str, object], expected: bool) -> None:
    assert evaluate_rule(rule, facts) is expected


@pytest.mark.parametrize("rule", ["__import__('os')", "quality >= 1", "rows >", "(rows > 1", "rows >> 1"])
def test_bad_rules_are_refused(rule: str) -> None:
    with pytest.raises(WorkspaceError, match=r"registry\.toml \[review\] auto_approve"):
        evaluate_rule(rule, {"rows": 1})


def test_policy_decides_status_through_create(workspace: Path, small_spec: Path) -> None:
    reg = synthreg.open(workspace)
    _set_policy(workspace, "validation_passed and rows > 100000")
    pending = synthreg.open(workspace).create("p", spec=small_spec)
    assert pending.status == "pending"
    shown = runner.invoke(app, ["-C", str(workspace), "show", "p"])
    assert shown.exit_code == 4 and "no approved version yet" in shown.stderr
    assert (
        runner.invoke(app, ["-C", str(workspace), "review", "p@v1", "--approve", "--note", "ok"]).exit_code
        == 0
    )
    assert reg.show("p")["version"] == 1
    _set_policy(workspace, "validation_passed and rows > 100000", require_human=True)
    text = (
        (workspace / "registry.toml")
        .read_text()
        .replace('"validation_passed and rows > 100000"', '"rows >>"')
    )
    (workspace / "registry.toml").write_text(text)
    bad = runner.invoke(app, ["-C", str(workspace), "create", "p", "--spec", str(small_spec)])
    assert bad.exit_code == 2 and "auto_approve" in bad.stderr
    assert [v["version"] for v in reg.show("p@v1")["versions"]] == [1]  # nothing registered


def test_drift_against_the_current_version_is_flagged(
    workspace: Path, small_spec_text: str, tmp_path: Path
) -> None:
    path = workspace / "registry.toml"
    path.write_text(path.read_text().replace("# max_drift = 0.25", "max_drift = 0.25"))
    spec = tmp_path / "s.yaml"
    spec.write_text(small_spec_text)
    reg = synthreg.open(workspace)
    reg.create("d", spec=spec)
    same = reg.create("d", spec=spec, seed=9)  # another seed: same distributions
    checks = __import__("json").loads((workspace / same.path / "validation.json").read_text())["checks"]
    drift = [c for c in checks if c["check"] == "parent_drift"]
    assert drift and all(c["success"] for c in drift)
    shifted = tmp_path / "shifted.yaml"
    shifted.write_text(small_spec_text.replace("mean: 35, std: 9", "mean: 60, std: 9"))
    result = runner.invoke(app, ["-C", str(workspace), "create", "d", "--spec", str(shifted), "--json"])
    assert result.exit_code == 3, result.output
    checks = __import__("json").loads((workspace / "data/d/v3/validation.json").read_text())["checks"]
    failed = [c for c in checks if not c["success"]]
    assert [(c["check"], c["column"]) for c in failed] == [("parent_drift", "age")]
