"""Errors of the LLM layer, each a subclass of a ``synthreg.errors`` branch (same exit codes).

::

    NotFoundError (4)
    └── CallNotRecordedError       replay-strict: a call key missing from the call store
    UsageError (2)
    ├── CallRequestError           a call request that is not well formed
    ├── ApiKeyMissingError         the environment variable named for an API key is unset
    └── ReadOnlyStoreError         recording into a JSONL export
    ConflictError (5)
    └── ExportExistsError          exporting a call slice over an existing file
    IntegrationError (1)
    └── BackendError               the LLM backend failed (after its own mapping of the cause)
"""

from __future__ import annotations

from synthreg.errors import ConflictError, IntegrationError, NotFoundError, UsageError

__all__ = [
    "ApiKeyMissingError",
    "BackendError",
    "CallNotRecordedError",
    "CallRequestError",
    "ExportExistsError",
    "ReadOnlyStoreError",
]


class CallNotRecordedError(NotFoundError):
    """Calls that replay-strict needs and the call store does not hold.

    ``missing`` lists ``(call_key, stage, plan_row_id)`` triples.
    """

    def __init__(self, message: str, missing: list[tuple[str, str, str]] | None = None):
        super().__init__(message)
        self.missing = missing or []


class CallRequestError(UsageError):
    """A call request that is not well formed (model not provider-qualified, bad attempt kind...)."""


class ApiKeyMissingError(UsageError):
    """The environment variable configured for an API key is not set."""


class ReadOnlyStoreError(UsageError):
    """A call store opened from a JSONL export cannot record new calls."""


class ExportExistsError(ConflictError):
    """An export target that already exists (exports are never merged into)."""


class BackendError(IntegrationError):
    """The backend failed. The message is already scrubbed of secrets.

    ``status`` is the HTTP status (None when there was no answer), ``retryable`` says whether
    the gateway may try again, ``retry_after`` is the provider's ``Retry-After`` in seconds.
    """

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
