"""``registry review REF --approve|--reject`` and ``registry alias set REF ALIAS``.

Every status or alias change is an audit event with the actor and note. ``current``
follows the newest approved version: approving a newer version moves it forward,
rejecting the current one moves it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from synthreg import env
from synthreg.errors import ConflictError, InvalidNameError, UsageError
from synthreg.registry.events import record
from synthreg.registry.query import resolve
from synthreg.registry.records import move_current, set_alias
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import write_session
from synthreg.registry.workspace import Workspace

__all__ = ["ReviewResult", "review", "set_version_alias"]

_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ReviewResult:
    """A status or alias change."""

    dataset: str
    version: int
    action: str
    before: str
    after: str
    current: int | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "dataset": self.dataset,
            "version": self.version,
            "action": self.action,
            "before": self.before,
            "after": self.after,
            "current": self.current,
            "note": self.note,
        }


def review(ws: Workspace, ref: str, *, approve: bool, note: str = "") -> ReviewResult:
    """Approve or reject a version."""
    target = "approved" if approve else "rejected"
    if ws.settings.require_human and not note and approve:
        raise UsageError("this workspace requires a human approval with a reason: add --note TEXT")
    with ws.lock(), write_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        before = version.status
        if before == target:
            raise ConflictError(f"{dataset.name}@v{version.number} is already {target}: nothing to change")
        version.status = target
        session.add(version)
        session.flush()
        assert dataset.id is not None
        current = move_current(session, dataset.id)
        record(
            ws,
            session,
            actor=env.actor(),
            action="approve" if approve else "reject",
            dataset=dataset.name,
            version=version.number,
            details={"before": before, "after": target, "note": note, "current": current},
            card=(dataset, version),
        )
        return ReviewResult(dataset.name, version.number, "review", before, target, current, note)


def set_version_alias(ws: Workspace, ref: str, alias: str) -> ReviewResult:
    """Point ``alias`` (production, staging, ...) at a version."""
    if not _ALIAS.fullmatch(alias):
        raise InvalidNameError(
            f"invalid alias {alias!r}: use lower-case letters, digits, '-' or '_' (e.g. production)"
        )
    with ws.lock(), write_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        if alias == "current" and version.status != "approved":
            raise ConflictError(
                f"current must point at an approved version; {dataset.name}@v{version.number} "
                f"is {version.status}: approve it first (registry review --approve)"
            )
        assert dataset.id is not None
        from synthreg.registry.query import aliases_of

        before = aliases_of(session, dataset).get(alias)
        set_alias(session, dataset.id, alias, version.number)
        record(
            ws,
            session,
            actor=env.actor(),
            action="alias",
            dataset=dataset.name,
            version=version.number,
            details={"alias": alias, "before": before},
            card=(dataset, version),
        )
        previous = f"v{before}" if before is not None else "-"
        return ReviewResult(
            dataset.name,
            version.number,
            f"alias {alias}",
            previous,
            f"v{version.number}",
            version.number if alias == "current" else None,
        )
