"""The audit log: one event per write, chained by SHA-256, kept append-only in git.

The events themselves live in the workspace's git repository, in ``audit/events.jsonl``
(one canonical JSON line per event); the DB's ``auditevent`` table is a copy of that file,
so a lost DB is rebuilt from git (``registry doctor --rebuild``). Every write appends one
event and makes one git commit whose message anchors it (``audit-seq: N`` and
``audit-head: HASH``). With ``SYNTHREG_AUDIT_KEY_FILE`` naming a key file outside the
workspace, each event also carries ``sig``, an HMAC-SHA256 of its hash under that key: a
forger who can write the DB and the git repository but cannot read the key cannot sign.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from synthreg.errors import WorkspaceError
from synthreg.integrations import git
from synthreg.registry.store import AuditEvent, utcnow

__all__ = [
    "GENESIS",
    "KEY_ENV",
    "LOG_FILE",
    "LoggedEvent",
    "anchor_lines",
    "append_event",
    "event_hash",
    "event_line",
    "export_db_events",
    "head_hash",
    "parse_log",
    "read_key",
    "truncate_log",
]

GENESIS = "0" * 64
LOG_FILE = "audit/events.jsonl"
KEY_ENV = "SYNTHREG_AUDIT_KEY_FILE"


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _payload(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "at": _utc(event.at).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "dataset": event.dataset,
        "version": event.version,
        "details": event.details or {},
        "prev_hash": event.prev_hash,
    }


def event_hash(event: AuditEvent) -> str:
    """The hash of an event: its fields and the previous hash, canonically encoded."""
    return hashlib.sha256(json.dumps(_payload(event), sort_keys=True, default=str).encode()).hexdigest()


def read_key(root: Path) -> bytes | None:
    """The signing key named by ``$SYNTHREG_AUDIT_KEY_FILE``, or None when it is not set.

    A key inside the workspace is refused: whoever can write the workspace could read it."""
    name = os.environ.get(KEY_ENV)
    if not name:
        return None
    path = Path(name).expanduser().resolve()
    if path.is_relative_to(root.resolve()):
        raise WorkspaceError(
            f"{KEY_ENV}={name} is inside the workspace {root}: keep the audit key outside it "
            "(e.g. ~/.config/synthreg/audit.key), where those who can write the workspace cannot read it"
        )
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise WorkspaceError(
            f"{KEY_ENV}={name} cannot be read ({exc}): point it at a readable key file"
        ) from None
    if len(key) < 16:
        raise WorkspaceError(f"{KEY_ENV}={name} holds under 16 bytes: use e.g. `openssl rand -hex 32 > FILE`")
    return key


def signature(key: bytes, hash_: str) -> str:
    """HMAC-SHA256 of an event's hash under ``key``."""
    return hmac.new(key, hash_.encode(), hashlib.sha256).hexdigest()


def event_line(event: AuditEvent, sig: str | None = None) -> str:
    """The event as one canonical line of the log (newline included)."""
    doc = {**_payload(event), "hash": event.hash, **({"sig": sig} if sig else {})}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=True) + "\n"


@dataclass(frozen=True)
class LoggedEvent:
    """One line of the log: the event and its signature (if signed)."""

    event: AuditEvent
    sig: str | None


def parse_log(text: str, source: str = LOG_FILE) -> list[LoggedEvent]:
    """The events of a log file's text, oldest first; a damaged line is a VerificationError."""
    from synthreg.errors import VerificationError

    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            event = AuditEvent(
                seq=int(doc["seq"]),
                at=dt.datetime.fromisoformat(doc["at"]),
                actor=doc["actor"],
                action=doc["action"],
                dataset=doc["dataset"],
                version=doc["version"],
                details=doc["details"],
                prev_hash=doc["prev_hash"],
                hash=doc["hash"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(
                f"{source} line {number} is not an audit event ({exc}): it was edited"
            ) from None
        out.append(LoggedEvent(event, doc.get("sig")))
    return out


def _log_path(root: Path) -> Path:
    return root / LOG_FILE


def _last_line(path: Path) -> str:
    """The last line of the log without reading all of it."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        chunk = 1 << 16
        while True:
            start = max(0, size - chunk)
            handle.seek(start)
            data = handle.read(size - start)
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                return lines[-1].decode()
            chunk *= 4


def head_hash(session: Session) -> str:
    """The hash of the newest event in the DB (GENESIS when there is none)."""
    last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    return last.hash if last else GENESIS


def export_db_events(session: Session, root: Path) -> None:
    """Write the DB's events to a workspace that has no log file yet (made before the log moved
    to git): their anchors are the ``audit-head`` lines of the old commits."""
    path = _log_path(root)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    events = session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all()  # type: ignore[arg-type]
    path.write_text("".join(event_line(e) for e in events), encoding="utf-8")


def _log_head(session: Session, root: Path) -> tuple[int, str]:
    """(seq, hash) of the newest event; the work-tree log and the DB must agree on it."""
    path = _log_path(root)
    if not path.exists():
        export_db_events(session, root)
    last = _last_line(path) if path.stat().st_size else ""
    seq, head = (0, GENESIS) if not last else (int(json.loads(last)["seq"]), json.loads(last)["hash"])
    db_head = head_hash(session)
    if db_head != head:
        raise WorkspaceError(
            f"the audit log in {LOG_FILE} (head {head[:12]}) and the DB (head {db_head[:12]}) disagree, "
            "after an interrupted write or a change behind synthreg's back: run 'registry doctor' "
            "(then 'registry doctor --repair' or '--rebuild' as it says). A clone that shares a team DB "
            "with other clones must be up to date first: 'git pull' the workspace, and 'git push' after "
            "each write"
        )
    return seq, head


def append_event(
    session: Session,
    *,
    root: Path,
    actor: str,
    action: str,
    dataset: str = "",
    version: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event to the log file (staged for the caller's git commit) and to the DB,
    inside the caller's write transaction and writer lock. The caller commits git with
    :func:`anchor_lines` in the message, and undoes with :func:`truncate_log` on failure."""
    seq, head = _log_head(session, root)
    event = AuditEvent(
        seq=seq + 1,
        at=utcnow(),
        actor=actor,
        action=action,
        dataset=dataset,
        version=version,
        details=details or {},
        prev_hash=head,
        hash="",
    )
    event.hash = event_hash(event)
    key = read_key(root)
    with open(_log_path(root), "a", encoding="utf-8") as handle:
        handle.write(event_line(event, signature(key, event.hash) if key else None))
    git.add(root, [LOG_FILE])
    session.add(event)
    session.flush()
    return event


def log_size(root: Path) -> int:
    """The log file's size now (what :func:`truncate_log` goes back to)."""
    path = _log_path(root)
    return path.stat().st_size if path.exists() else 0


def truncate_log(root: Path, size: int) -> None:
    """Undo appends made after the log had ``size`` bytes (a write that failed)."""
    path = _log_path(root)
    if path.exists():
        with open(path, "r+b") as handle:
            handle.truncate(size)


def anchor_lines(event: AuditEvent) -> str:
    """The commit-message trailer that anchors ``event`` in git."""
    return f"audit-seq: {event.seq}\naudit-head: {event.hash}\n"
