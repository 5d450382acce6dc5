"""`registry init` + `registry create` end to end, on real git, DVC, MLflow, GX and SQLite."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlmodel import select
from typer.testing import CliRunner

import synthreg
from synthreg.cli.app import app
from synthreg.registry.store import AuditEvent, Dataset, GenerationRun, Version, read_session

runner = CliRunner()


def cli(root: Path, *args: str) -> Any:
    """Run the CLI in ``root``; return the click Result."""
    return runner.invoke(app, ["-C", str(root), *args])


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a failed command must leave unchanged."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_dir()
            or rel.startswith(".git/")
            or rel.startswith(".registry/registry.db")
            or rel == ".registry/write.lock"
            or rel.startswith(".dvc/tmp")
        ):
            continue
        files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    reg = synthreg.open(root)
    with read_session(reg.workspace.engine) as s:
        counts = {
            m.__name__: len(s.exec(select(m)).all()) for m in (Dataset, Version, GenerationRun, AuditEvent)
        }
    return {"files": files, "head": head, "db": counts}


@pytest.fixture(scope="module")
def created(
    tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str, small_spec_text: str
) -> dict[str, Any]:
    """A workspace with two versions of 'small' (seed 3, then seed 4 with more users)."""
    base = tmp_path_factory.mktemp("created")
    spec = base / "small.yaml"
    spec.write_text(small_spec_text)
    root = base / "ws"
    assert cli(base, "init", str(root)).exit_code == 0
    first = cli(root, "create", "small", "--spec", str(spec), "--json", "--tag", "team=ml", "-m", "one")
    assert first.exit_code == 0, first.output
    second = cli(root, "create", "small", "--spec", str(spec), "--seed", "4", "--rows", "users=400", "--json")
    assert second.exit_code == 0, second.output
    return {"root": root, "spec": spec, "v1": json.loads(first.stdout), "v2": json.loads(second.stdout)}


def test_create_json_has_the_documented_keys(created: dict[str, Any]) -> None:
    v1, v2 = created["v1"], created["v2"]
    for key in (
        "dataset",
        "version",
        "status",
        "content_digest",
        "rows",
        "path",
        "mlflow_run_id",
        "validation",
    ):
        assert key in v1
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v1["status"] == v2["status"] == "approved"
    assert v1["rows"] == {"users": 300, "orders": 900}
    assert v2["rows"] == {"users": 400, "orders": 900}
    assert v1["validation"]["success"] and v1["validation"]["failed"] == 0
    assert v1["validation"]["evaluated"] > 10
    assert v1["content_digest"] != v2["content_digest"]
    assert set(v1["timings"]) >= {"generate", "validate", "dvc", "mlflow", "git", "db"}


def test_list_and_show_json(created: dict[str, Any]) -> None:
    root = created["root"]
    listing = json.loads(cli(root, "list", "--json").stdout)
    assert [d["dataset"] for d in listing] == ["small"]
    assert listing[0]["versions"] == 2 and listing[0]["current"] == 2
    assert json.loads(cli(root, "list", "--tag", "team=ml", "--json").stdout)[0]["dataset"] == "small"
    assert json.loads(cli(root, "list", "--tag", "team=web", "--json").stdout) == []
    shown = json.loads(cli(root, "show", "small", "--json").stdout)
    assert shown["version"] == 2 and shown["aliases"] == ["current"] and shown["parent"] == 1
    first = json.loads(cli(root, "show", "small@v1", "--json").stdout)
    assert first["content_digest"] == created["v1"]["content_digest"]
    assert first["tags"] == {"team": "ml"} and first["message"] == "one"
    assert first["generation"]["model"] == f"synthreg-numpy/{synthreg.__version__}"
    assert first["generation"]["params"]["rows"] == {"users": 300, "orders": 900}
    assert [f["path"] for f in first["files"]] == [
        "tables/orders/part-00000.parquet",
        "tables/users/part-00000.parquet",
    ]
    assert 0.9 <= first["quality"]["quality_score"] <= 1.0
    page = (root / "data/small/v1/validation.html").read_text()
    assert "expect_column_values_to_not_be_null" in page
    assert "http://" not in page and "https://" not in page  # self-contained: no CDN, no remote image
    quality = json.loads((root / "data/small/v1/quality.json").read_text())
    assert quality["formula"] and set(quality["components"]) >= {"validation", "duplicate_rows"}
    human = cli(root, "show", "small@1")
    assert human.exit_code == 0 and "small@v1" in human.stdout and "approved" in human.stdout


def test_mlflow_run_found_by_dataset_digest(created: dict[str, Any], mlflow_uri: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri)
    v1 = created["v1"]
    runs = mlflow.search_runs(
        experiment_names=["synthreg/small"],
        filter_string=f"dataset.digest = '{v1['content_digest'][:32]}'",
        output_format="list",
    )
    # other tests of the session may have made the same content: each of those runs matches too
    assert v1["mlflow_run_id"] in [r.info.run_id for r in runs]
    assert all(r.data.tags["synthreg.content_digest"] == v1["content_digest"] for r in runs)
    run = next(r for r in runs if r.info.run_id == v1["mlflow_run_id"])
    assert run.data.params["seed"] == "3"
    assert run.data.metrics["rows"] == 1200
    assert run.data.metrics["validation_success_ratio"] == 1.0
    assert run.data.tags["synthreg.content_digest"] == v1["content_digest"]
    artifacts = {a.path for a in mlflow.MlflowClient(mlflow_uri).list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "datacard.md", "datacard.json", "validation.json"} <= artifacts


def test_workspace_is_clean_for_git_and_dvc(created: dict[str, Any]) -> None:
    from synthreg.integrations import dvc

    root = created["root"]
    porcelain = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    assert porcelain.stdout == ""
    assert dvc.status(root) == {}
    log = subprocess.run(["git", "log", "--format=%s"], cwd=root, capture_output=True, text=True).stdout
    assert log.splitlines() == ["create small@v2 (approved)", "create small@v1 (approved)", "registry init"]
    remote_files = list((root / ".registry" / "dvc-remote").rglob("*"))
    assert sum(p.is_file() for p in remote_files) >= 4  # 2 versions x (2 parts + .dir listing)


def test_dvc_records_every_files_true_md5(created: dict[str, Any]) -> None:
    """The md5s the engine's workers took (and handed to DVC) are the files' own."""
    import yaml

    root = created["root"]
    stages = {}
    for number in (1, 2):  # each version's stage in its own folder, none in the root files
        stages |= yaml.safe_load((root / f"data/small/v{number}/dvc.lock").read_text())["stages"]
    assert sorted(stages) == ["small-v1", "small-v2"]
    assert not (root / "dvc.yaml").exists() and not (root / "dvc.lock").exists()
    for stage in stages.values():
        out = stage["outs"][0]
        digest = out["md5"].removesuffix(".dir")
        listing = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / (digest[2:] + ".dir")
        entries = json.loads(listing.read_text())
        assert len(entries) >= 2
        for entry in entries:
            data = (root / out["path"] / entry["relpath"]).read_bytes()
            assert entry["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_parquet_readable_by_pyarrow_pandas_and_api(created: dict[str, Any]) -> None:
    root = created["root"]
    part = root / "data/small/v1/tables/users/part-00000.parquet"
    df = pq.read_table(part).to_pandas()
    assert len(df) == 300 and list(df.columns)[:2] == ["user_id", "first_name"]
    import pandas as pd

    assert len(pd.read_parquet(part)) == 300
    table = synthreg.open(root).load("small@v1", "users")
    assert table.num_rows == 300 and table.column("user_id").to_pylist()[:3] == [1, 2, 3]
    assert synthreg.open(root).load("small", "users").num_rows == 400  # current = v2


def test_manifest_card_and_db_rows_agree(created: dict[str, Any]) -> None:
    root = created["root"]
    vdir = root / "data/small/v1"
    manifest = json.loads((vdir / "manifest.json").read_text())
    card = json.loads((vdir / "datacard.json").read_text())
    assert manifest["content_digest"] == card["identity"]["content_digest"] == created["v1"]["content_digest"]
    for f in manifest["files"]:
        assert hashlib.sha256((vdir / f["path"]).read_bytes()).hexdigest() == f["sha256"]
    md = (vdir / "datacard.md").read_text()
    assert md.startswith("---\n") and "annotations_creators:\n- machine-generated" in md
    assert "path: tables/users/*.parquet" in md
    assert (vdir / "README.md").read_text() == md  # datasets reads configs from README.md
    assert "nothing looks like real personal data" in md
    assert json.loads((vdir / "croissant.json").read_text())["rai:dataCollectionType"] == "Synthetic"
    plots = sorted(p.name for p in (vdir / "plots").glob("*.svg"))
    assert plots and all(f"![plots/{p}](plots/{p})" in md for p in plots)  # distribution plots on the card
    assert "## Uses and consumers" in md and "Generated from the spec." in md
    reg = synthreg.open(root)
    with read_session(reg.workspace.engine) as s:
        run = s.exec(select(GenerationRun).order_by(GenerationRun.id)).first()
        assert run is not None
        assert run.prompt == (vdir / "spec.yaml").read_text()
        assert run.mlflow_run_id == created["v1"]["mlflow_run_id"]
        assert run.dvc_md5 == manifest["dvc"]["md5"] and run.dvc_md5.endswith(".dir")
        assert run.git_commit == created["v1"]["git_commit"]
        assert run.peak_rss_mb > 0 and run.libraries and "numpy" in run.libraries
        actions = [e.action for e in s.exec(select(AuditEvent).order_by(AuditEvent.seq))]
        assert actions == ["init", "create", "create"]
    commit_msg = subprocess.run(
        ["git", "log", "-1", "--format=%B"], cwd=root, capture_output=True, text=True
    ).stdout
    assert "audit-head: " in commit_msg and "audit-seq: 3" in commit_msg
    assert reg.verify_audit().ok


def test_same_spec_and_seed_give_the_same_digest(created: dict[str, Any], tmp_path: Path) -> None:
    reg = synthreg.init(tmp_path / "other")
    again = reg.create("copy", spec=created["spec"], workers=1)
    assert again.content_digest == created["v1"]["content_digest"]
    assert again.version == 1
    result = cli(
        tmp_path / "other", "create", "copy", "--spec", str(created["spec"]), "--workers", "2", "--json"
    )
    assert json.loads(result.stdout)["content_digest"] == created["v1"]["content_digest"]


def test_init_twice_is_a_no_op(created: dict[str, Any]) -> None:
    root = created["root"]
    before = snapshot(root)
    result = cli(root, "init", str(root))
    assert result.exit_code == 0 and "already a registry workspace" in result.stdout
    assert snapshot(root) == before


def test_init_with_dash_c_makes_that_folder_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``registry -C DIR init`` initialises DIR, as -C chooses the workspace of every other command;
    it once initialised the current directory instead (here a separate folder, so a regression
    cannot touch the checkout the tests run from)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["-C", str(tmp_path / "ws"), "init", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["root"] == str((tmp_path / "ws").resolve())
    assert (tmp_path / "ws" / "registry.toml").is_file() and list(elsewhere.iterdir()) == []
    explicit = runner.invoke(app, ["-C", str(tmp_path / "ws"), "init", "other"])  # a PATH: from here
    assert explicit.exit_code == 0 and (elsewhere / "other" / "registry.toml").is_file()


def test_init_inside_another_repository_nests(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    inner = tmp_path / "inner"
    result = runner.invoke(app, ["init", str(inner), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["created"] and data["git_initialized"]
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=inner, capture_output=True, text=True)
    assert Path(top.stdout.strip()) == inner.resolve()
    outer = subprocess.run(["git", "log", "--oneline"], cwd=tmp_path, capture_output=True, text=True)
    assert outer.stdout == ""  # nothing committed into the enclosing repository
    config = (inner / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "dvc-remote" in config


BAD_SPEC = "tables:\n  t:\n    rows: 3\n    columns:\n      x: {type: category, values: {a: 0.5, b: 0.6}}\n"


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["create", "small", "--spec", "missing.yaml"], 4, "does not exist"),
        (["create", "small", "--spec", "{bad_yaml}"], 2, "invalid YAML"),
        (
            ["create", "small", "--spec", "{bad_spec}"],
            2,
            "tables.t.columns.x: category probabilities sum to 1.1",
        ),
        (["create", "../x", "--spec", "{spec}"], 2, "invalid dataset name '../x'"),
        (["create", "A B", "--spec", "{spec}"], 2, "invalid dataset name 'A B'"),
        (["create", "small", "--spec", "{spec}", "--rows", "users=-5"], 2, "rows must be >= 0"),
        (["create", "small", "--spec", "{spec}", "--rows", "users=many"], 2, "is not an integer"),
        (["create", "small", "--spec", "{spec}", "--rows", "buyers=5"], 2, "does not have"),
        (["create", "small"], 2, "needs --spec"),
        (["create", "small", "--spec", "{spec}", "--workers", "0"], 2, "--workers 0: use a positive number"),
        (["create", "small", "--spec", "{spec}", "--scale", "0"], 2, "--scale must be a number > 0"),
        (["show", "small@v9"], 4, "versions: v1 (approved), v2 (approved)"),
        (["show", "nosuch"], 4, "no dataset named 'nosuch'"),
        (["show", "small@@"], 2, "invalid ref"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    created: dict[str, Any], tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    root = created["root"]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("tables: [\n")
    bad_spec = tmp_path / "badspec.yaml"
    bad_spec.write_text(BAD_SPEC)
    args = [a.format(bad_yaml=bad_yaml, bad_spec=bad_spec, spec=created["spec"]) for a in args]
    before = snapshot(root)
    result = cli(root, *args)
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stdout == ""
    assert snapshot(root) == before
    assert not any((root / ".registry" / "staging").glob("*"))


def test_outside_a_workspace(tmp_path: Path, small_spec: Path) -> None:
    result = cli(tmp_path, "create", "x", "--spec", str(small_spec))
    assert result.exit_code == 2
    assert "not inside a registry workspace: run 'registry init'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.yaml"]


def test_workers_option_reaches_the_engine(created: dict[str, Any], tmp_path: Path) -> None:
    root = synthreg.init(tmp_path / "w").root
    result = cli(root, "create", "one", "--spec", str(created["spec"]), "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((root / "data/one/v1/manifest.json").read_text())
    assert manifest["params"]["workers"] == 1
    assert json.loads(result.stdout)["content_digest"] == created["v1"]["content_digest"]


def test_the_registry_command_leaves_its_importing_helpers_a_core(
    created: dict[str, Any], tmp_path: Path
) -> None:
    """``registry create`` as a fresh process (not the in-process runner): its validation helper
    is forked first thing and imports Great Expectations, so a spec this small is generated by one
    worker fewer than the cores (sidecar.SHARED_CORE_MAX_ROWS); the data is the same."""
    root = synthreg.init(tmp_path / "w").root
    env = {k: v for k, v in os.environ.items() if k != "SYNTHREG_WORKERS"} | {"SYNTHREG_WARM": "0"}
    command = [
        sys.executable,
        "-m",
        "synthreg",
        "-C",
        str(root),
        "create",
        "one",
        "--spec",
        str(created["spec"]),
    ]
    proc = subprocess.run(
        [*command, "--json"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((root / "data/one/v1/manifest.json").read_text())
    assert manifest["params"]["workers"] == max(1, (os.cpu_count() or 1) - 1)
    assert json.loads(proc.stdout)["content_digest"] == created["v1"]["content_digest"]


def test_story_without_a_configured_model_says_what_to_set(created: dict[str, Any]) -> None:
    root = created["root"]
    before = snapshot(root)
    result = cli(root, "create", "fromstory", "--story", "a fitness app with 50k users and workouts")
    assert result.exit_code == 2
    assert "no LLM model is configured: set [llm] model" in result.stderr
    draft = cli(root, "spec", "draft", "--story", "a shop with 10k customers")
    assert draft.exit_code == 2 and "[llm] model" in draft.stderr
    assert cli(root, "create", "x", "--spec", str(created["spec"]), "--story", "y").exit_code == 2
    assert snapshot(root) == before


def test_dvc_repro_at_the_root_rebuilds_a_version_from_its_own_stage_file(
    created: dict[str, Any], tmp_path: Path
) -> None:
    """A version's stage sits in ``data/NAME/vN/dvc.yaml`` with its ``wdir`` at the root: ``dvc
    repro`` run at the workspace root finds it and runs ``python -m synthreg materialize`` from
    there, and the rebuilt tables match the lock (on a copy of the workspace)."""
    import os
    import shutil
    import sys

    root = Path(shutil.copytree(created["root"], tmp_path / "ws", symlinks=True))
    tables = root / "data/small/v1/tables"
    before = {p.relative_to(tables): p.read_bytes() for p in tables.rglob("*.parquet")}
    shutil.rmtree(tables)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--force", "data/small/v1/dvc.yaml:small-v1"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "python -m synthreg materialize data/small/v1" in out.stdout
    assert {p.relative_to(tables): p.read_bytes() for p in tables.rglob("*.parquet")} == before
    dvc_status = [sys.executable, "-m", "dvc", "status"]
    status = subprocess.run(dvc_status, cwd=root, env=env, capture_output=True, text=True, check=False)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
