"""A SIGKILL at every step boundary of create, rollback and disable: afterwards `registry doctor
--rebuild` leaves a workspace whose every version has its git commit and its audit event, the
audit log verifies, and the next write works. Nothing is resurrected that git does not hold."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import synthreg
from synthreg import faults
from synthreg.cli.app import app

POINTS = [
    "publish.card",
    "publish.rename",
    "publish.dvc",
    "publish.mlflow",
    "publish.event",
    "publish.manifest",
    "publish.git",
    "publish.db",
    "publish.committed",
]
#: From this point on the version is in git (commit + event): a rebuild keeps it.
DURABLE = {"publish.git", "publish.db", "publish.committed"}

runner = CliRunner()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    from conftest import SMALL_SPEC

    root = tmp_path_factory.mktemp("crash")
    (root / "small.yaml").write_text(SMALL_SPEC)
    reg = synthreg.init(root / "ws")
    reg.create("small", spec=root / "small.yaml")
    reg.create("small", spec=root / "small.yaml", seed=4)
    return reg.root


def _write(action: str, root: Path) -> None:
    reg = synthreg.open(root)
    if action == "create":
        reg.create("small", spec=root.parent / "small.yaml", seed=9)
    elif action == "rollback":
        reg.rollback("small", to=1, reason="crash test")
    else:
        reg.disable("small@v2", table="users", where="user_id < 5", reason="crash test")


def _child(action: str, root: str, point: str) -> None:
    os.environ[faults.KILL_AT] = point
    _write(action, Path(root))
    os._exit(0)  # the point was never reached: the parent fails the test


@pytest.mark.parametrize(
    ("action", "point"),
    [("create", p) for p in POINTS]
    + [
        (a, p)
        for a in ("rollback", "disable")
        for p in ("publish.dvc", "publish.event", "publish.git", "publish.db")
    ],
)
def test_sigkill_at_a_step_boundary_leaves_nothing_doctor_would_resurrect(
    base: Path, tmp_path: Path, action: str, point: str
) -> None:
    shutil.copytree(base.parent, tmp_path / "copy", symlinks=True)
    root = tmp_path / "copy" / "ws"
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(action, str(root), point))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL, f"{point} was not reached ({proc.exitcode})"

    rebuilt = runner.invoke(app, ["-C", str(root), "doctor", "--rebuild", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.output
    orphans = [p for p in json.loads(rebuilt.stdout)["problems"] if p["kind"] == "orphan-run"]
    if action == "create" and point in ("publish.mlflow", "publish.event", "publish.manifest"):
        # the run was logged, the version never committed: the run is deleted, not left to lie
        assert len(orphans) == 1 and orphans[0]["fixed"], rebuilt.stdout
    if point in DURABLE:
        assert orphans == [], rebuilt.stdout
    reg = synthreg.open(root)
    numbers = _numbers(reg)
    assert numbers == ([1, 2, 3] if point in DURABLE else [1, 2])
    log = subprocess.run(["git", "log", "--format=%B"], cwd=root, capture_output=True, text=True).stdout
    for n in numbers:
        info = reg.show(f"small@v{n}")
        manifest = json.loads((root / info["path"] / "manifest.json").read_text())
        assert info["git_commit"], f"v{n} has no git commit"
        assert f"audit-head: {manifest['audit_head']}" in log, f"v{n}'s event is not anchored"
    verified = runner.invoke(app, ["-C", str(root), "audit", "verify"])
    assert verified.exit_code == 0, verified.output
    assert runner.invoke(app, ["-C", str(root), "doctor"]).exit_code == 0
    _write("create", root)  # the next write works and takes the next number
    assert _numbers(synthreg.open(root))[-1] == numbers[-1] + 1


def _numbers(reg: Any) -> list[int]:
    from sqlmodel import select

    from synthreg.registry.store import Version, read_session

    with read_session(reg.workspace.engine) as session:
        return sorted(v.number for v in session.exec(select(Version)))


def test_doctor_leaves_runs_of_an_earlier_registry_at_the_same_path(tmp_path: Path, mlflow_uri: str) -> None:
    """A registry deleted and made again at the same path: the old one's runs are not this one's
    orphans, and --repair does not delete them."""
    from conftest import SMALL_SPEC

    from synthreg.integrations import mlflow as mlflow_int

    (tmp_path / "small.yaml").write_text(SMALL_SPEC)
    old = synthreg.init(tmp_path / "ws").create("small", spec=tmp_path / "small.yaml")
    shutil.rmtree(tmp_path / "ws")
    synthreg.init(tmp_path / "ws")
    repaired = runner.invoke(app, ["-C", str(tmp_path / "ws"), "doctor", "--repair", "--json"])
    assert repaired.exit_code == 0, repaired.output
    assert not [p for p in json.loads(repaired.stdout)["problems"] if p["kind"] == "orphan-run"]
    import mlflow

    assert mlflow.MlflowClient(mlflow_uri).get_run(old.mlflow_run_id).info.lifecycle_stage == "active"
    assert mlflow_int.workspace_runs(mlflow_uri, (tmp_path / "ws").resolve().as_uri())  # it is seen, and kept
