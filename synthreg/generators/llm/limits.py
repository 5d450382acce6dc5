"""Concurrency limits per endpoint+model, and the per-run budget guard."""

from __future__ import annotations

import threading

from synthreg.generators.llm.errors import CallRequestError

__all__ = ["Budget", "Limiter"]


class Limiter:
    """A semaphore whose limit can be halved (on HTTP 429), never below 1.

    The limit only goes down for the gateway's lifetime: a provider that rate-limits
    once is likely to do it again, and a fresh gateway starts from the configured value.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise CallRequestError(f"a concurrency limit must be at least 1, not {limit}: raise it")
        self._limit = limit
        self._active = 0
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        """How many calls may run at once now."""
        with self._cond:
            return self._limit

    def halve(self) -> int:
        """Halve the limit (never below 1) and return the new one."""
        with self._cond:
            self._limit = max(1, self._limit // 2)
            return self._limit

    def __enter__(self) -> Limiter:
        with self._cond:
            while self._active >= self._limit:
                self._cond.wait()
            self._active += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()


class Budget:
    """``max_calls`` / ``max_usd`` for one run, checked before every call.

    A call is one request to one route (its retries included; a fallback is another
    call). Money: a call may start while the cost recorded so far in this run plus the
    estimates of the calls still in flight is below ``max_usd``; unpriced models cost 0.
    Once a check fails the budget stays exhausted: nothing new starts, in-flight calls finish.
    """

    def __init__(self, max_calls: int | None = None, max_usd: float | None = None):
        self.max_calls = max_calls
        self.max_usd = max_usd
        self.calls = 0
        self.spent_usd = 0.0
        self._reserved = 0.0
        self._exhausted = False
        self._lock = threading.Lock()

    @property
    def exhausted(self) -> bool:
        """Whether a call was refused."""
        with self._lock:
            return self._exhausted

    def reserve(self, est_usd: float) -> bool:
        """Take one call (and its estimated cost) from the budget; False when it is exhausted."""
        with self._lock:
            over_calls = self.max_calls is not None and self.calls >= self.max_calls
            over_usd = self.max_usd is not None and self.spent_usd + self._reserved >= self.max_usd
            if self._exhausted or over_calls or over_usd:
                self._exhausted = True
                return False
            self.calls += 1
            self._reserved += est_usd
            return True

    def settle(self, est_usd: float, actual_usd: float) -> None:
        """A reserved call finished: swap its estimate for what it cost."""
        with self._lock:
            self._reserved -= est_usd
            self.spent_usd += actual_usd

    def stop(self) -> None:
        """Refuse every further call (interrupts)."""
        with self._lock:
            self._exhausted = True
