"""The audit log: one event per write, chained by SHA-256 so edits are detectable."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from synthreg.registry.store import AuditEvent, utcnow

__all__ = ["GENESIS", "append_event", "event_hash", "first_broken_seq", "head_hash"]

GENESIS = "0" * 64


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def event_hash(event: AuditEvent) -> str:
    """The hash of an event: its fields and the previous hash, canonically encoded."""
    payload = {
        "seq": event.seq,
        "at": _utc(event.at).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "dataset": event.dataset,
        "version": event.version,
        "details": event.details or {},
        "prev_hash": event.prev_hash,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def head_hash(session: Session) -> str:
    """The hash of the newest event (GENESIS when there is none)."""
    last = session.exec(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).first()  # type: ignore[union-attr]
    return last.hash if last else GENESIS


def append_event(
    session: Session,
    *,
    actor: str,
    action: str,
    dataset: str = "",
    version: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append an event inside the caller's write transaction."""
    seq = (session.exec(select(func.max(AuditEvent.seq))).one() or 0) + 1
    event = AuditEvent(
        seq=seq,
        at=utcnow(),
        actor=actor,
        action=action,
        dataset=dataset,
        version=version,
        details=details or {},
        prev_hash=head_hash(session),
        hash="",
    )
    event.hash = event_hash(event)
    session.add(event)
    session.flush()
    return event


def first_broken_seq(session: Session) -> int | None:
    """The first event whose hash or link does not check out, or None if the chain holds."""
    prev, expected_seq = GENESIS, 1
    for event in session.exec(select(AuditEvent).order_by(AuditEvent.seq)):  # type: ignore[arg-type]
        if event.seq != expected_seq or event.prev_hash != prev or event_hash(event) != event.hash:
            return event.seq if event.seq is not None else expected_seq
        prev, expected_seq = event.hash, expected_seq + 1
    return None
