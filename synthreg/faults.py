"""Crash points for tests: ``SYNTHREG_KILL_AT=publish.git`` makes the process SIGKILL itself
at that step boundary, so tests can check that any crash leaves a state ``registry doctor``
repairs (never a version without its git commit and audit event). ``SYNTHREG_PAUSE_AT=
publish.dvc:DIR`` instead waits there (writing ``DIR/reached``, until ``DIR/go`` exists, at most
120 s), so a test can stop a backend server mid-command. Unset, a point costs one dictionary
lookup."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["KILL_AT", "KILL_ONCE", "PAUSE_AT", "point"]

KILL_AT = "SYNTHREG_KILL_AT"
KILL_ONCE = "SYNTHREG_KILL_ONCE"
PAUSE_AT = "SYNTHREG_PAUSE_AT"


def point(name: str) -> None:
    """A step boundary named ``name``: die here, uncleanly, when ``$SYNTHREG_KILL_AT`` names it
    (only the first time, when ``$SYNTHREG_KILL_ONCE`` names a flag file: a retry then goes on)."""
    if os.environ.get(KILL_AT) == name:
        once = os.environ.get(KILL_ONCE)
        if once:
            try:
                with open(once, "x"):
                    pass
            except FileExistsError:
                return
        os.kill(os.getpid(), signal.SIGKILL)
    pause = os.environ.get(PAUSE_AT)
    if pause and pause.partition(":")[0] == name:
        folder = Path(pause.partition(":")[2])
        (folder / "reached").write_text(str(os.getpid()))
        deadline = time.monotonic() + 120
        while not (folder / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
