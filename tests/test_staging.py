"""Cluster tasks that share no folder with the client: each uploads its part to S3 (moto's server on
loopback) under a fixed key, the client downloads and checks every part, and the staged copies
are deleted. Same content digest as the process pool; a retried task changes nothing; a part
that is not what its worker wrote is refused."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Team, row_suite_runs
from team_servers import S3

from synthreg import faults
from synthreg.generators.engine import generate
from synthreg.generators.spec_io import parse_spec
from synthreg.generators.staging import PartStage, StagingError
from synthreg.integrations import dvc

BUCKET = Team.bucket  # the session's test bucket; these tests write under run-*/ in it


@pytest.fixture(scope="module")
def s3(team: Team) -> S3:
    """The session's moto S3 server; its test credentials are in the environment (the Dask
    workers inherit them)."""
    return team.s3


@pytest.fixture(scope="module")
def spec(small_spec_text: str) -> Any:
    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["rows"], data["tables"]["orders"]["rows"] = 150_000, 400_000
    return parse_spec(data, "staging.yaml")


def _keys(s3: S3, prefix: str = "") -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _parts(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_staged_parts_come_back_as_the_pool_writes_them(spec: Any, s3: S3, tmp_path: Path) -> None:
    stage = PartStage(f"s3://{BUCKET}/run-a", s3.endpoint)
    staged = generate(spec, tmp_path / "staged", cluster="local:2", stage=stage)
    pool = generate(spec, tmp_path / "pool", workers=2)
    assert staged.content_digest == pool.content_digest
    assert _parts(tmp_path / "staged") == _parts(tmp_path / "pool")  # no temporary file left
    assert _keys(s3, "run-a/") == []  # the staged copies are gone
    for table in staged.tables.values():
        for path, hashed in zip(table.files, table.hashes, strict=True):
            data = path.read_bytes()
            assert hashed.sha256 == hashlib.sha256(data).hexdigest() and hashed.matches(path)
            assert hashed.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_a_worker_killed_mid_task_leaves_one_object_per_part(
    spec: Any, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "killed-once"
    monkeypatch.setenv(faults.KILL_AT, "engine.segment.orders.1")
    monkeypatch.setenv(faults.KILL_ONCE, str(flag))
    stage = PartStage(f"s3://{BUCKET}/run-b", s3.endpoint)
    killed = generate(spec, tmp_path / "killed", cluster="local:2", stage=stage)
    assert flag.exists()
    monkeypatch.delenv(faults.KILL_AT)
    clean = generate(spec, tmp_path / "clean", workers=2)
    assert killed.content_digest == clean.content_digest
    assert _parts(tmp_path / "killed") == _parts(tmp_path / "clean")
    assert _keys(s3, "run-b/") == []


def test_a_staged_part_that_changed_is_refused(s3: S3, tmp_path: Path) -> None:
    stage = PartStage(f"s3://{BUCKET}/run-c", s3.endpoint)
    part = tmp_path / "worker" / "part-00000.parquet"
    part.parent.mkdir()
    part.write_bytes(b"the bytes the worker wrote")
    stage.upload(part, "t")
    assert _keys(s3, "run-c/") == ["run-c/tables/t/part-00000.parquet"]
    s3.client().put_object(Bucket=BUCKET, Key="run-c/tables/t/part-00000.parquet", Body=b"other bytes")
    local = tmp_path / "client" / "tables" / "t" / "part-00000.parquet"
    with pytest.raises(StagingError, match="not what its worker wrote"):
        stage.download([("t", local, hashlib.sha256(part.read_bytes()).hexdigest(), None)])
    assert not local.exists() and list(local.parent.iterdir()) == []  # no partial file either
    with pytest.raises(StagingError, match="could not be read"):
        stage.download([("t", local.with_name("part-00001.parquet"), "0" * 64, None)])
    stage.clear()
    assert _keys(s3, "run-c/") == []


def test_checked_parts_are_copied_into_the_dvc_remote_unless_there(s3: S3, tmp_path: Path) -> None:
    """``promote`` copies each staged part to DVC's content-addressed object in the remote
    (``files/md5/<2>/<30>``), within S3; an object already there is left as it is."""
    stage = PartStage(f"s3://{BUCKET}/run-p/staging", s3.endpoint, remote=f"s3://{BUCKET}/run-p/remote")
    datas = {"part-00000.parquet": b"first part", "part-00001.parquet": b"second part"}
    md5s = {name: hashlib.md5(data, usedforsecurity=False).hexdigest() for name, data in datas.items()}
    for name, data in datas.items():
        (tmp_path / name).write_bytes(data)
        stage.upload(tmp_path / name, "t")
    there = md5s["part-00001.parquet"]
    s3.client().put_object(Bucket=BUCKET, Key=f"run-p/remote/files/md5/{there[:2]}/{there[2:]}", Body=b"kept")
    assert stage.promote([("t", name, md5) for name, md5 in md5s.items()]) == 1
    first = md5s["part-00000.parquet"]
    objects = {
        k: s3.client().get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in _keys(s3, "run-p/remote/")
    }
    assert objects == {
        f"run-p/remote/files/md5/{first[:2]}/{first[2:]}": b"first part",
        f"run-p/remote/files/md5/{there[:2]}/{there[2:]}": b"kept",
    }
    assert (
        PartStage(f"s3://{BUCKET}/run-p/staging", s3.endpoint).promote([("t", "x", first)]) == 0
    )  # no remote
    stage.clear()


def _md5s(result: Any) -> set[str]:
    return {
        hashlib.md5(p.read_bytes(), usedforsecurity=False).hexdigest()
        for table in result.tables.values()
        for p in table.files
    }


def _copied(s3: S3, prefix: str) -> set[str]:
    """The md5s of the objects under a DVC remote's ``files/md5/`` layout."""
    return {key.split("/files/md5/")[1].replace("/", "") for key in _keys(s3, prefix)}


