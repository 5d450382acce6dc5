"""What validation returns: one ``CheckResult`` per check, gathered in a ``ValidationResult``.

Every check, Great Expectations' or ours, is reported in one JSON-serialisable format;
``jsonable`` turns NumPy, pandas and Arrow values into plain JSON types for it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = [
    "EXAMPLES",
    "GX_SOURCE",
    "OUR_SOURCE",
    "CheckResult",
    "ValidationResult",
    "jsonable",
    "unexpected_percent",
]

GX_SOURCE = "great_expectations"
OUR_SOURCE = "synthreg"
#: How many offending values a failed check reports (GX's BASIC result format also keeps 20).
EXAMPLES = 20


@dataclass(frozen=True)
class CheckResult:
    """One check on one table (GX's or ours), in one JSON-serialisable format."""

    table: str
    check: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed: dict[str, Any]
    source: str


@dataclass(frozen=True)
class ValidationResult:
    """Every check of every table, and whether they all passed."""

    success: bool
    evaluated: int
    failed: int
    checks: tuple[CheckResult, ...]
    seconds: float
    engine: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable summary with every check."""
        ratio = (self.evaluated - self.failed) / self.evaluated if self.evaluated else 1.0
        return {
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "success_ratio": ratio,
            "engine": self.engine,
            "seconds": self.seconds,
            "checks": [asdict(check) for check in self.checks],
        }


def unexpected_percent(unexpected: int, considered: int) -> float | None:
    """GX's ``unexpected_percent``: over the values considered (non-missing), None if there are none."""
    return 100.0 * unexpected / considered if considered > 0 else None


def jsonable(value: Any) -> Any:
    """Plain JSON types: NumPy/pandas scalars unwrapped, times as ISO strings, NaN as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [jsonable(v) for v in sorted(value, key=str)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    return _json_scalar(value)


def _json_scalar(value: Any) -> Any:
    if value is None or type(value).__name__ in ("NaTType", "NAType"):
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
