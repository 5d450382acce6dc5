"""``registry doctor [--repair | --rebuild]``: DB, files, DVC and git must agree.

Checks: orphan staging directories, version directories the DB does not know,
DB versions without files, data files missing locally, versions missing from the
DVC remote, and the audit chain. ``--repair`` fixes what is safe (drops staging
leftovers and half-written directories, restores files from the cache or remote,
pushes what the remote lacks). ``--rebuild`` recreates missing DB rows from the
version manifests (a lost DB comes back from the workspace alone).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from synthreg import env
from synthreg.errors import SynthregError
from synthreg.integrations import dvc
from synthreg.registry.audit import append_event, first_broken_seq
from synthreg.registry.checkout import ensure_local, missing_files, read_manifest
from synthreg.registry.records import move_current, set_alias
from synthreg.registry.store import Dataset, GenerationRun, Version, read_session, write_session
from synthreg.registry.workspace import Workspace

__all__ = ["DoctorResult", "doctor"]


@dataclass
class DoctorResult:
    """Problems found, and which were fixed."""

    problems: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, detail: str, fixed: bool = False) -> None:
        """Record a problem."""
        self.problems.append({"kind": kind, "detail": detail, "fixed": fixed})

    @property
    def healthy(self) -> bool:
        """No problem left unfixed."""
        return all(p["fixed"] for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"healthy": self.healthy, "problems": self.problems}


def doctor(ws: Workspace, *, repair: bool = False, rebuild: bool = False) -> DoctorResult:
    """Check the workspace; optionally repair or rebuild the DB."""
    result = DoctorResult()
    with ws.lock():
        _staging(ws, result, repair)
        known = _db_versions(ws)
        on_disk = _disk_versions(ws, result, repair)
        if rebuild:
            _rebuild(ws, on_disk, known, result)
            known = _db_versions(ws)
        for path in sorted(set(on_disk) - set(known)):
            result.add("not-in-db", f"{path} has a manifest but no DB row: run 'registry doctor --rebuild'")
        _files(ws, known, result, repair)
        _remote(ws, known, result, repair)
        _chain(ws, result)
        if repair or rebuild:
            _event(ws, "doctor", {"repair": repair, "rebuild": rebuild, "problems": len(result.problems)})
    return result


def _staging(ws: Workspace, result: DoctorResult, repair: bool) -> None:
    staging = ws.settings.state_dir / "staging"
    for leftover in sorted(staging.glob("*")) if staging.is_dir() else []:
        if repair:
            shutil.rmtree(leftover, ignore_errors=True)
        result.add("orphan-staging", f"{leftover} is a leftover of an interrupted write", fixed=repair)


def _db_versions(ws: Workspace) -> dict[str, Version]:
    with read_session(ws.engine) as session:
        return {v.path: v for v in session.exec(select(Version))}


def _disk_versions(ws: Workspace, result: DoctorResult, repair: bool) -> dict[str, dict[str, Any]]:
    found = {}
    for vdir in sorted((ws.root / "data").glob("*/v*")):
        rel = vdir.relative_to(ws.root).as_posix()
        if (vdir / "manifest.json").is_file():
            found[rel] = read_manifest(vdir)
        else:
            if repair:
                shutil.rmtree(vdir, ignore_errors=True)
            result.add("half-written", f"{rel} has no manifest.json (an interrupted write)", fixed=repair)
    return found


def _files(ws: Workspace, known: dict[str, Version], result: DoctorResult, repair: bool) -> None:
    for path, version in sorted(known.items()):
        vdir = ws.root / path
        if not (vdir / "manifest.json").is_file():
            result.add("no-files", f"{path} is in the DB but its directory is gone: restore it from git")
            continue
        missing = missing_files(vdir, read_manifest(vdir))
        if not missing:
            continue
        fixed = False
        if repair:
            try:
                ensure_local(ws, version)
                fixed = True
            except SynthregError:
                fixed = False
        result.add("missing-data", f"{path}: {len(missing)} data files missing locally", fixed=fixed)


def _remote(ws: Workspace, known: dict[str, Version], result: DoctorResult, repair: bool) -> None:
    stages = [
        read_manifest(ws.root / p)["dvc"]["stage"] for p in known if (ws.root / p / "manifest.json").is_file()
    ]
    if not stages:
        return
    try:
        missing = dvc.cloud_status(ws.root, stages)
    except Exception as exc:  # no remote configured, unreachable remote
        result.add("remote", f"could not compare with the DVC remote: {exc}")
        return
    if missing:
        fixed = False
        if repair:
            dvc.push(ws.root, stages)
            fixed = not dvc.cloud_status(ws.root, stages)
        result.add("not-on-remote", f"{len(missing)} outputs are not on the DVC remote", fixed=fixed)


def _chain(ws: Workspace, result: DoctorResult) -> None:
    with read_session(ws.engine) as session:
        broken = first_broken_seq(session)
    if broken is not None:
        result.add("audit-chain", f"audit event seq {broken} does not check out: run 'registry audit verify'")


def _event(ws: Workspace, action: str, details: dict[str, Any]) -> None:
    with write_session(ws.engine) as session:
        append_event(session, actor=env.actor(), action=action, details=details)


def _rebuild(
    ws: Workspace, on_disk: dict[str, dict[str, Any]], known: dict[str, Version], result: DoctorResult
) -> None:
    missing = {p: m for p, m in on_disk.items() if p not in known}
    if not missing:
        return
    with write_session(ws.engine) as session:
        for path, manifest in sorted(missing.items(), key=lambda kv: (kv[1]["dataset"], kv[1]["version"])):
            dataset = _dataset(session, manifest)
            version = _version_row(dataset, path, manifest, ws.root / path)
            session.add(version)
            session.flush()
            if manifest.get("generation"):
                _run_row(session, version, manifest, ws.root / path)
            result.add("rebuilt", f"{path}: DB rows rebuilt from manifest.json", fixed=True)
        for dataset in session.exec(select(Dataset)):
            assert dataset.id is not None
            move_current(session, dataset.id)
        _aliases_from_cards(ws, session, missing)


def _card(vdir: Path) -> dict[str, Any]:
    """The version's DataCard: rewritten (and committed) on every review and alias change,
    so it holds the latest status and aliases even when the DB is gone."""
    path = vdir / "datacard.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _aliases_from_cards(ws: Workspace, session: Session, rebuilt: dict[str, dict[str, Any]]) -> None:
    for path, manifest in rebuilt.items():
        dataset = session.exec(select(Dataset).where(Dataset.name == manifest["dataset"])).first()
        assert dataset is not None and dataset.id is not None
        for alias in _card(ws.root / path).get("uses", {}).get("aliases", []):
            if alias != "current":  # current follows the newest approved version
                set_alias(session, dataset.id, alias, manifest["version"])


def _dataset(session: Session, manifest: dict[str, Any]) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == manifest["dataset"])).first()
    if dataset is None:
        dataset = Dataset(
            name=manifest["dataset"],
            description=manifest.get("description", ""),
            created_by=manifest.get("created_by", ""),
        )
        session.add(dataset)
        session.flush()
    return dataset


def _when(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _version_row(dataset: Dataset, path: str, m: dict[str, Any], vdir: Path) -> Version:
    validation = (
        json.loads((vdir / "validation.json").read_text()) if (vdir / "validation.json").exists() else {}
    )
    assert dataset.id is not None
    return Version(
        dataset_id=dataset.id,
        number=m["version"],
        status=_card(vdir).get("identity", {}).get("status", m["status"]),
        content_digest=m["content_digest"],
        spec_sha256=m["spec_sha256"],
        seed=m["seed"],
        path=path,
        rows={t: v["rows"] for t, v in m["tables"].items()},
        total_rows=sum(v["rows"] for v in m["tables"].values()),
        parent=m.get("parent"),
        restored_from=m.get("restored_from"),
        derived_from=m.get("derived_from"),
        created_at=_when(m["created_at"]),
        created_by=m.get("created_by", ""),
        message=m.get("message", ""),
        tags=m.get("tags") or {},
        dvc_md5=m["dvc"]["md5"],
        mlflow_run_id=m["mlflow"]["run_id"],
        validation=validation,
    )


def _run_row(session: Session, version: Version, m: dict[str, Any], vdir: Path) -> None:
    g = m["generation"]
    assert version.id is not None
    session.add(
        GenerationRun(
            version_id=version.id,
            prompt=(vdir / "spec.yaml").read_text(),
            model=m["model"],
            seed=m["seed"],
            params=m.get("params"),
            spec_sha256=m["spec_sha256"],
            content_digest=m["content_digest"],
            files=m["files"],
            started_at=_when(g["started_at"]),
            ended_at=_when(m["created_at"]),
            seconds=g["seconds"],
            rows_per_s=g["rows_per_s"],
            peak_rss_mb=g.get("peak_rss_mb", 0.0),
            user=g.get("user", ""),
            host=g.get("host", ""),
            synthreg_version=g.get("synthreg_version", ""),
            libraries=g.get("libraries"),
            timings=g.get("timings"),
            dvc_md5=m["dvc"]["md5"],
            mlflow_run_id=m["mlflow"]["run_id"],
        )
    )