def test_parts_the_constraints_rewrote_are_fetched_and_copied_into_the_remote(
    capped_spec: Any, s3: S3, tmp_path: Path
) -> None:
    """A table its group constraints rewrote is rewritten where its parts are staged (the tasks
    read and write S3), and its new parts are the ones fetched and copied into the remote: what
    DVC will push. Same bytes as the pool writes."""
    stage = PartStage(f"s3://{BUCKET}/run-q/staging", s3.endpoint, remote=f"s3://{BUCKET}/run-q/remote")
    result = generate(capped_spec, tmp_path / "staged", cluster="local:2", stage=stage)
    assert result.params["constraints"]["shifts"]  # the cap rewrote shifts
    pool = generate(capped_spec, tmp_path / "pool", workers=2)
    assert result.content_digest == pool.content_digest
    assert _md5s(result) == _md5s(pool)  # byte for byte
    assert _copied(s3, "run-q/remote/") == _md5s(result) and _keys(s3, "run-q/staging/") == []
    for path, hashed in zip(result.tables["shifts"].files, result.tables["shifts"].hashes, strict=True):
        assert hashed.matches(path) and hashed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not (tmp_path / "staged" / ".groups").exists()  # no shuffle on this machine


def test_group_rules_of_staged_parts_run_on_the_remote_cluster(
    small_spec_text: str, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster that shares no folder with this machine, with parts staged in S3: the group
    rules' split, reduce and apply tasks run on its workers, over the staged parts, their pieces
    under the stage; an apply task killed mid-write is rerun, and the version is the pool's."""
    from distributed import LocalCluster

    from synthreg.generators import group_rules

    data = yaml.safe_load(small_spec_text)
    data["tables"]["users"]["rows"], data["tables"]["orders"]["rows"] = 150_000, 400_000
    data["tables"]["orders"]["constraints"] = [
        {"kind": "max_rows_per_group", "group_by": ["user_id"], "limit": 3, "action": "drop"},
        {"kind": "sum_limit", "group_by": ["user_id"], "column": "amount", "limit": 60, "action": "cap"},
    ]
    capped = parse_spec(data, "capped.yaml")
    pool = generate(capped, tmp_path / "pool", workers=2)
    monkeypatch.setattr(group_rules, "BUCKET_ROWS", 150_000)  # 3 buckets of the 400k orders
    flag = tmp_path / "killed-once"
    monkeypatch.setenv(faults.KILL_AT, "groups.apply.orders.1")  # read by the worker processes
    monkeypatch.setenv(faults.KILL_ONCE, str(flag))
    stage = PartStage(f"s3://{BUCKET}/run-g/staging", s3.endpoint, remote=f"s3://{BUCKET}/run-g/remote")
    temp = Path(tempfile.gettempdir())
    before = {*temp.glob("synthreg-apply-*"), *temp.glob("synthreg-pieces-*")}
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        staged = generate(capped, tmp_path / "staged", cluster=cluster.scheduler_address, stage=stage)
        ran = set(cluster.scheduler.task_prefixes)
        # the same segments, written by the same workers to this machine's folder
        shared = generate(capped, tmp_path / "shared", cluster=cluster.scheduler_address)
    assert flag.exists()  # a worker did die after writing a row group of orders part 1
    # the killed task's scratch was in its worker's own folder, which went with the cluster
    assert {*temp.glob("synthreg-apply-*"), *temp.glob("synthreg-pieces-*")} <= before
    assert {"synthreg-groups-split", "synthreg-groups-reduce", "synthreg-groups-apply"} <= ran, ran
    notes = staged.params["constraints"]["orders"]
    assert notes["max_rows_per_group#0"]["rows_changed"] > 0 and notes["sum_limit#1"]["rows_changed"] > 0
    assert staged.content_digest == pool.content_digest == shared.content_digest
    assert _md5s(staged) == _md5s(shared) and _parts(tmp_path / "staged") == _parts(tmp_path / "shared")
    assert _copied(s3, "run-g/remote/") == _md5s(staged) and _keys(s3, "run-g/staging/") == []


def test_parts_of_tables_with_llm_columns_are_not_copied_into_the_remote(s3: S3, tmp_path: Path) -> None:
    """An ``llm_text`` column is filled in after the engine, so that table's staged bytes are not
    what DVC will push: only the other tables' parts are copied."""
    from synthreg.generators import engine

    spec = parse_spec(
        {
            "seed": 1,
            "tables": {
                "plain": {"rows": 10, "columns": {"n": {"type": "int"}}},
                "noted": {
                    "rows": 10,
                    "columns": {
                        "n": {"type": "int"},
                        "note": {"type": "llm_text", "llm": {"prompt": "Say {n}", "models": ["openai/m"]}},
                    },
                },
            },
        },
        "llm.yaml",
    )
    stage = PartStage(f"s3://{BUCKET}/run-l/staging", s3.endpoint, remote=f"s3://{BUCKET}/run-l/remote")
    done = []
    for table in ("plain", "noted"):
        part = tmp_path / table / "part-00000.parquet"
        part.parent.mkdir()
        part.write_bytes(f"bytes of {table}".encode())
        stage.upload(part, table)
        md5 = hashlib.md5(part.read_bytes(), usedforsecurity=False).hexdigest()
        hashed = engine.FileHash(md5, "", part.stat().st_size, part.stat().st_mtime_ns)
        done.append((engine._Segment(table, 0, 0, 10), part, 10, [], hashed, {}))
    tables = engine._collect(spec, done)
    engine._promote(spec, tables, {"plain": stage, "noted": stage})
    assert _copied(s3, "run-l/remote/") == {done[0][4].md5}
    stage.clear()


def test_a_stage_needs_a_cluster_and_an_s3_url(spec: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cluster"):
        generate(spec, tmp_path, stage=PartStage("s3://b/p"))
    for bad in ("file:///tmp/x", "s3://bucket-only", "s3:///no-bucket"):
        with pytest.raises(ValueError, match="s3://bucket/prefix"):
            PartStage(bad)


def test_create_on_a_remote_cluster_stages_parts_beside_the_s3_remote(
    team: Team, tmp_path: Path, small_spec_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--cluster tcp://...`` with an S3 remote: the tasks upload their parts under
    ``<remote>/synthreg-staging/``, the group rules rewrite orders there, create fetches the
    final parts; same version as the pool makes, nothing left for ``dvc push`` to upload but the
    listing, and no staged object left. The quality counts of users, taken by the tasks that
    wrote its parts (their hashes staged beside the parts), are merged by bucket tasks on the
    cluster; orders, rewritten after, is measured here: the same quality.json either way."""
    import json

    from distributed import LocalCluster
    from typer.testing import CliRunner

    from synthreg.cli.app import app

    data = yaml.safe_load(small_spec_text)
    data["tables"]["orders"]["constraints"] = [
        {"kind": "max_rows_per_group", "group_by": ["user_id"], "limit": 4, "action": "drop"}
    ]
    small_spec = tmp_path / "capped.yaml"
    small_spec.write_text(yaml.safe_dump(data))
    root = team.init(tmp_path / "ws")
    runner = CliRunner()
    pushed: list[int] = []  # what each create's dvc push uploaded (the real push, observed)
    push = dvc.push
    monkeypatch.setattr(dvc, "push", lambda *a: pushed.append(push(*a)) or pushed[-1])
    from synthreg.validators import quality_parts

    by_parts: list[list[str]] = []
    real = quality_parts.counts_by_parts
    monkeypatch.setattr(
        quality_parts, "counts_by_parts", lambda *a: by_parts.append(sorted(found := real(*a))) or found
    )
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    ) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        args = ["-C", str(root), "create", "remote", "--spec", str(small_spec), "--json"]
        staged = runner.invoke(app, [*args, "--cluster", cluster.scheduler_address])
        ran = set(cluster.scheduler.task_prefixes)
    assert staged.exit_code == 0, staged.output
    assert by_parts == [["users"]] and "synthreg-quality-bucket" in ran and "synthreg-quality-part" not in ran
    from synthreg.generators.spec_io import load_spec
    from synthreg.validators.quality import table_quality

    version = root / "data" / "remote" / "v1"
    found = json.loads((version / "quality.json").read_text())["tables"]
    assert found == table_quality(load_spec(version / "spec.yaml"), version / "tables")
    pool = runner.invoke(app, ["-C", str(root), "create", "pooled", "--spec", str(small_spec), "--json"])
    assert pool.exit_code == 0, pool.output
    assert json.loads(staged.stdout)["content_digest"] == json.loads(pool.stdout)["content_digest"]
    parts = len(list((root / "data" / "remote" / "v1" / "tables").rglob("*.parquet")))
    # the staged parts, and the orders parts the group rules rewrote in S3, were copied into the remote
    # within S3: its push sent only the .dir listing (without the copy: the parts too); the pooled
    # version, the same bytes, had nothing to send
    assert parts >= 2 and pushed == [1, 0], (parts, pushed)
    manifest = json.loads((root / "data" / "remote" / "v1" / "manifest.json").read_text())
    assert manifest["params"]["parts"].startswith("staged in S3") and manifest["params"]["cluster"] == "dask"
    assert manifest["params"]["constraints"]["orders"]["max_rows_per_group#0"]["rows_changed"] > 0
    assert (
        "parts" not in json.loads((root / "data" / "pooled" / "v1" / "manifest.json").read_text())["params"]
    )
    # no staged part is left; pyarrow keeps an empty "directory" marker of the parent prefix
    assert [k for k in team.s3_keys() if "synthreg-staging" in k and not k.endswith("/")] == []


def test_the_workers_validation_of_staged_parts_is_merged(spec: Any, s3: S3, tmp_path: Path) -> None:
    """A fetched part keeps its worker's modification time (its bytes are checked), so the
    per-row results the workers sent with it are merged, not recomputed here."""
    from synthreg.validators.fused import PartValidator
    from synthreg.validators.suite import validate_tables

    stage = PartStage(f"s3://{BUCKET}/run-d", s3.endpoint)
    gen = generate(
        spec, tmp_path / "staged", cluster="local:2", stage=stage, observe=PartValidator(spec, "s.yaml")
    )
    with pytest.MonkeyPatch.context() as mp:
        runs = row_suite_runs(mp)
        merged = validate_tables(
            spec, tmp_path / "staged" / "tables", source="s.yaml", from_parts=gen.observed
        )
    assert runs == []  # no per-row suite ran here
    plain = validate_tables(spec, tmp_path / "staged" / "tables", source="s.yaml")
    assert merged.to_dict() | {"seconds": 0} == plain.to_dict() | {"seconds": 0}


def test_a_failed_upload_leaves_no_scratch_folder(
    spec: Any, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part is made in a scratch folder before its upload; an upload that fails (here: no
    such bucket) removes it, and generate raises."""
    import tempfile

    from synthreg.generators import engine

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    opts = engine._Options(
        tmp_path / "out", 1 << 20, 1 << 16, "snappy", PartStage("s3://no-such-bucket/x", s3.endpoint)
    )
    with pytest.raises(OSError):
        engine._write_segment(spec, engine._Segment("users", 0, 0, 1000), opts)
    assert list(scratch.iterdir()) == []


def test_a_stage_that_cannot_be_cleared_does_not_fail_the_run(
    spec: Any, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(self: PartStage) -> None:
        raise OSError("AccessDenied: no DeleteObject here")

    monkeypatch.setattr(PartStage, "clear", refuse)
    stage = PartStage(f"s3://{BUCKET}/run-e", s3.endpoint)
    made = generate(spec, tmp_path / "staged", cluster="local:1", stage=stage)
    assert made.rows["users"] == 150_000
    assert f"staged parts left at s3://{BUCKET}/run-e: AccessDenied" in capsys.readouterr().err


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9000", "https://s3.example.org", "localhost:9000"])
def test_endpoints_with_or_without_a_scheme(endpoint: str) -> None:
    PartStage("s3://b/p", endpoint).filesystem()  # no ArrowInvalid (pyarrow wants host:port apart)


def test_a_pyarrow_without_delayed_open_gets_a_plain_s3_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow before 21 has no ``allow_delayed_open`` (the package allows 16): the stage's
    filesystem is then made without it, with the same endpoint."""
    import pyarrow.fs as pafs

    real = pafs.S3FileSystem
    made: list[dict[str, Any]] = []

    def older(**options: Any) -> Any:
        if "allow_delayed_open" in options:
            raise TypeError("__init__() got an unexpected keyword argument 'allow_delayed_open'")
        made.append(options)
        return real(**options)

    monkeypatch.setattr(pafs, "S3FileSystem", older)
    assert isinstance(PartStage("s3://b/p", "http://127.0.0.1:9000").filesystem(), real)
    assert made == [{"endpoint_override": "127.0.0.1:9000", "scheme": "http"}]


def test_doctor_reports_and_repairs_parts_an_interrupted_create_staged(team: Team, tmp_path: Path) -> None:
    """Parts left under ``<remote>/synthreg-staging/<id>/`` (a create stopped while remote tasks
    still ran), and quality splits under ``<id>-quality/``: reported as orphan-staged-parts,
    deleted by --repair, other objects untouched."""
    import synthreg
    from synthreg.registry.doctor import doctor

    root = team.init(tmp_path / "ws")
    reg = synthreg.open(root)
    prefix = reg.workspace.settings.dvc_url.removeprefix(f"s3://{team.bucket}/")
    client = team.s3.client()
    staged = ("tables/users/part-00000.parquet", "tables/orders/part-00001.parquet", "groups/a/r0/x.arrow")
    for part in staged:
        client.put_object(Bucket=team.bucket, Key=f"{prefix}/synthreg-staging/gone1/{part}", Body=b"x")
    split = f"{prefix}/synthreg-staging/gone1-quality/users/split-part-00000-0a1b2c3d.arrow"
    client.put_object(Bucket=team.bucket, Key=split, Body=b"z")
    client.put_object(Bucket=team.bucket, Key=f"{prefix}/other/keep.txt", Body=b"y")
    found = sorted(
        (p for p in doctor(reg.workspace).problems if p["kind"] == "orphan-staged-parts"),
        key=lambda p: p["detail"],
    )
    assert len(found) == 2 and "synthreg-staging/gone1 holds 3 objects" in found[0]["detail"], found
    assert (
        "synthreg-staging/gone1-quality holds" in found[1]["detail"]
        and "quality splits" in found[1]["detail"]
    )
    assert not any(p["fixed"] for p in found)
    repaired = [p for p in doctor(reg.workspace, repair=True).problems if p["kind"] == "orphan-staged-parts"]
    assert [p["fixed"] for p in repaired] == [True, True]
    left = [k for k in team.s3_keys(f"{prefix}/") if not k.endswith("/")]
    assert f"{prefix}/other/keep.txt" in left and not any("synthreg-staging" in k for k in left)
    assert [p for p in doctor(reg.workspace).problems if p["kind"] == "orphan-staged-parts"] == []


def test_pieces_under_a_stage_are_one_small_put_and_read_by_slot(s3: S3, tmp_path: Path) -> None:
    """The group rules' pieces under a stage: one PUT per object (an ETag without a part count,
    where a multipart upload's ends in ``-N``), the batches regrouped by slot, and each slot read
    back by its byte span: the same batches as the local file's ``index, index + every, ...``."""
    from pathlib import PurePosixPath

    import pyarrow as pa

    from synthreg.generators import group_rules

    stage = PartStage(f"s3://{BUCKET}/run-s/staging", s3.endpoint)
    table = pa.table({"n": list(range(10)), "s": [f"v{i}" for i in range(10)]})
    pieces = [(table, [3, 0, 2]), (table.slice(3), [1, 4, 2])]  # two row groups, three buckets
    local = tmp_path / "split.arrow"
    group_rules._write_batches(local, pieces)
    key = PurePosixPath(stage.root) / "groups" / "split.arrow"
    offsets = group_rules._write_batches(key, pieces, stage, slots=3)
    assert offsets is not None and len(offsets) == 4 and offsets[0] == 0
    etag = s3.client().head_object(Bucket=BUCKET, Key="run-s/staging/groups/split.arrow")["ETag"]
    assert "-" not in etag.strip('"'), etag
    for slot in range(3):
        here = group_rules._read_pieces(local, slot, 3)
        there = group_rules._read_pieces(key, slot, 3, stage, (offsets[slot], offsets[slot + 1]))
        assert [b.num_rows for b in there] == [b.num_rows for b in here]
        assert pa.Table.from_batches(there, table.schema).equals(pa.Table.from_batches(here, table.schema))
    stage.clear()


def test_a_staged_part_changed_before_the_group_rules_read_it_is_refused(
    capped_spec: Any, s3: S3, tmp_path: Path
) -> None:
    """The group rules' tasks read a staged part only if it is still the bytes its worker wrote
    (its sha256): one changed in the store before they run is refused, and nothing is rewritten."""
    from synthreg.generators import group_rules

    data = yaml.safe_load(capped_spec.frozen_yaml())
    data["tables"]["shifts"].pop("constraints")
    plain = parse_spec(data, "plain.yaml")
    made = generate(plain, tmp_path / "made", workers=1)  # the parts, as the workers write them
    stage = PartStage(f"s3://{BUCKET}/run-t/staging", s3.endpoint)
    files = list(made.tables["shifts"].files)
    for path in files:
        stage.upload(path, "shifts")
    checksums = [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]

    def enforce() -> Any:
        return group_rules.enforce(
            capped_spec, "shifts", files, tmp_path / ".groups", stage=stage, checksums=checksums
        )

    rewritten = enforce()[1]
    assert rewritten is not None and rewritten.staged == stage.within("rewritten")  # unchanged: it runs
    client, key = s3.client(), "run-t/staging/tables/shifts/part-00000.parquet"
    other = generate(parse_spec({**data, "seed": 3}, "other.yaml"), tmp_path / "other", workers=1)
    client.put_object(Bucket=BUCKET, Key=key, Body=other.tables["shifts"].files[0].read_bytes())
    with pytest.raises(StagingError, match="not what its worker wrote"):  # a valid part, not this one
        enforce()
    client.put_object(Bucket=BUCKET, Key=key, Body=b"no parquet")
    with pytest.raises(StagingError, match="could not be read"):
        enforce()
    stage.clear()


def test_a_group_rule_that_refuses_over_staged_parts_leaves_nothing_staged(
    capped_spec: Any, s3: S3, tmp_path: Path
) -> None:
    """A rule with ``action: error`` that the data breaks, run by the tasks over the staged parts:
    ``generate`` raises the violation, and the stage (parts and pieces) is deleted."""
    from synthreg.generators.constraints import ConstraintViolation

    data = yaml.safe_load(capped_spec.frozen_yaml())
    data["tables"]["shifts"]["constraints"][0]["action"] = "error"
    refused = parse_spec(data, "refused.yaml")
    stage = PartStage(f"s3://{BUCKET}/run-v/staging", s3.endpoint)
    with pytest.raises(ConstraintViolation, match="exceed"):
        generate(refused, tmp_path / "out", cluster="local:2", stage=stage)
    assert [k for k in _keys(s3, "run-v/") if not k.endswith("/")] == []


def test_a_create_that_fails_after_generating_leaves_no_quality_splits_staged(
    team: Team, tmp_path: Path, small_spec_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generation tasks' quality splits (``<staging id>-quality/``, beside the staged parts)
    are deleted also when the create fails between the engine and its quality step, and the
    create's own error is the one raised."""
    from distributed import LocalCluster

    import synthreg
    from synthreg.registry import create

    root = team.init(tmp_path / "ws")
    real = create.file_facts
    seen: list[list[str]] = []

    def failing(*args: Any) -> Any:
        seen.append([k for k in team.s3_keys() if "-quality/" in k])  # the splits are there by now
        real(*args)
        raise RuntimeError("disk gone")

    monkeypatch.setattr(create, "file_facts", failing)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        pytest.raises(RuntimeError, match="disk gone"),
    ):
        synthreg.open(root).create(
            "failed", spec=yaml.safe_load(small_spec_text), cluster=cluster.scheduler_address
        )
    assert seen and seen[0]
    left = [k for k in team.s3_keys() if "synthreg-staging" in k and not k.endswith("/")]
    assert not [k for k in left if k in seen[0]], left
