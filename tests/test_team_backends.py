"""The team backends, real and on loopback: PostgreSQL 15, an S3 endpoint (moto's server) and an
MLflow tracking server (PostgreSQL store, S3 artifacts), chosen by URL in registry.toml.

What each bad backend gets: a URL with a password -> exit 2 (nothing written); a server that is down,
a wrong password, a missing bucket, an MLflow 500 -> exit 1 naming the URL (never the password) and
the fix, nothing written; a server stopped mid-create -> exit 1 and nothing half-registered.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Team
from team_servers import PG_PASSWORD, S3, S3_KEY_ID, S3_SECRET, Forwarder, Postgres, free_port
from typer.testing import CliRunner

import synthreg
from synthreg import env
from synthreg.cli.app import app

runner = CliRunner()
SECRETS = (PG_PASSWORD, S3_SECRET, S3_KEY_ID)


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def registry(
    root: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process (what a user runs), with this test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "synthreg", "-C", str(root), *args],
        env={**os.environ, **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def team_ws(team_env: Team, tmp_path: Path, small_spec: Path) -> Path:
    """A workspace on all three team backends, with small@v1 and small@v2."""
    root = team_env.init(tmp_path / "ws")
    reg = synthreg.open(root)
    reg.create("small", spec=small_spec)
    reg.create("small", spec=small_spec, seed=4)
    return root


def test_init_writes_urls_and_no_credentials(team_env: Team, tmp_path: Path) -> None:
    db, remote = team_env.fresh()
    result = cli(
        "init", str(tmp_path / "ws"), "--db", db, "--remote", remote,
        "--endpoint", team_env.s3.endpoint, "--mlflow", team_env.mlflow.url, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    toml = (tmp_path / "ws/registry.toml").read_text()
    assert f'db_url = "{db}"' in toml and f'url = "{remote}"' in toml
    assert f'tracking_uri = "{team_env.mlflow.url}"' in toml
    assert f"endpointurl = {team_env.s3.endpoint}" in (tmp_path / "ws/.dvc/config").read_text()
    doctor = registry(tmp_path / "ws", "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    backends = {b["backend"]: b for b in json.loads(doctor.stdout)["backends"]}
    assert all(b["ok"] for b in backends.values()), backends
    assert backends["db"]["detail"] == "postgresql answers"
    assert backends["remote"]["url"].startswith(remote)
    assert backends["mlflow"]["detail"] == "tracking server answers"


def test_create_on_the_team_backends(team_ws: Path, team_env: Team) -> None:
    reg = synthreg.open(team_ws)
    v2 = reg.show("small")
    assert (v2["version"], v2["status"]) == (2, "approved")
    assert v2["mlflow_tracking_uri"] == team_env.mlflow.url
    prefix = reg.workspace.settings.dvc_url.removeprefix(f"s3://{team_env.bucket}/")
    keys = team_env.s3_keys(prefix + "/")
    assert sum(k.endswith(".dir") for k in keys) == 2 and len(keys) >= 6  # 2 versions x (2 parts + listing)
    # the run is on the server, its artifacts on S3 (proxied by the server), its input the version
    from mlflow import MlflowClient

    client = MlflowClient(team_env.mlflow.url)
    run = client.get_run(v2["mlflow_run_id"])
    assert run.data.params["version"] == "2" and run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"datacard.md", "spec.yaml"}
    assert any(k.startswith("mlartifacts/") and k.endswith("/datacard.md") for k in team_env.s3_keys())
    assert run.inputs.dataset_inputs[0].dataset.digest == v2["content_digest"][:32]
    # --json output is only JSON, whatever the tracking server prints
    out = registry(
        team_ws, "create", "small", "--spec", str(team_ws / "specs/small.yaml"), "--seed", "5", "--json"
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["version"] == 3


def test_a_clone_on_another_machine_pulls_only_what_it_needs(
    team_ws: Path, team_env: Team, tmp_path: Path
) -> None:
    clone = tmp_path / "elsewhere"
    subprocess.run(["git", "clone", "-q", str(team_ws), str(clone)], check=True)
    assert not (clone / ".registry").exists() and not (clone / ".dvc/cache").exists()
    fresh = registry(clone, "doctor")  # data on the remote, not pulled here: nothing is wrong
    assert fresh.returncode == 0 and "healthy" in fresh.stdout, fresh.stdout + fresh.stderr
    reg = synthreg.open(clone)
    users = reg.load("small@v1", "users")
    assert users.equals(synthreg.open(team_ws).load("small@v1", "users"))
    v1 = clone / "data/small/v1/tables"
    assert (v1 / "users").is_dir() and not (v1 / "orders").exists()  # one table pulled, not the version
    assert not (clone / "data/small/v2/tables").exists()
    result = registry(clone, "checkout", "small@v2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "remote"
    assert (clone / "data/small/v2/tables/orders").is_dir()
    assert registry(clone, "verify", "small@v2").returncode == 0
    # a training job on that machine logs the version to the shared tracking server; lineage sees it
    import mlflow

    mlflow.set_tracking_uri(team_env.mlflow.url)
    mlflow.set_experiment("trainer-elsewhere")
    with mlflow.start_run() as run:
        synthreg.log_input("small@v1", workspace=clone)
    lineage = registry(team_ws, "lineage", "small@v1", "--json")
    assert lineage.returncode == 0, lineage.stderr
    consumers = {c["run_id"]: sorted(c["found_by"]) for c in json.loads(lineage.stdout)["consumers"]}
    assert consumers[run.info.run_id] == ["mlflow", "registry"]


def _git_objects(root: Path) -> Iterator[bytes]:
    """Every object of a git repository, inflated."""
    for pack_dir in [root / ".git/objects"]:
        for path in pack_dir.rglob("*"):
            if path.is_file() and len(path.parent.name) == 2:
                yield zlib.decompress(path.read_bytes())
    listing = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch"], cwd=root, capture_output=True, check=True
    )
    yield listing.stdout


def test_no_credential_is_written_anywhere(team_ws: Path, team_env: Team, tmp_path: Path) -> None:
    """Whole-workspace scan (files, git objects inflated), the MLflow runs (params, tags, artifacts on
    S3), the DVC objects on S3 and the metadata DB: no password, secret key or key id."""
    reg = synthreg.open(team_ws)
    registry(team_ws, "audit", "--format", "html", "--output", str(team_ws / "audit.html"))
    blobs: list[tuple[str, bytes]] = [
        (str(p), p.read_bytes()) for p in team_ws.rglob("*") if p.is_file() and ".git" not in p.parts
    ]
    blobs += [("git object", b) for b in _git_objects(team_ws)]
    s3 = team_env.s3.client()
    blobs += [(k, s3.get_object(Bucket=team_env.bucket, Key=k)["Body"].read()) for k in team_env.s3_keys()]
    from mlflow import MlflowClient

    client = MlflowClient(team_env.mlflow.url)
    for number in (1, 2):
        run = client.get_run(reg.show(f"small@v{number}")["mlflow_run_id"])
        blobs.append(("mlflow run", json.dumps(run.to_dictionary()).encode()))
    from sqlalchemy import text

    with reg.workspace.engine.connect() as conn:
        for table in ("auditevent", "version", "generationrun", "dataset"):
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            blobs.append((table, repr(rows).encode()))
    assert len(blobs) > 50
    for where, data in blobs:
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret[:4]}... found in {where}"


# ------------------------------------------------------------------------------ bad backends


def test_a_url_with_a_password_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    result = cli("init", str(tmp_path / "ws"), "--db", "postgresql+psycopg://me:hunter2@127.0.0.1:1/x")
    assert result.exit_code == 2
    assert (
        "carries a password" in result.stderr
        and "hunter2" not in result.stderr
        and "PGPASSWORD" in result.stderr
    )
    assert not (tmp_path / "ws").exists()


def test_backends_that_are_down_or_refuse_are_named_with_the_fix(
    team_env: Team, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = free_port()
    down, s3 = f"http://127.0.0.1:{dead}", team_env.s3.endpoint
    pg = f"postgresql+psycopg://synthreg@127.0.0.1:{dead}/nope"
    cases = [
        (["--db", pg], f"127.0.0.1:{dead}", "server is up"),
        (["--remote", "s3://no-such-bucket/x", "--endpoint", s3], "no-such-bucket", "the bucket"),
        (["--mlflow", down], down, "tracking server is up"),
        (["--remote", "s3://b/x", "--endpoint", down], down, "endpoint is up"),
    ]  # fmt: skip
    for n, (flags, named, fix) in enumerate(cases):
        target = tmp_path / f"ws{n}"
        result = cli("init", str(target), *flags)
        assert result.exit_code == 1, (flags, result.output)
        assert named in result.stderr and fix in result.stderr, result.stderr
        assert not target.exists(), f"{flags} left {target}"
    # wrong password: the server refuses, the message names the URL, never a password
    db, _ = team_env.fresh()
    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    result = cli("init", str(tmp_path / "wrong"), "--db", db)
    assert result.exit_code == 1 and db in result.stderr and "PGPASSWORD" in result.stderr
    assert "wrong-password" not in result.stderr and PG_PASSWORD not in result.stderr
    assert not (tmp_path / "wrong").exists()


class _Failing(http.server.BaseHTTPRequestHandler):
    """An MLflow server whose backend is broken: every request gets a 500."""

    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error_code": "INTERNAL_ERROR", "message": "backend store is down"}')

    do_POST = do_GET

    def log_message(self, *args: Any) -> None:
        pass


def test_an_mlflow_500_fails_create_and_leaves_nothing(
    team_env: Team, tmp_path: Path, small_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("init", str(tmp_path / "ws"), "--mlflow", url)
        assert result.exit_code == 1 and "HTTP 500" in result.stderr and "backend store" in result.stderr
        assert not (tmp_path / "ws").exists()
        # a workspace whose server breaks later: create fails at the MLflow step, nothing registered
        root = team_env.init(tmp_path / "ws2")
        monkeypatch.setenv(env.MLFLOW_TRACKING_URI, url)
        head = _head(root)
        out = registry(root, "create", "small", "--spec", str(small_spec))
        assert out.returncode == 1, out.stderr
        assert url in out.stderr and "tracking server is up" in out.stderr
        _assert_nothing_registered(root, head)
        doctor = registry(root, "doctor", "--json")
        assert doctor.returncode == 1
        assert any("HTTP 500" in p["detail"] for p in json.loads(doctor.stdout)["problems"])
    finally:
        server.shutdown()


def _head(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout


def _assert_nothing_registered(root: Path, head: str) -> None:
    assert _head(root) == head
    assert not list((root / "data").glob("*/v*"))
    assert (
        subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
        == ""
    )
    assert synthreg.open(root).list() == []
    assert synthreg.open(root).verify_audit().ok


# ---------------------------------------------------------------- a server stopped mid-create


def _create_paused_at(
    root: Path, spec: Path, point: str, tmp_path: Path
) -> tuple[subprocess.Popen[str], Path]:
    gate = tmp_path / "gate"
    gate.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "synthreg", "-C", str(root), "create", "small", "--spec", str(spec)],
        env={**os.environ, "SYNTHREG_PAUSE_AT": f"{point}:{gate}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (gate / "reached").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, gate


def _resume(proc: subprocess.Popen[str], gate: Path) -> tuple[int, str]:
    (gate / "go").touch()
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.parametrize("which", ["s3", "mlflow", "postgres"])
def test_a_server_stopped_mid_create_leaves_nothing_half_registered(
    which: str, team_env: Team, tmp_path: Path, small_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Own servers (the session's stay up): S3 stops before the DVC push, MLflow before its run
    (logged while DVC pushes), PostgreSQL before the DB rows are inserted (after the git commit,
    which is undone)."""
    root = tmp_path / "ws"
    if which == "s3":
        server: Any = S3().start()
        server.make_bucket("own")
        team_env.init(root, remote="s3://own/dvc", endpoint=server.endpoint)
        point, stop = "publish.rename", server.stop
    elif which == "mlflow":  # the session's server behind a forwarder that goes away
        server = Forwarder(team_env.mlflow.port).start()
        monkeypatch.setenv(env.MLFLOW_TRACKING_URI, server.url)
        team_env.init(root, mlflow=server.url)
        point, stop = "publish.rename", server.stop  # the run is logged while DVC pushes
    else:
        server = Postgres().start()
        team_env.init(root, db=server.create_db("own"))
        point, stop = "publish.git", server.stop
    try:
        head = _head(root)
        proc, gate = _create_paused_at(root, small_spec, point, tmp_path)
        stop()
        code, err = _resume(proc, gate)
        assert code == 1, err
        assert "did not answer" in err or "could not" in err, err
        assert PG_PASSWORD not in err and S3_SECRET not in err
        # back at the same address: PostgreSQL on its data directory (the DB as it was before the
        # create), moto with its in-memory state (the bucket), MLflow's forwarder
        server.start()
        _assert_nothing_registered(root, head)
        doctor = cli("-C", str(root), "doctor")  # in process: the servers are back
        assert doctor.exit_code == 0, doctor.output
        assert synthreg.open(root).create("small", spec=small_spec).version == 1  # the number was not used
    finally:
        if which == "postgres":
            server.destroy()
        else:
            server.stop()
        shutil.rmtree(tmp_path / "gate", ignore_errors=True)


