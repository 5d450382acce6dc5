"""Dataset names and version references (``name``, ``name@v3``, ``name@3``, ``name@alias``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from synthreg.errors import InvalidNameError, InvalidRefError

__all__ = ["NAME_PATTERN", "Ref", "check_name", "parse_ref"]

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def check_name(name: str) -> str:
    """Return ``name`` if it is a safe dataset name, else raise InvalidNameError."""
    if not _NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid dataset name {name!r}: use 1-64 characters, lower-case letters, digits, "
            "'-' or '_', starting with a letter (e.g. 'fitness' or 'shop-orders')"
        )
    return name


@dataclass(frozen=True)
class Ref:
    """A parsed reference: exactly one of ``version`` or ``alias`` is set."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@v{self.version}" if self.version is not None else f"{self.name}@{self.alias}"


def parse_ref(text: str) -> Ref:
    """Parse ``name[@vN|@N|@alias]``; a bare name means ``name@current``."""
    name, _, tail = text.partition("@")
    try:
        check_name(name)
    except InvalidNameError as exc:
        raise InvalidRefError(f"invalid ref {text!r}: {exc}") from None
    if not tail:
        return Ref(name, alias="current")
    match = re.fullmatch(r"v?(\d+)", tail)
    if match:
        number = int(match.group(1))
        if number < 1:
            raise InvalidRefError(f"invalid ref {text!r}: versions start at v1")
        return Ref(name, version=number)
    if _ALIAS.fullmatch(tail):
        return Ref(name, alias=tail)
    raise InvalidRefError(f"invalid ref {text!r}: use NAME, NAME@vN, NAME@N or NAME@ALIAS")
