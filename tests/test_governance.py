"""rollback, checkout, alias, review, use/lineage, audit, verify, doctor on real workspaces, each on
the embedded backends (SQLite, local DVC remote, MLflow DB) and on the team ones (PostgreSQL, S3,
MLflow server): the ``backend`` fixture of conftest.py."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import make_workspace
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app

runner = CliRunner()


def cli(root: Path, *args: str) -> Any:
    return runner.invoke(app, ["-C", str(root), *args])


@pytest.fixture
def two(request: pytest.FixtureRequest, backend: str, tmp_path: Path, small_spec: Path) -> Path:
    """A workspace with small@v1 (seed 3) and small@v2 (seed 4); current = v2."""
    reg = synthreg.open(make_workspace(request, backend, tmp_path / "ws"))
    reg.create("small", spec=small_spec)
    reg.create("small", spec=small_spec, seed=4)
    return reg.root


def _sql(root: Path, *statements: str) -> None:
    """Change the metadata DB behind synthreg's back (SQLite or PostgreSQL), in one transaction."""
    from sqlalchemy import text

    with synthreg.open(root).workspace.engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def _lose_db(root: Path) -> None:
    """The metadata DB is gone: the SQLite files deleted, or every table of the PostgreSQL DB dropped."""
    settings = synthreg.open(root).workspace.settings
    if settings.db_url.startswith("postgresql"):
        _sql(root, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        return
    for suffix in ("", "-wal", "-shm"):
        (root / f".registry/registry.db{suffix}").unlink(missing_ok=True)


def _remote_objects(root: Path) -> int:
    """Content objects on the workspace's DVC remote (a local folder or an S3 prefix)."""
    settings = synthreg.open(root).workspace.settings
    if not settings.dvc_url.startswith("s3://"):
        return _objects(root / ".registry/dvc-remote")
    import boto3

    bucket, _, prefix = settings.dvc_url.removeprefix("s3://").partition("/")
    pages = (
        boto3.client("s3", endpoint_url=settings.dvc_endpoint)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=f"{prefix}/files/")
    )
    return sum(len(page.get("Contents", [])) for page in pages)


def _objects(store: Path) -> int:
    """Content objects (DVC's run cache under runs/ records stages, not data)."""
    return sum(p.is_file() for p in (store / "files").rglob("*"))


def test_rollback_appends_a_version_with_the_old_content(two: Path) -> None:
    cache_before, remote_before = _objects(two / ".dvc/cache"), _remote_objects(two)
    result = cli(two, "rollback", "small", "--to", "v1", "--reason", "seed 4 drifted", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["version"], data["restored_from"], data["parent"]) == (3, 1, 2)
    reg = synthreg.open(two)
    v1, v3 = reg.show("small@v1"), reg.show("small")
    assert v3["version"] == 3 and v3["content_digest"] == v1["content_digest"]
    assert reg.load("small@v3", "users").equals(reg.load("small@v1", "users"))
    assert v3["dvc_md5"] == v1["dvc_md5"]  # the same DVC object: nothing new in the cache or remote
    assert _objects(two / ".dvc/cache") == cache_before
    assert _remote_objects(two) == remote_before
    log = subprocess.run(["git", "log", "-1", "--format=%s"], cwd=two, capture_output=True, text=True).stdout
    assert log.startswith("rollback small@v3")
    from synthreg.integrations import dvc

    assert dvc.status(two) == {}
    again = cli(two, "rollback", "small", "--to", "1")
    assert again.exit_code == 0 and "already has the content of v1: nothing to do" in again.stdout
    assert [v["version"] for v in reg.show("small")["versions"]] == [1, 2, 3]


def test_rollback_to_a_rejected_version_needs_force_and_reason(two: Path) -> None:
    assert cli(two, "review", "small@v1", "--reject", "--note", "bad").exit_code == 0
    refused = cli(two, "rollback", "small", "--to", "v1")
    assert (
        refused.exit_code == 5 and "was rejected" in refused.stderr and "--force --reason" in refused.stderr
    )
    no_reason = cli(two, "rollback", "small", "--to", "v1", "--force")
    assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.stderr
    forced = cli(two, "rollback", "small", "--to", "v1", "--force", "--reason", "audit asked", "--json")
    assert forced.exit_code == 0 and json.loads(forced.stdout)["status"] == "approved"
    assert cli(two, "rollback", "small", "--to", "v9").exit_code == 4
    assert cli(two, "rollback", "small", "--to", "x").exit_code == 2