def test_clones_that_share_the_db_write_in_turn(team_ws: Path, tmp_path: Path) -> None:
    """A clone that is behind the shared DB's audit log is refused until it pulls; then it writes."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(team_ws), str(clone)], check=True)
    moved = registry(clone, "alias", "set", "small@v1", "staging")
    assert moved.returncode == 0, moved.stderr
    behind = registry(team_ws, "alias", "set", "small@v2", "production")
    assert behind.returncode == 2 and "git pull" in behind.stderr, behind.stderr
    branch = subprocess.run(
        ["git", "branch", "--show-current"], cwd=clone, capture_output=True, text=True
    ).stdout.strip()
    subprocess.run(["git", "pull", "-q", "--ff-only", str(clone), branch], cwd=team_ws, check=True)
    again = registry(team_ws, "alias", "set", "small@v2", "production")
    assert again.returncode == 0, again.stderr
    assert registry(team_ws, "audit", "verify").returncode == 0
    assert synthreg.open(team_ws).show("small@staging")["version"] == 1


def test_a_password_put_into_registry_toml_by_hand_is_refused(team_env: Team, tmp_path: Path) -> None:
    root = team_env.init(tmp_path / "ws")
    config = root / "registry.toml"
    config.write_text(
        config.read_text().replace("postgresql+psycopg://synthreg@", "postgresql+psycopg://synthreg:pw9@")
    )
    result = registry(root, "list")
    assert result.returncode == 2 and "carries a password" in result.stderr and "pw9" not in result.stderr
