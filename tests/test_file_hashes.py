"""Data files are hashed by the engine's workers as they write them (md5 for DVC, sha256 for the
manifest), and those hashes are used only while a file is still the bytes that were hashed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthreg.generators.engine import FileHash, generate
from synthreg.generators.spec_io import apply_overrides
from synthreg.integrations import dvc
from synthreg.registry.facts import file_facts, known_md5


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_hash_the_bytes_they_wrote(small_spec_model: Any, tmp_path: Path, workers: int) -> None:
    spec = apply_overrides(small_spec_model, rows={"users": 50_000, "orders": 150_000})  # several parts
    result = generate(spec, tmp_path, workers=workers)
    files = [(p, h) for t in result.tables.values() for p, h in zip(t.files, t.hashes, strict=True)]
    assert len(files) > 2
    for path, hashed in files:
        assert hashed.md5 == _md5(path)
        assert hashed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert hashed.matches(path)


def _touched(path: Path) -> None:
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))


def test_file_facts_take_a_known_hash_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "tables" / "t" / "part-00000.parquet"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"some bytes")
    info = path.stat()
    claimed = FileHash("0" * 32, "f" * 64, info.st_size, info.st_mtime_ns)  # not these bytes' hashes
    facts = file_facts(tmp_path, {path: 3}, {path: claimed})
    assert facts == [{"path": "tables/t/part-00000.parquet", "sha256": "f" * 64, "rows": 3, "bytes": 10}]
    assert known_md5(tmp_path, {path: claimed}) == {
        "tables/t/part-00000.parquet": ("0" * 32, 10, info.st_mtime_ns)
    }
    _touched(path)  # the file may have changed since: hashed again, and no md5 goes to DVC
    assert (
        file_facts(tmp_path, {path: 3}, {path: claimed})[0]["sha256"]
        == hashlib.sha256(b"some bytes").hexdigest()
    )
    assert known_md5(tmp_path, {path: claimed}) == {}


@pytest.fixture
def dvc_root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    dvc.init_workspace(root, "local", str(tmp_path / "remote"))
    for i, text in enumerate((b"first part", b"second part")):
        path = root / "data" / "tables" / f"part-{i:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
    return root


def _recorded(root: Path) -> dict[str, str]:
    """The md5 of each file in the stage's ``.dir`` listing, as DVC recorded it."""
    dir_md5 = dvc.lock_md5(root, "v", "data/dvc.yaml").removesuffix(".dir")
    listing = root / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / (dir_md5[2:] + ".dir")
    return {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}


def test_dvc_takes_the_known_md5_instead_of_reading_the_file(dvc_root: Path) -> None:
    """A known md5 of an unchanged file goes straight into DVC's hash cache: DVC records it
    without reading the file (shown here with a deliberately wrong md5)."""
    first, second = sorted((dvc_root / "data" / "tables").iterdir())
    info = first.stat()
    known = {first: ("a" * 32, info.st_size, info.st_mtime_ns)}
    dvc.track_stage(dvc_root, "data/dvc.yaml", "v", "true", [], ["data/tables"], known)
    assert _recorded(dvc_root) == {first.name: "a" * 32, second.name: _md5(second)}


def test_dvc_hashes_a_file_changed_since_its_md5_was_taken(dvc_root: Path) -> None:
    first, second = sorted((dvc_root / "data" / "tables").iterdir())
    info = first.stat()
    known = {first: ("a" * 32, info.st_size, info.st_mtime_ns)}
    _touched(first)
    dvc.track_stage(dvc_root, "data/dvc.yaml", "v", "true", [], ["data/tables"], known)
    assert _recorded(dvc_root) == {first.name: _md5(first), second.name: _md5(second)}


def test_a_table_rewritten_by_its_constraints_carries_its_rewriters_hashes(
    capped_spec: Any, tmp_path: Path
) -> None:
    """Group constraints rewrite a table's parts after the engine's workers hashed them: the tasks
    that rewrote them hash what they wrote, and the files (renamed into place) still match."""
    spec = capped_spec
    result = generate(spec, tmp_path, workers=1)
    assert result.params.get("constraints", {}).get("shifts")  # the cap changed rows
    shifts = result.tables["shifts"]
    assert [(h.md5, h.sha256) for h in shifts.hashes] == [(_md5(p), _sha256(p)) for p in shifts.files]
    assert all(h.matches(p) for h, p in zip(shifts.hashes, shifts.files, strict=True))
    assert [h.md5 for h in result.tables["users"].hashes] == [_md5(p) for p in result.tables["users"].files]


