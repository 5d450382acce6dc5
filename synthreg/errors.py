"""Errors raised by synthreg. Every message ends with what to do next.

The hierarchy, and the exit code the CLI maps each branch to::

    SynthregError                      1  generic failure
    ├── UsageError                     2  bad input the user can fix
    │   ├── SpecError                  2  a spec file that does not parse or validate
    │   ├── InvalidNameError           2  a dataset name that is not a safe identifier
    │   ├── InvalidRefError            2  a ref that does not parse
    │   ├── ConstraintError            2  a spec constraint that the data cannot meet
    │   └── WorkspaceError             2  not inside a workspace, or a broken one
    ├── ValidationFailedError          3  data failed its suite (the version is kept, rejected)
    ├── NotFoundError                  4  a dataset, version or file that does not exist
    │   └── VersionNotFoundError       4
    ├── ConflictError                  5  a state or policy conflict
    ├── VerificationError              1  files, digests or the audit chain do not check out
    └── IntegrationError               1  git, DVC or MLflow failed underneath us
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ConstraintError",
    "IntegrationError",
    "InvalidNameError",
    "InvalidRefError",
    "NotFoundError",
    "SpecError",
    "SynthregError",
    "UsageError",
    "ValidationFailedError",
    "VerificationError",
    "VersionNotFoundError",
    "WorkspaceError",
    "exit_code_for",
    "first_line",
]


class SynthregError(Exception):
    """Base class of every synthreg error."""

    exit_code = 1


class UsageError(SynthregError):
    """Bad input that the user can fix."""

    exit_code = 2


class SpecError(UsageError):
    """A spec that does not parse or validate.

    ``problems`` lists ``(path_inside_the_file, message)`` pairs.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[SpecError], tuple[str, list[tuple[str, str]]]]:
        # raised in a generation worker, it crosses the process boundary by pickling
        return (type(self), (self.source, self.problems))


class InvalidNameError(UsageError):
    """A dataset name that is not ``^[a-z][a-z0-9_-]{0,63}$``."""


class InvalidRefError(UsageError):
    """A version reference that does not parse."""


class ConstraintError(UsageError):
    """A constraint with ``action: error`` that the generated data does not meet."""


class WorkspaceError(UsageError):
    """Not inside a registry workspace, or the workspace is broken."""


class ValidationFailedError(SynthregError):
    """The data failed validation; the version is recorded as rejected."""

    exit_code = 3

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


class NotFoundError(SynthregError):
    """A dataset, version or file that does not exist."""

    exit_code = 4


class VersionNotFoundError(NotFoundError):
    """A version that does not exist (the message lists the ones that do)."""


class ConflictError(SynthregError):
    """A state or policy conflict."""

    exit_code = 5


class VerificationError(SynthregError):
    """Recomputed hashes or the audit chain do not match what was recorded."""

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


class IntegrationError(SynthregError):
    """git, DVC or MLflow failed underneath us."""


def exit_code_for(error: BaseException) -> int:
    """The CLI exit code for an error (1 for anything that is not ours)."""
    return getattr(error, "exit_code", 1) if isinstance(error, SynthregError) else 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception (of its DB-API cause when wrapped), at most 300 characters."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]
