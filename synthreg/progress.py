"""Progress lines for whoever runs ``registry create`` as a child process (``registry serve``'s jobs).

With ``SYNTHREG_PROGRESS=1`` each stage of create and each finished segment of generation writes
one line ``synthreg-progress {"stage": ..., "rows_done": ..., "rows_total": ...}`` to stderr.
Unset, a report costs one dictionary lookup.
"""

from __future__ import annotations

import json
import os
import sys

__all__ = ["MARK", "PROGRESS", "parse", "report"]

PROGRESS = "SYNTHREG_PROGRESS"
MARK = "synthreg-progress "


def report(**fields: object) -> None:
    """One progress line on stderr, when asked for."""
    if os.environ.get(PROGRESS) == "1":
        sys.stderr.write(MARK + json.dumps(fields) + "\n")
        sys.stderr.flush()


def parse(line: str) -> dict[str, object] | None:
    """The fields of a progress line, or None for any other line."""
    if not line.startswith(MARK):
        return None
    try:
        data = json.loads(line[len(MARK) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
