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

from sqlalchemy import func
from sqlmodel import Session, select

from synthreg import env
from synthreg.errors import SynthregError
from synthreg.integrations import dvc, git
from synthreg.registry.audit import LOG_FILE, LoggedEvent
from synthreg.registry.audit_verify import GovState, committed_log, git_anchors, replay
from synthreg.registry.checkout import ensure_local, missing_files, read_manifest
from synthreg.registry.store import (
    Alias,
    AuditEvent,
    Dataset,
    DiffRecord,
    GenerationRun,
    Usage,
    Version,
    read_session,
    write_session,
)
from synthreg.registry.workspace import Workspace

__all__ = ["DoctorResult", "doctor"]


@dataclass
class DoctorResult:
    """Problems found, and which were fixed."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    backends: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, detail: str, fixed: bool = False) -> None:
        """Record a problem."""
        self.problems.append({"kind": kind, "detail": detail, "fixed": fixed})

    @property
    def healthy(self) -> bool:
        """No problem left unfixed."""
        return all(p["fixed"] for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"healthy": self.healthy, "backends": self.backends, "problems": self.problems}


def doctor(ws: Workspace, *, repair: bool = False, rebuild: bool = False) -> DoctorResult:
    """Check the workspace; optionally repair or rebuild the DB."""
    result = DoctorResult()
    repair = repair or rebuild  # a rebuild first clears what an interrupted write left
    if not _backends(ws, result):
        return result  # nothing else can be checked without the metadata DB
    with ws.lock():
        _staging(ws, result, repair)
        _staged_parts(ws, result, repair)
        logged = _log(ws, result, repair)
        known = _db_versions(ws)
        on_disk = _uncommitted(ws, _disk_versions(ws, result, repair), known, result, repair)
        _worktree(ws, result, repair)
        if rebuild and logged is not None:
            rebuild_from_git(ws, on_disk, known, logged, result)
            known = _db_versions(ws)
        for path in sorted(set(on_disk) - set(known)):
            result.add("not-in-db", f"{path} has a manifest but no DB row: run 'registry doctor --rebuild'")
        _git_commits(ws, known, result)
        cloud = _cloud(ws, known, result)
        _files(ws, known, cloud, result, repair)
        _remote(ws, known, cloud, result, repair)
        _orphan_runs(ws, known, result, repair)
        _db_events(ws, logged, result)
        if repair or rebuild:
            _event(ws, "doctor", {"repair": repair, "rebuild": rebuild, "problems": len(result.problems)})
    return result


def _backends(ws: Workspace, result: DoctorResult) -> bool:
    """Each backend answers (DB, DVC remote, MLflow, and a remote ``[compute] scheduler`` with
    workers that run this machine's software); False when the metadata DB does not."""
    from synthreg.compute.dask import remote
    from synthreg.integrations import probes

    settings = ws.settings
    checks = [
        probes.probe_db(settings.db_url),
        probes.probe_remote(settings.dvc_url, settings.dvc_endpoint, ws.root),
        probes.probe_mlflow(settings.mlflow_tracking_uri),
    ]
    if remote(settings.compute_scheduler):  # a local:N cluster is started by each create
        checks.append(probes.probe_cluster(settings.compute_scheduler))
    for probe in checks:
        result.backends.append(probe.to_dict())
        if not probe.ok:
            result.add("backend", probe.message())
    return checks[0].ok


def _orphan_runs(ws: Workspace, known: dict[str, Version], result: DoctorResult, repair: bool) -> None:
    """MLflow runs this workspace logged for versions it never committed (a create killed between
    logging its run and its DB rows): they would claim a version that does not exist. Runs logged
    before runs carried the workspace tag are not seen."""
    from synthreg.errors import IntegrationError
    from synthreg.integrations import mlflow as mlflow_int

    uri = ws.settings.mlflow_tracking_uri
    recorded = {v.mlflow_run_id for v in known.values() if v.mlflow_run_id}
    with read_session(ws.engine) as session:
        first = session.exec(select(func.min(AuditEvent.at))).one()
    if first is None:
        return
    # runs from before this registry's first event are an earlier registry's at the same path
    since_ms = first.replace(tzinfo=first.tzinfo or dt.UTC).timestamp() * 1000
    try:
        runs = mlflow_int.workspace_runs(uri, ws.root.resolve().as_uri())
    except IntegrationError as exc:
        result.add("backend", str(exc))
        return
    for run in runs:
        if run["run_id"] in recorded or run["start_ms"] < since_ms:
            continue
        if repair:
            mlflow_int.delete_run(uri, run["run_id"])
        result.add(
            "orphan-run",
            f"MLflow run {run['run_id']} ({run['run_name']}) is for a version this workspace never "
            "committed (an interrupted create): 'registry doctor --repair' deletes it",
            fixed=repair,
        )


def _staging(ws: Workspace, result: DoctorResult, repair: bool) -> None:
    staging = ws.settings.state_dir / "staging"
    for leftover in sorted(staging.glob("*")) if staging.is_dir() else []:
        if repair:
            shutil.rmtree(leftover, ignore_errors=True)
        result.add("orphan-staging", f"{leftover} is a leftover of an interrupted write", fixed=repair)


def _staged_parts(ws: Workspace, result: DoctorResult, repair: bool) -> None:
    """Parts a remote cluster's tasks staged beside the S3 remote and a create did not delete (it
    was stopped while tasks still ran): like a staging folder here, a leftover of an interrupted
    write."""
    url, endpoint = ws.settings.dvc_url, ws.settings.dvc_endpoint
    if not url.startswith("s3://"):
        return
    from synthreg.generators.staging import s3_region, staged_runs

    try:
        runs = staged_runs(url, endpoint, s3_region(url, endpoint))
    except OSError as exc:
        result.add("remote", f"could not list staged parts on the remote: {exc}")
        return
    for _, stage in sorted(runs.items()):
        parts = stage.parts()
        if repair:
            stage.clear()
        result.add(
            "orphan-staged-parts",
            f"{stage.url} holds {parts} objects (parts, group rules' pieces or quality splits) of an "
            "interrupted create: "
            "'registry doctor --repair' deletes them",
            fixed=repair,
        )


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


def _files(
    ws: Workspace, known: dict[str, Version], cloud: dict[str, str] | None, result: DoctorResult, repair: bool
) -> None:
    """Data files missing locally are a problem only when the remote lacks them too: a clone on
    another machine pulls what it needs (``registry checkout``, ``load``)."""
    for path, version in sorted(known.items()):
        vdir = ws.root / path
        if not (vdir / "manifest.json").is_file():
            result.add("no-files", f"{path} is in the DB but its directory is gone: restore it from git")
            continue
        manifest = read_manifest(vdir)
        missing = missing_files(vdir, manifest)
        if not missing:
            continue
        unsafe = cloud is None or any(p.startswith(f"{path}/") for p in cloud)
        if not repair and not unsafe and not _in_cache(ws, manifest):
            continue  # on the remote, never pulled on this machine
        fixed = False
        if repair:
            try:
                ensure_local(ws, version)
                fixed = True
            except SynthregError:
                fixed = False
        result.add("missing-data", f"{path}: {len(missing)} data files missing locally", fixed=fixed)


def _in_cache(ws: Workspace, manifest: dict[str, Any]) -> bool:
    """Whether this machine's DVC cache holds any of the version's files (it was here once; the
    listing alone proves nothing: ``dvc status --cloud`` fetches it)."""
    cache = ws.root / ".dvc/cache/files/md5"
    md5 = str(manifest.get("dvc", {}).get("md5", ""))
    listing = cache / md5[:2] / md5[2:]
    if not md5 or not listing.is_file():
        return False
    entries = json.loads(listing.read_text())
    return any((cache / e["md5"][:2] / e["md5"][2:]).is_file() for e in entries if "md5" in e)


def _stages(ws: Workspace, known: dict[str, Version]) -> list[str]:
    manifests = [ws.root / p for p in known if (ws.root / p / "manifest.json").is_file()]
    return [dvc.target(read_manifest(vdir)["dvc"]) for vdir in manifests]


def _cloud(ws: Workspace, known: dict[str, Version], result: DoctorResult) -> dict[str, str] | None:
    """Outputs the DVC remote lacks or holds otherwise (``dvc status --cloud``, less 'deleted': on
    the remote but not in this machine's cache, which is fine); None when it cannot be compared."""
    stages = _stages(ws, known)
    if not stages:
        return {}
    try:
        status = dvc.cloud_status(ws.root, stages)
    except Exception as exc:  # no remote configured, unreachable remote
        result.add("remote", f"could not compare with the DVC remote: {exc}")
        return None
    return {str(p): str(s) for p, s in status.items() if s != "deleted"}


def _remote(
    ws: Workspace, known: dict[str, Version], cloud: dict[str, str] | None, result: DoctorResult, repair: bool
) -> None:
    if not cloud:
        return
    stages = _stages(ws, known)
    fixed = False
    if repair:
        dvc.push(ws.root, stages)
        fixed = not _cloud(ws, known, DoctorResult())
    result.add("not-on-remote", f"{len(cloud)} outputs are not on the DVC remote", fixed=fixed)


def _log(ws: Workspace, result: DoctorResult, repair: bool) -> list[LoggedEvent] | None:
    """The committed audit log; a workspace older than it gets it exported by --repair."""
    logged = committed_log(ws.root)
    if logged is None:
        result.add(
            "no-audit-log",
            f"no audit log is committed in git ({LOG_FILE}): 'registry doctor --repair' exports the "
            "DB's events",
            fixed=repair,  # the doctor's own event exports and commits it
        )
    return logged


def _committed(ws: Workspace, rel: str) -> bool:
    """Whether ``rel`` is tracked at HEAD and unchanged in the work tree."""
    tracked = git.run(ws.root, "ls-tree", "--name-only", "HEAD", "--", rel)
    return bool(tracked) and not git.run(ws.root, "status", "--porcelain", "--", rel)


def _uncommitted(
    ws: Workspace,
    on_disk: dict[str, dict[str, Any]],
    known: dict[str, Version],
    result: DoctorResult,
    fix: bool,
) -> dict[str, dict[str, Any]]:
    """Version directories whose manifest never reached a git commit: an interrupted write.
    They are never resurrected; --repair (or --rebuild) removes them."""
    kept = {}
    for path, manifest in on_disk.items():
        if path in known or _committed(ws, f"{path}/manifest.json"):
            kept[path] = manifest
            continue
        if fix:
            shutil.rmtree(ws.root / path, ignore_errors=True)
        result.add(
            "uncommitted",
            f"{path} was never committed to git (an interrupted write): 'registry doctor --repair' "
            "removes it",
            fixed=fix,
        )
    return kept


#: What only synthreg writes (specs/ is left alone: people edit their specs there).
_TRACKED = ("dvc.yaml", "dvc.lock", "data", "audit")


def _worktree(ws: Workspace, result: DoctorResult, fix: bool) -> None:
    """What git holds must be what the work tree has: a change is an interrupted write or an edit."""
    if fix:
        git.run(ws.root, "reset", "-q")  # nothing stays staged between writes
    status = git.run(ws.root, "status", "--porcelain", "--untracked-files=no", "--", *_TRACKED, strip=False)
    changed = [line[3:] for line in status.splitlines()]
    if not changed:
        return
    if fix:
        git.run(ws.root, "checkout", "HEAD", "--", *changed)
    result.add(
        "uncommitted-changes",
        f"{len(changed)} files differ from git HEAD (e.g. {changed[0]}): 'registry doctor --repair' "
        "puts back the committed ones",
        fixed=fix,
    )


def _git_commits(ws: Workspace, known: dict[str, Version], result: DoctorResult) -> None:
    """Every DB version names a commit that exists and holds its manifest."""
    for path, version in sorted(known.items()):
        sha = version.git_commit
        holds = sha and git.run(
            ws.root, "ls-tree", "--name-only", sha, "--", f"{path}/manifest.json", check=False
        )
        if not holds:
            result.add(
                "git",
                f"{path}: its git commit {sha[:12] or '(none)'} is missing or lacks its manifest: "
                "restore the git history, then run 'registry doctor --rebuild'",
            )


def _db_events(ws: Workspace, logged: list[LoggedEvent] | None, result: DoctorResult) -> None:
    if logged is None:
        return
    with read_session(ws.engine) as session:
        rows = {e.seq: e.hash for e in session.exec(select(AuditEvent))}
    in_log = {item.event.seq: item.event.hash for item in logged}
    if rows == in_log:
        return
    lost, extra = set(in_log) - set(rows), set(rows) - set(in_log)
    edited = [s for s in set(rows) & set(in_log) if rows[s] != in_log[s]]
    result.add(
        "audit-log",
        f"the DB's audit events differ from the log in git ({len(lost)} missing, {len(extra)} not in git, "
        f"{len(edited)} edited): see 'registry audit verify'; 'registry doctor --rebuild' restores "
        "missing ones",
    )


def _event(ws: Workspace, action: str, details: dict[str, Any]) -> None:
    from synthreg.registry.events import record

    with write_session(ws.engine) as session:
        record(ws, session, actor=env.actor(), action=action, details=details)


def rebuild_from_git(
    ws: Workspace,
    on_disk: dict[str, dict[str, Any]],
    known: dict[str, Version],
    logged: list[LoggedEvent],
    result: DoctorResult,
) -> None:
    """What the DB lacks, from git: events, versions, then the state the log leaves."""
    events = [item.event for item in logged]
    state = replay(events)
    with write_session(ws.engine) as session:
        have = set(session.exec(select(AuditEvent.seq)))
        restored = [e for e in events if e.seq not in have]
        for e in restored:
            session.add(AuditEvent.model_validate(e.model_dump()))
        if restored:
            result.add("rebuilt", f"{len(restored)} audit events restored from {LOG_FILE}", fixed=True)
        session.flush()
        _versions(ws, session, on_disk, known, state, result)
        _apply_state(session, state)


def _versions(
    ws: Workspace,
    session: Session,
    on_disk: dict[str, dict[str, Any]],
    known: dict[str, Version],
    state: GovState,
    result: DoctorResult,
) -> None:
    commits = {head: sha for sha, _seq, head in git_anchors(ws.root)}
    missing = {p: m for p, m in on_disk.items() if p not in known}
    for path, manifest in sorted(missing.items(), key=lambda kv: (kv[1]["dataset"], kv[1]["version"])):
        creator = state.creators.get((manifest["dataset"], manifest["version"]))
        if creator is None or creator.hash != manifest.get("audit_head"):
            result.add("unlogged", f"{path}: no audit event of the log created it, so it is not rebuilt")
            continue
        dataset = _dataset(session, manifest)
        version = _version_row(dataset, path, manifest, ws.root / path)
        version.git_commit = commits.get(creator.hash, "")
        session.add(version)
        session.flush()
        if manifest.get("generation"):
            _run_row(session, version, manifest, ws.root / path)
        result.add("rebuilt", f"{path}: DB rows rebuilt from manifest.json", fixed=True)


def _apply_state(session: Session, state: GovState) -> None:
    """Statuses and aliases as the log leaves them; usages and diffs the DB lacks."""
    datasets = {d.id: d.name for d in session.exec(select(Dataset))}
    ids = {name: int(i or 0) for i, name in datasets.items()}
    by_key = {}
    for v in session.exec(select(Version)):
        key = (datasets[v.dataset_id], v.number)
        by_key[key] = v
        status = state.statuses.get(key)
        if status and status != v.status:
            v.status = status
            session.add(v)
    for alias in session.exec(select(Alias)):
        session.delete(alias)
    session.flush()
    for (name, alias_name), number in state.aliases.items():
        if (name, number) in by_key:
            session.add(Alias(dataset_id=ids[name], name=alias_name, version=number))
    used = {(u.version_id, u.run_id) for u in session.exec(select(Usage))}
    for e in state.usages:
        target, d = by_key.get((e.dataset, e.version or 0)), e.details or {}
        if target is not None and (target.id, d.get("run_id")) not in used:
            assert target.id is not None
            session.add(
                Usage(
                    version_id=target.id,
                    run_id=str(d.get("run_id", "")),
                    experiment_id=str(d.get("experiment_id", "")),
                    context=str(d.get("context", "training")),
                    at=e.at,
                    actor=e.actor,
                )
            )
    _diffs(session, state)


def _diffs(session: Session, state: GovState) -> None:
    have = {r.path for r in session.exec(select(DiffRecord))}
    for e in state.diffs:
        d = e.details or {}
        path, a, b = f"{d.get('path', '')}/diff.json", str(d.get("a", "")), str(d.get("b", ""))
        if path in have or "@v" not in a or "@v" not in b:
            continue
        (da, va), (db, vb) = a.rsplit("@v", 1), b.rsplit("@v", 1)
        session.add(
            DiffRecord(
                dataset_a=da,
                version_a=int(va),
                dataset_b=db,
                version_b=int(vb),
                path=path,
                summary=str(d.get("summary", "")),
                at=e.at,
                actor=e.actor,
            )
        )


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
        status=m["status"],  # then replayed from the audit log
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
        quality=_quality(vdir),
    )


def _quality(vdir: Path) -> dict[str, Any] | None:
    """What the DB keeps of quality.json (as publish stores it)."""
    path = vdir / "quality.json"
    if not path.is_file():
        return None
    q = json.loads(path.read_text())
    return {"quality_score": q.get("quality_score"), "components": q.get("components")}


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
