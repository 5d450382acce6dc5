"""``registry review REF --approve|--reject`` and ``registry alias set REF ALIAS``.

Every status or alias change is an audit event with the actor and note. ``current``
follows the newest approved version: approving a newer version moves it forward,
rejecting the current one moves it back.

A version that failed validation is never approved by a plain ``--approve``: the only way
is an explicit override (``--override-validation --reason TEXT``). The override approves
it (so it may become ``current``); the audit event records ``override_validation`` and the
reason, and the version's recorded validation keeps an ``override`` entry (actor, time,
reason) that its DataCard shows.
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
from synthreg.registry.store import Version, utcnow, write_session
from synthreg.registry.workspace import Workspace

__all__ = ["ReviewResult", "review", "set_version_alias", "validation_failed"]

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
    override: dict[str, Any] | None = None  # a validation override: by, at, reason

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
            "override_validation": self.override is not None,
            **({"override": self.override} if self.override is not None else {}),
        }


def review(
    ws: Workspace,
    ref: str,
    *,
    approve: bool,
    note: str = "",
    override_validation: bool = False,
    reason: str = "",
    four_eyes: bool | None = None,
) -> ReviewResult:
    """Approve or reject a version; approving one that failed validation needs ``override_validation``
    and a ``reason``. With four eyes (``[review] four_eyes``, always on in ``registry serve``) the
    author of a version cannot approve it."""
    if four_eyes is None:
        four_eyes = ws.settings.four_eyes
    target = "approved" if approve else "rejected"
    _check_options(ws, approve=approve, note=note, override_validation=override_validation, reason=reason)
    with ws.lock(), write_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        label = f"{dataset.name}@v{version.number}"
        before = version.status
        if approve and four_eyes and version.created_by == env.actor():
            raise ConflictError(
                f"refused: {label} was made by {version.created_by}, and the four-eyes rule says its "
                "author cannot approve it: ask another reviewer"
            )
        if before == target:
            raise ConflictError(f"{label} is already {target}: nothing to change")
        override = _override(label, version, approve, override_validation, reason)
        version.status = target
        if override is not None:  # a new dict: the JSON column sees the change
            version.validation = {**(version.validation or {}), "override": override}
        session.add(version)
        session.flush()
        assert dataset.id is not None
        current = move_current(session, dataset.id)
        details: dict[str, Any] = {"before": before, "after": target, "note": note, "current": current}
        if override is not None:
            details.update(override_validation=True, reason=reason)
        record(
            ws,
            session,
            actor=env.actor(),
            action="approve" if approve else "reject",
            dataset=dataset.name,
            version=version.number,
            details=details,
            card=(dataset, version),
        )
        return ReviewResult(dataset.name, version.number, "review", before, target, current, note, override)


def _check_options(
    ws: Workspace, *, approve: bool, note: str, override_validation: bool, reason: str
) -> None:
    if override_validation and not approve:
        raise UsageError("--override-validation goes with --approve only: drop it to reject")
    if override_validation and not reason.strip():
        raise UsageError(
            "--override-validation needs --reason TEXT: say why a version that failed validation is approved"
        )
    if reason and not override_validation:
        raise UsageError("--reason is the reason of a validation override: use --note TEXT for a review note")
    if ws.settings.require_human and approve and not (note or reason):
        raise UsageError("this workspace requires a human approval with a reason: add --note TEXT")


def validation_failed(version: Version) -> bool:
    """Whether the version's recorded validation did not pass (as the review policy reads it)."""
    return not bool((version.validation or {}).get("success"))


def _override(
    label: str, version: Version, approve: bool, override_validation: bool, reason: str
) -> dict[str, Any] | None:
    """The override record of an approval of a failed version; refuse one without the override."""
    failed = approve and validation_failed(version)
    if failed and not override_validation:
        v = version.validation or {}
        raise ConflictError(
            f"refused: {label} failed validation ({v.get('failed', '?')} of {v.get('evaluated', '?')} "
            f"checks failed, see {version.path}/validation.json), and a version that failed validation "
            "never becomes current. Fix the spec and create a new version; or, to approve this one "
            "anyway, add --override-validation --reason TEXT (recorded in the audit log and on its DataCard)"
        )
    if override_validation and not failed:
        raise UsageError(f"{label} passed validation: approve it without --override-validation")
    if not override_validation:
        return None
    return {"by": env.actor(), "at": utcnow().isoformat(timespec="seconds"), "reason": reason}


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
