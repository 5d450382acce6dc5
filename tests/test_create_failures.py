"""A failure at any step after generation leaves no visible version; a failed suite is kept as rejected."""

from __future__ import annotations

import errno
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.errors import IntegrationError

runner = CliRunner()

# Content-addressed stores may keep objects of a failed attempt; no version refers to them.
_IGNORED = (".dvc/cache/", ".dvc/tmp/", ".registry/dvc-remote/", ".registry/mlartifacts/")


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and not rel.startswith((".git/", ".registry/registry.db", *_IGNORED))
            and rel != ".registry/write.lock"
        ):
            out[rel] = path.read_bytes()
    return out


def _runs(mlflow_uri: str, name: str) -> list[str]:
    import mlflow

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(f"synthreg/{name}")
    if exp is None:
        return []
    return [r.info.run_id for r in client.search_runs([exp.experiment_id])]


def _boom(*_a: Any, **_k: Any) -> Any:
    raise IntegrationError("injected failure")


@pytest.mark.parametrize(
    "target",
    [
        "synthreg.integrations.dvc.push",
        "synthreg.integrations.mlflow.log_version",
        "synthreg.integrations.git.commit",
        "synthreg.registry.publish.insert_rows",
    ],
)
def test_failure_after_generation_leaves_no_version(
    workspace: Path, small_spec: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    reg = synthreg.open(workspace)
    reg.create("kept", spec=small_spec)  # an earlier version that must survive untouched
    before_tree, before_runs = _tree(workspace), _runs(mlflow_uri, "kept")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout
    module, _, attr = target.rpartition(".")
    monkeypatch.setattr(f"{module}.{attr}", _boom)
    result = runner.invoke(app, ["-C", str(workspace), "create", "kept", "--spec", str(small_spec)])
    assert result.exit_code == 1
    assert "injected failure" in result.stderr
    assert _tree(workspace) == before_tree
    assert _runs(mlflow_uri, "kept") == before_runs
    assert (
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=workspace, capture_output=True, text=True).stdout
        == head
    )
    assert [v["version"] for v in reg.show("kept")["versions"]] == [1]
    assert not (workspace / "data/kept/v2").exists()
    monkeypatch.undo()
    assert reg.create("kept", spec=small_spec, seed=11).version == 2  # the number was not burnt


def test_failed_validation_is_recorded_as_rejected(
    workspace: Path, small_spec_text: str, tmp_path: Path
) -> None:
    strict = small_spec_text.replace(
        "      signed_up_at: {type: datetime, start: 2023-01-01, end: 2024-12-31}\n",
        "      signed_up_at: {type: datetime, start: 2023-01-01, end: 2024-12-31}\n"
        "    expectations:\n"
        "      - expectation: expect_column_values_to_be_between\n"
        "        kwargs: {column: age, min_value: 50, max_value: 60}\n",
    )
    assert strict != small_spec_text
    spec = tmp_path / "strict.yaml"
    spec.write_text(strict)
    result = runner.invoke(app, ["-C", str(workspace), "create", "strict", "--spec", str(spec), "--json"])
    assert result.exit_code == 3, result.output
    assert "failed validation" in result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "rejected" and data["validation"]["failed"] >= 1
    shown = runner.invoke(app, ["-C", str(workspace), "show", "strict@v1", "--json"])
    assert json.loads(shown.stdout)["status"] == "rejected"
    current = runner.invoke(app, ["-C", str(workspace), "show", "strict"])
    assert current.exit_code == 4 and "no approved version yet" in current.stderr
    report = json.loads((workspace / "data/strict/v1/validation.json").read_text())
    failed = [c for c in report["checks"] if not c["success"]]
    assert any(c["check"] == "expect_column_values_to_be_between" and c["column"] == "age" for c in failed)


def test_a_full_disk_under_dvc_is_reported_as_a_full_disk_not_as_the_remote(tmp_path: Path) -> None:
    """A 100M-row create once ran out of disk in DVC's push: DVC's SQLite state said "database or
    disk is full", and the message blamed the remote ("did not answer")."""
    from synthreg.integrations import dvc

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/ws/.dvc/cache/files/md5/2c/x.tmp")
        except OSError as inner:
            raise RuntimeError("failed to transfer 'c01a780f'") from inner
    except RuntimeError as exc:
        chained = dvc._remote_error(tmp_path, "dvc push", exc)
    full = sqlite3.OperationalError("database or disk is full")
    sqlite_full = dvc._remote_error(tmp_path, "dvc push", full)
    for err in (chained, sqlite_full):
        assert isinstance(err, IntegrationError)
        assert str(err).startswith("a disk is full (dvc push):") and "did not answer" not in str(err)
        assert ".dvc/cache" in str(err)
    other = dvc._remote_error(tmp_path, "dvc push", OSError(errno.ECONNREFUSED, "Connection refused"))
    assert "did not answer" in str(other)
