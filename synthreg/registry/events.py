"""Writes that append no version (review, alias, use, diff, verify, doctor): an audit event
(appended to the log file in git and to the DB) plus one git commit that anchors it. When the
write changes what a version's DataCard shows, the card is regenerated in the same commit."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from synthreg.integrations import git
from synthreg.registry.audit import anchor_lines, append_event, log_size, truncate_log
from synthreg.registry.store import AuditEvent, Dataset, Version
from synthreg.registry.workspace import Workspace

__all__ = ["record"]


def record(
    ws: Workspace,
    session: Session,
    *,
    actor: str,
    action: str,
    dataset: str = "",
    version: int | None = None,
    details: dict[str, Any] | None = None,
    card: tuple[Dataset, Version] | None = None,
) -> AuditEvent:
    """Append an audit event inside the caller's write transaction and anchor it in git;
    ``card`` names a version whose DataCard the change affects (rewritten and committed)."""
    if card is not None:
        from synthreg.registry.cards import refresh_card

        session.flush()  # the card reads the change just made
        refresh_card(ws, session, *card)
    size = log_size(ws.root)
    try:
        event = append_event(
            session,
            root=ws.root,
            actor=actor,
            action=action,
            dataset=dataset,
            version=version,
            details=details,
        )
        where = f" {dataset}@v{version}" if version is not None else (f" {dataset}" if dataset else "")
        git.commit(ws.root, f"{action}{where}\n\n{anchor_lines(event)}", allow_empty=True)
    except BaseException:
        truncate_log(ws.root, size)  # the DB transaction rolls back with the caller's
        raise
    return event
