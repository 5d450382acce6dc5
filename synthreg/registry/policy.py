"""The review policy of ``registry.toml``: what status a new version starts in."""

from __future__ import annotations

from synthreg.config import Settings
from synthreg.errors import WorkspaceError

__all__ = ["KNOWN_RULES", "review_status"]

KNOWN_RULES = ("validation_passed", "never")


def review_status(settings: Settings, validation_passed: bool) -> str:
    """``rejected`` if validation failed; else ``approved`` or ``pending`` by policy."""
    if not validation_passed:
        return "rejected"
    if settings.auto_approve not in KNOWN_RULES:
        raise WorkspaceError(
            f"registry.toml [review] auto_approve = {settings.auto_approve!r} is not a known rule: "
            f"use one of {', '.join(KNOWN_RULES)}"
        )
    if settings.require_human or settings.auto_approve == "never":
        return "pending"
    return "approved"
