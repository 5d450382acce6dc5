"""Concurrent writers in real processes: no lost or duplicated version numbers, the chain holds;
on the embedded backends and on the team ones (PostgreSQL, S3, MLflow server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_workspace

import synthreg


def test_two_creates_and_a_rollback_at_the_same_moment(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path, small_spec: Path
) -> None:
    reg = synthreg.open(make_workspace(request, backend, tmp_path / "ws"))
    reg.create("small", spec=small_spec, seed=1)
    root = str(reg.root)
    base = [sys.executable, "-m", "synthreg", "-C", root]
    commands = [
        [*base, "create", "small", "--spec", str(small_spec), "--seed", "2"],
        [*base, "create", "small", "--spec", str(small_spec), "--seed", "3"],
        [*base, "rollback", "small", "--to", "v1", "--reason", "race"],
    ]
    env = dict(os.environ)  # the session's MLflow DB, or the team's server
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, err in outcomes[:2]:
        assert code == 0, err
    # the rollback either appended a version, or found v1 already current: both are correct
    assert outcomes[2][0] == 0, outcomes[2][1]
    reg = synthreg.open(root)
    numbers = [v["version"] for v in reg.show("small@v1")["versions"]]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3
    assert reg.verify_audit().ok
    creates = [e for e in reg.audit("small") if e["action"] in ("create", "rollback")]
    assert sorted(e["version"] for e in creates) == numbers
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    assert status.stdout == ""