def test_review_and_aliases_move_current(two: Path) -> None:
    reg = synthreg.open(two)
    result = cli(two, "review", "small@v2", "--reject", "--note", "drifted", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["current"] == 1
    assert reg.show("small")["version"] == 1
    assert cli(two, "review", "small@v2", "--reject").exit_code == 5  # already rejected
    assert json.loads((two / "data/small/v2/datacard.json").read_text())["identity"]["status"] == "rejected"
    assert cli(two, "review", "small@v2").exit_code == 2  # neither flag
    assert cli(two, "review", "small@v2", "--approve", "--note", "ok after all").exit_code == 0
    assert reg.show("small")["version"] == 2
    assert cli(two, "alias", "set", "small@v1", "production").exit_code == 0
    assert reg.show("small@production")["version"] == 1
    assert "production" in reg.show("small@v1")["aliases"]
    assert cli(two, "alias", "set", "small@v1", "Prod Uction").exit_code == 2
    card = json.loads((two / "data/small/v1/datacard.json").read_text())
    assert card["uses"]["aliases"] == ["production"] and card["identity"]["status"] == "approved"
    card2 = json.loads((two / "data/small/v2/datacard.json").read_text())
    assert card2["identity"]["status"] == "approved" and card2["uses"]["aliases"] == ["current"]
    assert "status: **approved**" in (two / "data/small/v2/datacard.md").read_text()
    assert "Aliases: production." in (two / "data/small/v1/datacard.md").read_text()  # the card says it too
    status = subprocess.run(["git", "status", "--porcelain"], cwd=two, capture_output=True, text=True)
    assert status.stdout == ""  # the regenerated cards were committed with the change
    events = reg.audit(dataset="small")
    assert [e["action"] for e in events] == ["create", "create", "reject", "approve", "alias"]
    reg.verify("small@v1")
    assert reg.audit(dataset="small")[-1]["action"] == "verify"
    assert events[2]["details"]["note"] == "drifted" and events[2]["actor"]


def test_actor_option_is_recorded(two: Path) -> None:
    assert (
        runner.invoke(
            app, ["-C", str(two), "--actor", "alice", "alias", "set", "small@v2", "staging"]
        ).exit_code
        == 0
    )
    assert synthreg.open(two).audit()[-1]["actor"] == "alice"


def test_checkout_from_cache_and_from_remote(two: Path, tmp_path: Path) -> None:
    reg = synthreg.open(two)
    tables = two / "data/small/v1/tables"
    before = pq.read_table(tables / "users").to_pylist()
    shutil.rmtree(tables)
    result = cli(two, "checkout", "small@v1", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["source"] == "cache"
    shutil.rmtree(tables)
    shutil.rmtree(two / ".dvc" / "cache")
    result = cli(two, "checkout", "small@v1", "--dest", str(tmp_path / "copy"), "--json")
    assert json.loads(result.stdout)["source"] == "remote"
    assert pq.read_table(tmp_path / "copy/tables/users").to_pylist() == before
    reg.verify("small@v1")


def test_a_checkout_copy_in_the_workspace_is_not_a_second_dvc_stage(two: Path) -> None:
    """``checkout --dest`` copies the version without its DVC stage files: their output is the
    workspace's folder, so a copy inside the workspace would be a second stage of it (DVC then
    refuses to check out one table of the version)."""
    dest = two / "exports" / "small-v1"
    try:
        assert cli(two, "checkout", "small@v1", "--dest", str(dest)).exit_code == 0
        assert (dest / "manifest.json").is_file() and (dest / "tables" / "users").is_dir()
        assert not (dest / "dvc.yaml").exists() and not (dest / "dvc.lock").exists()
        before = pq.read_table(two / "data/small/v1/tables/users").to_pylist()
        shutil.rmtree(two / "data/small/v1/tables/users")
        assert synthreg.open(two).load("small@v1", "users").to_pylist() == before  # one table, from the cache
    finally:
        shutil.rmtree(two / "exports", ignore_errors=True)


def test_verify_detects_an_edited_parquet_byte(two: Path) -> None:
    assert cli(two, "verify", "small@v2", "--rebuild").exit_code == 0
    part = two / "data/small/v2/tables/orders/part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    result = cli(two, "verify", "small@v2")
    assert result.exit_code == 1
    assert "tables/orders/part-00000.parquet is missing or does not match its sha256" in result.stderr


def test_audit_verify_detects_a_deleted_event(two: Path) -> None:
    assert cli(two, "audit", "verify").exit_code == 0
    _sql(two, "delete from auditevent where seq = 2")
    result = cli(two, "audit", "verify")
    assert result.exit_code == 1 and "missing from the DB (e.g. seq 2)" in result.stderr


def test_audit_verify_detects_a_deleted_newest_event(two: Path) -> None:
    _sql(two, "delete from auditevent where seq = (select max(seq) from auditevent)")
    result = cli(two, "audit", "verify")
    assert result.exit_code == 1 and "1 events of the log are missing from the DB" in result.stderr


def test_audit_verify_detects_a_status_changed_in_the_db(two: Path) -> None:
    _sql(
        two,
        "update version set status = 'approved' where number = 1",  # already approved: no change
        "update version set status = 'rejected' where number = 2",
    )
    result = cli(two, "audit", "verify")
    assert (
        result.exit_code == 1
        and "small@v2 is rejected in the DB, but the audit log says approved" in result.stderr
    )


def test_audit_formats(two: Path, tmp_path: Path) -> None:
    events = json.loads(cli(two, "audit", "--format", "json").stdout)
    assert {"seq", "at", "actor", "action", "dataset", "version", "details", "prev_hash", "hash"} <= set(
        events[0]
    )
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    out = tmp_path / "audit.html"
    assert cli(two, "audit", "--format", "html", "--output", str(out)).exit_code == 0
    page = out.read_text()
    assert "<table>" in page and "small" in page and "http://" not in page and "https://" not in page
    md = cli(two, "audit", "--format", "md").stdout
    assert "## small" in md and "verified intact" in md
    assert cli(two, "audit", "--since", "yesterday").exit_code == 2
    assert json.loads(cli(two, "audit", "--format", "json", "--since", "2999-01-01").stdout) == []


def test_use_and_lineage_find_runs_logged_with_and_without_synthreg(two: Path) -> None:
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    reg = synthreg.open(two)
    digest = reg.show("small@v1")["content_digest"]
    mlflow_uri = reg.workspace.settings.mlflow_tracking_uri  # a local DB, or the team's server
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("someone-else")
    with mlflow.start_run() as outside:  # logged without synthreg: found by digest
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = resolve_dataset_source((two / "data/small/v1").as_uri())
        mlflow.log_input(MetaDataset(source, name="small-v1", digest=digest[:32]), context="training")
    with mlflow.start_run() as inside:
        synthreg.log_input("small@v1", workspace=two)
        mlflow.log_param("lr", 0.1)
    with mlflow.start_run() as later:
        pass
    model = mlflow.MlflowClient(mlflow_uri).create_logged_model(
        experiment_id=later.info.experiment_id, name="churn-model", source_run_id=inside.info.run_id
    )
    result = cli(two, "use", "small@v1", "--run-id", later.info.run_id, "--context", "evaluation", "--json")
    assert result.exit_code == 0, result.output
    assert cli(two, "use", "small@v1", "--run-id", "nope").exit_code == 4
    data = json.loads(cli(two, "lineage", "small@v1", "--json").stdout)
    found = {c["run_id"]: sorted(c["found_by"]) for c in data["consumers"]}
    assert found[outside.info.run_id] == ["mlflow"]
    assert found[inside.info.run_id] == ["mlflow", "registry"]
    assert found[later.info.run_id] == ["mlflow", "registry"]
    assert data["children"] == [{"version": 2, "relation": "parent", "status": "approved"}]
    assert [m["model_id"] for m in data["models"]] == [model.model_id]
    assert data["generation"]["seed"] == 3
    with pytest.raises(synthreg.errors.UsageError, match="needs an active MLflow run"):
        synthreg.log_input("small@v1", workspace=two)


def test_doctor_repairs_and_rebuilds_a_lost_db(two: Path) -> None:
    reg = synthreg.open(two)
    assert cli(two, "review", "small@v1", "--reject", "--note", "bad seed").exit_code == 0
    assert cli(two, "alias", "set", "small@v2", "production").exit_code == 0
    before = [
        (v["version"], v["content_digest"], v["status"]) for v in (reg.show(f"small@v{n}") for n in (1, 2))
    ]
    (two / ".registry/staging/deadbeef").mkdir(parents=True)
    shutil.rmtree(two / "data/small/v2/tables/users")  # was here (it is in the cache): reported
    result = cli(two, "doctor")
    assert result.exit_code == 1 and "orphan-staging" in result.stdout
    assert "data/small/v2: 1 data files missing locally" in result.stdout
    assert cli(two, "doctor", "--repair").exit_code == 0
    assert not (two / ".registry/staging/deadbeef").exists()
    assert (two / "data/small/v2/tables/users").is_dir()
    _lose_db(two)
    rebuilt = cli(two, "doctor", "--rebuild", "--json")
    assert rebuilt.exit_code == 0, rebuilt.output
    fixed = [p["detail"] for p in json.loads(rebuilt.stdout)["problems"] if p["kind"] == "rebuilt"]
    assert sum("manifest.json" in d for d in fixed) == 2 and any("audit events restored" in d for d in fixed)
    reg = synthreg.open(two)
    assert [
        (v["version"], v["content_digest"], v["status"]) for v in (reg.show(f"small@v{n}") for n in (1, 2))
    ] == before
    assert reg.show("small")["version"] == 2
    assert reg.show("small@v1")["generation"]["seed"] == 3
    assert reg.show("small@v1")["status"] == "rejected"  # the review survives, replayed from the log
    assert reg.show("small@production")["version"] == 2
    assert cli(two, "audit", "verify").exit_code == 0


def test_diff_through_the_cli_is_stored_and_listed(two: Path, tmp_path: Path) -> None:
    report = tmp_path / "diff.html"
    result = cli(two, "diff", "small@v1", "small@v2", "--report", str(report), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert "seed 3 -> 4" in data["summary"]["text"]
    users = data["tables"]["users"]
    assert users["rows"] == {"a": 300, "b": 300}
    rows = users["rows_diff"]
    assert (rows["mode"], rows["added"], rows["removed"]) == ("key", 0, 0)
    assert 250 < rows["changed"] <= 300  # same keys, other seed: nearly every row differs
    page = report.read_text()
    assert "data:image/png;base64" in page or "<table" in page
    assert "http://" not in page and "https://" not in page
    stored = two / data["stored_at"]
    assert (stored / "diff.json").is_file() and (stored / "diff.md").is_file()
    shown = synthreg.open(two).show("small@v2")
    assert [d["a"] for d in shown["diffs"]] == ["small@v1"]
    assert synthreg.open(two).audit()[-1]["action"] == "diff"
    status = subprocess.run(["git", "status", "--porcelain"], cwd=two, capture_output=True, text=True)
    assert status.stdout == ""
    assert cli(two, "diff", "small@v1", "small@v2", "--report", str(tmp_path / "x.pdf")).exit_code == 2
    assert cli(two, "diff", "small@v1", "small@v9").exit_code == 4


def test_init_with_a_remote_url_pushes_there(tmp_path: Path, small_spec: Path, mlflow_uri: str) -> None:
    remote = tmp_path / "elsewhere"
    result = runner.invoke(app, ["init", str(tmp_path / "ws"), "--remote", str(remote), "--json"])
    assert result.exit_code == 0, result.output
    root = tmp_path / "ws"
    assert str(remote) in (root / ".dvc" / "config").read_text()
    synthreg.open(root).create("r", spec=small_spec)
    assert sum(p.is_file() for p in remote.rglob("*")) >= 3  # two parts and the .dir listing
    assert not (root / ".registry" / "dvc-remote").exists()
