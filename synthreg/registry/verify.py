"""``registry verify REF [--rebuild]`` and ``registry audit verify``: detect tampering."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from sqlmodel import select

from synthreg.digest import DIGEST_BLOCK_ROWS, TableHasher, combine_digests
from synthreg.errors import VerificationError
from synthreg.integrations import git
from synthreg.registry.audit import first_broken_seq, head_hash
from synthreg.registry.checkout import missing_files, read_manifest
from synthreg.registry.llm_tables import slice_problems
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import AuditEvent, Dataset, Version, read_session
from synthreg.registry.workspace import Workspace

__all__ = ["VerifyResult", "content_digest_of", "verify_audit", "verify_version"]


@dataclass(frozen=True)
class VerifyResult:
    """What was checked and what did not match."""

    ref: str
    ok: bool
    checked: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"ref": self.ref, "ok": self.ok, "checked": self.checked, "problems": self.problems}


def content_digest_of(tables_dir: Path) -> tuple[str, dict[str, str]]:
    """Recompute the content digest of ``tables_dir/<table>/part-*.parquet``."""
    digests = {}
    for table_dir in sorted(p for p in tables_dir.iterdir() if p.is_dir()):
        parts = sorted(table_dir.glob("part-*.parquet"))
        hasher = TableHasher(pq.read_schema(parts[0]))
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=DIGEST_BLOCK_ROWS):
                hasher.update(batch)
        digests[table_dir.name] = hasher.hexdigest()
    return combine_digests(digests), digests


def verify_version(ws: Workspace, ref: str, *, rebuild: bool = False) -> VerifyResult:
    """File hashes and the content digest against the manifest and the DB; optionally rebuild."""
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    label = f"{dataset.name}@v{version.number}"
    vdir = ws.root / version.path
    manifest = read_manifest(vdir)
    problems = [
        f"file {p} is missing or does not match its sha256 in manifest.json"
        for p in missing_files(vdir, manifest, check_hashes=True)
    ]
    problems += slice_problems(vdir, manifest)
    checked: dict[str, Any] = {"files": len(manifest["files"])}
    if manifest["content_digest"] != version.content_digest:
        problems.append(
            f"manifest digest {manifest['content_digest'][:16]} != DB digest {version.content_digest[:16]}"
        )
    if not problems:
        digest, _ = content_digest_of(vdir / "tables")
        checked["content_digest"] = digest
        if digest != version.content_digest:
            problems.append(f"content digest {digest[:16]} != recorded {version.content_digest[:16]}")
    if rebuild:
        checked["rebuilt_digest"] = _rebuild(vdir)
        if checked["rebuilt_digest"] != version.content_digest:
            problems.append(
                f"rebuilt from spec.yaml: digest {checked['rebuilt_digest'][:16]} != recorded "
                f"{version.content_digest[:16]}"
            )
    result = VerifyResult(label, not problems, checked, problems)
    _record(
        ws,
        "verify",
        dataset.name,
        version.number,
        {"ok": not problems, "rebuild": rebuild, "problems": problems[:5]},
    )
    if problems:
        raise VerificationError(f"{label}: " + "; ".join(problems), result=result)
    return result


def _record(ws: Workspace, action: str, dataset: str, version: int, details: dict[str, Any]) -> None:
    """Verification is a write too: who checked what, when, with which outcome."""
    from synthreg import env
    from synthreg.registry.events import record
    from synthreg.registry.store import write_session

    with ws.lock(), write_session(ws.engine) as session:
        record(
            ws, session, actor=env.actor(), action=action, dataset=dataset, version=version, details=details
        )


def _rebuild(vdir: Path) -> str:
    from synthreg.registry.materialize import materialize_into

    work = Path(tempfile.mkdtemp(prefix="synthreg-rebuild-"))
    try:
        return materialize_into(vdir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


_STATUS_OF = {"approve": "approved", "reject": "rejected"}


def _status_problems(session: Any, events: list[AuditEvent]) -> list[str]:
    """Each version's DB status must be the one its events say (create, then reviews)."""
    expected: dict[tuple[str, int], str] = {}
    for e in events:
        if e.version is None:
            continue
        if e.action in ("create", "rollback", "disable"):
            expected[(e.dataset, e.version)] = (e.details or {}).get("status", "")
        elif e.action in _STATUS_OF:
            expected[(e.dataset, e.version)] = _STATUS_OF[e.action]
    problems = []
    for dataset, version in session.exec(select(Dataset, Version).where(Dataset.id == Version.dataset_id)):
        want = expected.get((dataset.name, version.number))
        if want is not None and want != version.status:
            problems.append(
                f"{dataset.name}@v{version.number} is {version.status} in the DB, but the audit "
                f"log says {want}: the status was changed outside synthreg"
            )
    return problems


def verify_audit(ws: Workspace) -> VerifyResult:
    """The hash chain holds, and every chain head recorded in git is an event of it."""
    with read_session(ws.engine) as session:
        broken = first_broken_seq(session)
        head = head_hash(session)
        events = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)))  # type: ignore[arg-type]
        hashes = {e.hash for e in events}
        count = len(hashes)
        problems = _status_problems(session, events)
    if broken is not None:
        problems.append(
            f"audit event seq {broken} was edited, deleted or reordered (its hash or link does not check out)"
        )
    anchored = [
        m.rsplit("audit-head: ", 1)[1].split()[0] for m in git.log_messages(ws.root) if "audit-head: " in m
    ]
    lost = [h for h in anchored if h not in hashes]
    if lost:
        problems.append(
            f"{len(lost)} chain heads recorded in git commits are not in the DB (e.g. {lost[0][:16]}): "
            "events were deleted"
        )
    result = VerifyResult(
        "audit", not problems, {"events": count, "head": head, "git_anchors": len(anchored)}, problems
    )
    if problems:
        raise VerificationError("audit chain: " + "; ".join(problems), result=result)
    return result
