"""Crash points for tests: ``SYNTHREG_KILL_AT=publish.git`` makes the process SIGKILL itself
at that step boundary, so tests can check that any crash leaves a state ``registry doctor``
repairs (never a version without its git commit and audit event). Unset, a point costs one
dictionary lookup."""

from __future__ import annotations

import os
import signal

__all__ = ["KILL_AT", "point"]

KILL_AT = "SYNTHREG_KILL_AT"


def point(name: str) -> None:
    """A step boundary named ``name``: die here, uncleanly, when ``$SYNTHREG_KILL_AT`` names it."""
    if os.environ.get(KILL_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
