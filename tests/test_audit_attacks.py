"""The audit trail against a forger who can write the metadata DB (and, in some tests, the
workspace's git), reads our source and uses the library's own functions. Each attack here
passed `registry audit verify` before the log moved to git."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, create_engine, select
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.registry import audit
from synthreg.registry.store import AuditEvent

runner = CliRunner()


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    """small@v1 (seed 3, approved, later rejected by review) and small@v2; production -> v2."""
    from conftest import SMALL_SPEC

    root = tmp_path_factory.mktemp("attacks")
    spec = root / "small.yaml"
    spec.write_text(SMALL_SPEC)
    reg = synthreg.init(root / "ws")
    reg.create("small", spec=spec)
    reg.create("small", spec=spec, seed=4)
    return reg.root


@pytest.fixture
def ws(base: Path, tmp_path: Path) -> Path:
    """A private copy of the base workspace (git, DB, DVC remote and all)."""
    root = tmp_path / "ws"
    shutil.copytree(base, root, symlinks=True)
    return root


def _db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / ".registry" / "registry.db")


def _git(root: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "m",
        "GIT_AUTHOR_EMAIL": "m@x",
        "GIT_COMMITTER_NAME": "m",
        "GIT_COMMITTER_EMAIL": "m@x",
    }
    import os

    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _verify(root: Path) -> Any:
    return cli(root, "audit", "verify")


def _rechain(events: list[AuditEvent]) -> list[str]:
    """What a forger who read audit.py does: renumber, relink and rehash every event."""
    prev, lines = audit.GENESIS, []
    for i, e in enumerate(events, start=1):
        e.seq, e.prev_hash = i, prev
        e.hash = audit.event_hash(e)
        prev = e.hash
        lines.append(audit.event_line(e))
    return lines


def _rewrite_log(root: Path, change: Any) -> None:
    """Edit the log file, rehash it whole, commit it (git write access), and copy it to the DB."""
    events = [item.event for item in audit.parse_log((root / audit.LOG_FILE).read_text())]
    events = change(events)
    (root / audit.LOG_FILE).write_text("".join(_rechain(events)))
    _git(root, "commit", "-qam", "tidy")
    with _db(root) as con:
        con.execute("delete from auditevent")
        for e in events:
            con.execute(
                "insert into auditevent (seq, at, actor, action, dataset, version, details, prev_hash, hash) "
                "values (?,?,?,?,?,?,?,?,?)",
                (
                    e.seq,
                    e.at.isoformat(),
                    e.actor,
                    e.action,
                    e.dataset,
                    e.version,
                    json.dumps(e.details),
                    e.prev_hash,
                    e.hash,
                ),
            )


def test_a_fresh_workspace_verifies(ws: Path) -> None:
    result = _verify(ws)
    assert result.exit_code == 0, result.output
    assert "3 events" in result.stdout and "3 git anchors" in result.stdout


def test_status_changed_and_event_forged_in_the_db_with_the_library(ws: Path) -> None:
    """The attack of issue 10: change a status, then append a correctly hashed event with our code."""
    engine = create_engine(f"sqlite:///{ws}/.registry/registry.db")
    with _db(ws) as con:
        con.execute("update version set status = 'rejected' where number = 2")
    with Session(engine) as session:
        last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc())).first()  # type: ignore[union-attr]
        assert last is not None
        forged = AuditEvent(
            seq=(last.seq or 0) + 1,
            actor="alice",
            action="reject",
            dataset="small",
            version=2,
            details={"note": "looked wrong"},
            prev_hash=last.hash,
            hash="",
        )
        forged.hash = audit.event_hash(forged)
        session.add(forged)
        session.commit()
    result = _verify(ws)
    assert result.exit_code == 1
    assert "the DB holds audit event seq 4, which the log in git does not" in result.stderr
    assert "small@v2 is rejected in the DB, but the audit log says approved" in result.stderr


def test_event_appended_with_append_event_but_not_committed(ws: Path) -> None:
    engine = create_engine(f"sqlite:///{ws}/.registry/registry.db")
    with Session(engine) as session:
        audit.append_event(session, root=ws, actor="mallory", action="approve", dataset="small", version=1)
        session.commit()
    result = _verify(ws)
    assert result.exit_code == 1 and "differs from the committed log" in result.stderr


def test_event_appended_and_committed_without_an_anchor(ws: Path) -> None:
    engine = create_engine(f"sqlite:///{ws}/.registry/registry.db")
    with Session(engine) as session:
        audit.append_event(session, root=ws, actor="mallory", action="approve", dataset="small", version=1)
        session.commit()
    _git(ws, "commit", "-qm", "approve")
    result = _verify(ws)
    assert result.exit_code == 1 and "anchored by no git commit (e.g. seq 4)" in result.stderr


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda ev: [*ev[:1], ev[2], ev[1]], id="reordered"),
        pytest.param(lambda ev: [ev[0], ev[2]], id="deleted"),
        pytest.param(lambda ev: [*ev[:2], ev[2].model_copy(update={"actor": "someone-else"})], id="edited"),
    ],
)
def test_log_rewritten_and_rehashed_with_git_access(ws: Path, change: Any) -> None:
    """A forger rewrites the log file, redoes every hash, commits, and copies it into the DB:
    the chain holds, but the older commits' anchors name the original events."""
    _rewrite_log(ws, change)
    result = _verify(ws)
    assert result.exit_code == 1 and "which the log does not hold" in result.stderr