def test_a_version_stage_lives_in_its_own_file_and_both_layouts_check_out(dvc_root: Path) -> None:
    """New versions' stages are in their own ``dvc.yaml`` (wdir at the root); versions made before
    have theirs in the root ``dvc.yaml``. ``dvc.target`` names either, and DVC restores each."""
    tables = dvc_root / "data" / "tables"
    old = dvc_root / "old" / "tables"
    old.parent.mkdir()
    shutil.copytree(tables, old)
    with dvc._repo(dvc_root) as repo:  # the layout before: `dvc stage add` into the root dvc.yaml
        repo.stage.add(  # type: ignore[attr-defined]
            name="old-v1", cmd="true", deps=[], outs=["old/tables"], force=True
        )
        repo.commit("old-v1", force=True)  # type: ignore[attr-defined]
    dvc.track_stage(dvc_root, "data/dvc.yaml", "new-v1", "true", [], ["data/tables"])
    pipeline = yaml.safe_load((dvc_root / "data" / "dvc.yaml").read_text())
    assert pipeline == {
        "stages": {"new-v1": {"cmd": "true", "wdir": "..", "deps": [], "outs": ["data/tables"]}}
    }
    assert (dvc_root / "data" / ".gitignore").read_text() == "/tables\n"
    assert list(yaml.safe_load((dvc_root / "dvc.yaml").read_text())["stages"]) == ["old-v1"]
    assert dvc.lock_md5(dvc_root, "new-v1", "data/dvc.yaml") == dvc.lock_md5(dvc_root, "old-v1")
    for info, folder in (({"stage": "old-v1"}, old), ({"stage": "new-v1", "file": "data/dvc.yaml"}, tables)):
        shutil.rmtree(folder)
        dvc.checkout(dvc_root, [dvc.target(info)])
        assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert dvc.status(dvc_root) == {}


def test_a_stage_of_a_name_or_output_the_root_dvc_yaml_has_is_refused(dvc_root: Path) -> None:
    """DVC's graph check does not run for a stage committed by its file: a root stage (say, one an
    interrupted create of an earlier release left) with the same name or output is refused, and
    no stage file is written."""
    from synthreg.errors import IntegrationError

    cases = [  # (the root stage's outputs, the new stage's name): each one clashes
        (["data/tables"], "small-v1"),  # same name
        (["data/tables"], "other-v1"),  # same output
        (["./data/tables/"], "other-v1"),  # the same path written otherwise
        ([{"data/tables": {"cache": False}}], "other-v1"),  # an output with options
        (["data"], "other-v1"),  # an output that contains ours
        (["data/tables/part-00000.parquet"], "other-v1"),  # one inside ours
    ]
    for outs, name in cases:
        (dvc_root / "dvc.yaml").write_text(
            yaml.safe_dump({"stages": {"small-v1": {"cmd": "true", "outs": outs}}})
        )
        with pytest.raises(IntegrationError, match=r"already has stage small-v1.*'dvc remove small-v1'"):
            dvc.track_stage(dvc_root, "data/dvc.yaml", name, "true", [], ["data/tables"])
        assert not (dvc_root / "data" / "dvc.yaml").exists()
    (dvc_root / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"small-v1": {"cmd": "true", "outs": ["datab"]}}})
    )
    dvc.track_stage(dvc_root, "data/dvc.yaml", "other-v1", "true", [], ["data/tables"])  # no clash: "datab"
    (dvc_root / "dvc.yaml").unlink()
    md5 = dvc.track_stage(dvc_root, "data/dvc.yaml", "small-v1", "true", [], ["data/tables"])
    assert md5.endswith(".dir")


def test_only_a_plain_s3_remote_gets_the_staged_parts_copied_into_it(dvc_root: Path) -> None:
    """The copy of staged parts into the remote is made outside DVC: it is used only for an S3
    remote with no option such a copy would miss (encryption, ACLs, another layout)."""
    assert dvc.plain_s3_remote(dvc_root) is None  # a local remote
    config = dvc_root / ".dvc" / "config"
    plain = "[core]\n    remote = s3\n['remote \"s3\"']\n    url = s3://b/p\n    endpointurl = http://127.0.0.1:9\n"
    config.write_text(plain)
    assert dvc.plain_s3_remote(dvc_root) == ("s3://b/p", "http://127.0.0.1:9")
    for extra in ("sse = aws:kms", "acl = public-read", "version_aware = true", "worktree = true"):
        config.write_text(plain + f"    {extra}\n")
        assert dvc.plain_s3_remote(dvc_root) is None, extra
    config.write_text(plain)
    (dvc_root / ".dvc" / "config.local").write_text("['remote \"s3\"']\n    sse_customer_key = k\n")
    assert dvc.plain_s3_remote(dvc_root) is None  # DVC reads config.local too
