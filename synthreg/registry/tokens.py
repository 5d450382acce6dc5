"""Identities of ``registry serve``: tokens with a user, a role and optionally one dataset.

Roles are ordered: viewer < editor < reviewer < admin. A token without a dataset grants its role on
every dataset; a token with one grants it on that dataset only (and nothing on the others, not
even their names). Tokens are shown once, when made, and only their SHA-256 is stored; making and
revoking one is an audit event that names the user and role, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from synthreg import env
from synthreg.errors import NotFoundError, UsageError
from synthreg.registry.events import record
from synthreg.registry.refs import check_name
from synthreg.registry.store import ApiToken, read_session, utcnow, write_session
from synthreg.registry.workspace import Workspace

__all__ = ["ROLES", "Identity", "authenticate", "create_token", "list_tokens", "revoke_token"]

ROLES = ("viewer", "editor", "reviewer", "admin")
PREFIX = "srt_"


@dataclass(frozen=True)
class Identity:
    """Who a request is, and what it may do."""

    user: str
    role: str
    dataset: str | None = None  # None: every dataset
    token_id: int | None = None

    def rank(self) -> int:
        """The role's place in ROLES."""
        return ROLES.index(self.role)

    def may_see(self, dataset: str) -> bool:
        """Whether the dataset exists for this identity at all."""
        return self.dataset is None or self.dataset == dataset

    def may(self, role: str, dataset: str | None = None) -> bool:
        """Whether this identity holds ``role`` or above (on ``dataset``, when given)."""
        if dataset is not None and not self.may_see(dataset):
            return False
        if dataset is None and self.dataset is not None and role != "viewer":
            return False  # workspace-wide writes need a workspace-wide token
        return self.rank() >= ROLES.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check(user: str, role: str) -> None:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not user or len(user) > 64 or not all(c.isalnum() or c in "._-@" for c in user):
        raise UsageError(f"invalid user {user!r}: letters, digits and . _ - @, at most 64 characters")


def create_token(ws: Workspace, user: str, role: str, dataset: str | None = None) -> tuple[int, str]:
    """Make a token; returns its id and the token itself (shown once, never stored)."""
    _check(user, role)
    if dataset is not None:
        check_name(dataset)
    token = PREFIX + secrets.token_urlsafe(32)
    with ws.lock(), write_session(ws.engine) as session:
        row = ApiToken(
            user=user, role=role, dataset=dataset, token_sha256=_digest(token), created_by=env.actor()
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        details: dict[str, Any] = {"token_id": row.id, "user": user, "role": role, "dataset": dataset}
        record(ws, session, actor=env.actor(), action="token.create", details=details)
        return row.id, token


def revoke_token(ws: Workspace, token_id: int) -> dict[str, Any]:
    """Revoke a token: it authenticates nobody from now on."""
    with ws.lock(), write_session(ws.engine) as session:
        row = session.get(ApiToken, token_id)
        if row is None or row.revoked_at is not None:
            raise NotFoundError(f"no active token {token_id}: see 'registry token list'")
        row.revoked_at = utcnow()
        session.add(row)
        details = {"token_id": token_id, "user": row.user, "role": row.role}
        record(ws, session, actor=env.actor(), action="token.revoke", details=details)
        return _public(row)


def _public(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "user": row.user,
        "role": row.role,
        "dataset": row.dataset,
        "created_at": row.created_at.isoformat(timespec="seconds") if row.created_at else None,
        "created_by": row.created_by,
        "revoked": row.revoked_at is not None,
    }


def list_tokens(ws: Workspace) -> list[dict[str, Any]]:
    """Every token (never the token itself)."""
    with read_session(ws.engine) as session:
        return [_public(r) for r in session.exec(select(ApiToken).order_by(ApiToken.id))]  # type: ignore[arg-type]


def authenticate(ws: Workspace, token: str) -> Identity | None:
    """The identity of an active token, or None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = _digest(token)
    with read_session(ws.engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.token_sha256 == digest)).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_sha256, digest):
        return None
    return Identity(row.user, row.role, row.dataset, row.id)