def test_alias_moved_in_the_db(ws: Path) -> None:
    assert cli(ws, "alias", "set", "small@v2", "production").exit_code == 0
    with _db(ws) as con:
        con.execute("update alias set version = 1 where name = 'production'")
    result = _verify(ws)
    assert result.exit_code == 1
    assert "alias small@production points at v1 in the DB, but the audit log says v2" in result.stderr


def test_manifest_audit_head_is_compared(ws: Path) -> None:
    path = ws / "data/small/v1/manifest.json"
    manifest = json.loads(path.read_text())
    manifest["audit_head"] = "f" * 64
    path.write_text(json.dumps(manifest))
    result = _verify(ws)
    assert result.exit_code == 1 and "data/small/v1/manifest.json names audit head ffff" in result.stderr


def test_git_that_cannot_be_read_is_an_error_not_a_pass(ws: Path) -> None:
    shutil.rmtree(ws / ".git" / "objects")
    (ws / ".git" / "objects").mkdir()
    result = _verify(ws)
    assert result.exit_code == 1 and "git" in result.stderr and "audit chain intact" not in result.stdout


def test_lost_db_comes_back_with_everything_and_verifies(ws: Path, mlflow_uri: str) -> None:
    """doctor --rebuild restores events, aliases where last set, usages, diffs, git commits, quality."""
    import mlflow

    reg = synthreg.open(ws)
    assert cli(ws, "alias", "set", "small@v2", "production").exit_code == 0
    assert cli(ws, "alias", "set", "small@v1", "production").exit_code == 0  # moved v2 -> v1
    assert cli(ws, "review", "small@v1", "--reject", "--note", "bad seed").exit_code == 0
    assert cli(ws, "diff", "small@v1", "small@v2").exit_code == 0
    mlflow.set_tracking_uri(mlflow_uri)
    with mlflow.start_run() as run:
        pass
    assert cli(ws, "use", "small@v2", "--run-id", run.info.run_id).exit_code == 0
    before = {n: reg.show(f"small@v{n}") for n in (1, 2)}
    consumers = reg.lineage("small@v2")["consumers"]
    for suffix in ("", "-wal", "-shm"):
        (ws / f".registry/registry.db{suffix}").unlink(missing_ok=True)
    assert cli(ws, "audit", "verify").exit_code == 1  # an empty DB is not the log
    rebuilt = cli(ws, "doctor", "--rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    reg = synthreg.open(ws)
    after = {n: reg.show(f"small@v{n}") for n in (1, 2)}
    assert reg.show("small@production")["version"] == 1
    assert after[1]["status"] == "rejected" and reg.show("small")["version"] == 2
    for n in (1, 2):
        for key in ("content_digest", "status", "git_commit", "aliases", "quality"):
            assert after[n].get(key) == before[n].get(key), (n, key)
    assert reg.lineage("small@v2")["consumers"] == consumers and consumers[0]["run_id"] == run.info.run_id
    diffs = [[(d["a"], d["b"], d["path"], d["summary"]) for d in v[2]["diffs"]] for v in (before, after)]
    assert diffs[0] == diffs[1] and diffs[0]
    verified = _verify(ws)
    assert verified.exit_code == 0, verified.output
    last = _git(ws, "log", "-1", "--format=%B")
    assert last.startswith("doctor") and "audit-seq: " in last  # the doctor's own event is anchored


def test_signed_log_detects_an_event_made_without_the_key(ws: Path, tmp_path: Path, monkeypatch: Any) -> None:
    key = tmp_path / "audit.key"
    key.write_text("k" * 32)
    monkeypatch.setenv(audit.KEY_ENV, str(key))
    assert cli(ws, "review", "small@v1", "--reject", "--note", "signed").exit_code == 0
    signed = _verify(ws)
    assert (
        signed.exit_code == 0
        and json.loads(cli(ws, "audit", "verify", "--json").stdout)["checked"]["signed"] == 1
    )
    monkeypatch.delenv(audit.KEY_ENV)  # the forger has the workspace, not the key
    assert cli(ws, "review", "small@v1", "--approve", "--note", "forged").exit_code == 0
    assert _verify(ws).exit_code == 0  # without the key nobody can tell...
    monkeypatch.setenv(audit.KEY_ENV, str(key))
    result = _verify(ws)  # ...with it, the key holder can
    assert result.exit_code == 1 and "is not signed, though earlier events are" in result.stderr


def test_a_key_inside_the_workspace_is_refused(ws: Path, monkeypatch: Any) -> None:
    (ws / ".registry" / "audit.key").write_text("k" * 32)
    monkeypatch.setenv(audit.KEY_ENV, str(ws / ".registry" / "audit.key"))
    result = cli(ws, "review", "small@v1", "--reject", "--note", "x")
    assert result.exit_code == 2 and "inside the workspace" in result.stderr
    monkeypatch.delenv(audit.KEY_ENV)
    assert _verify(ws).exit_code == 0  # nothing half-written
