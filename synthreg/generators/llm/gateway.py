"""The gateway: runs call requests through the call store and a backend.

Modes:

- ``live``: a key already in the store is served from it (``cache_hit``); every other
  call goes to the backend and its answer is recorded.
- ``record-missing``: the same mechanics, named for resuming: after a crash, a kill or
  an exhausted budget, rerunning the same requests calls only the keys not yet recorded,
  so no call is made twice.
- ``replay-strict``: never calls. Every key must be in the store; otherwise
  ``CallNotRecordedError`` names the missing keys and their plan rows (nothing is run).

A call that fails transiently (HTTP 5xx, timeouts, connection errors) is retried with
capped exponential backoff and jitter. HTTP 429 waits the provider's ``Retry-After``
(capped by ``max_retry_after``) and halves the concurrency for that endpoint+model.
After ``retries``, the fallback routes are tried in order; a fallback's answer is
recorded under its own key and the result says which model answered. Lookups follow
the same chain, so a replay finds the fallback's answer where the primary has none.
Failed calls are not recorded: a resume tries them again.

Budget (``max_calls``, ``max_usd``): checked before each call (see ``limits.Budget``);
once exhausted no new call starts, in-flight calls finish, and ``run`` returns what
completed with ``budget_exhausted`` set. Everything recorded survives for a resume.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, overload

from synthreg.errors import UsageError
from synthreg.generators.llm.backend import Backend, Response
from synthreg.generators.llm.callstore import CallRecord, CallRequest, CallStore, canonical_json, endpoint_of
from synthreg.generators.llm.errors import BackendError, CallNotRecordedError
from synthreg.generators.llm.keys import redact
from synthreg.generators.llm.limits import Budget, Limiter
from synthreg.generators.llm.prices import estimate

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "Gateway",
    "Mode",
    "Preflight",
    "Result",
    "Route",
    "RunResult",
    "Spent",
    "estimate_tokens",
]

log = logging.getLogger(__name__)

#: Completion tokens assumed for a request without ``max_tokens`` (pre-flight and budget).
DEFAULT_COMPLETION_TOKENS = 256
_CHARS_PER_TOKEN = 4


class Mode(StrEnum):
    """How the gateway treats the call store (see the module docstring)."""

    LIVE = "live"
    RECORD_MISSING = "record-missing"
    REPLAY_STRICT = "replay-strict"


@dataclass(frozen=True)
class Route:
    """A fallback: a model, and the api_base to call it at (None: the provider's default).

    A fallback given as a plain string keeps the original request's api_base.
    """

    model: str
    api_base: str | None = None


@dataclass(frozen=True)
class Result:
    """The outcome of one call request (``error`` set when no model answered).

    ``key`` is the request's call key; ``answered_key`` the key of the record that answered
    (a fallback's key when ``fallback_used``): that is the key a version's manifest lists.
    For a cache hit, tokens, cost, latency and attempts are those recorded with the answer
    (``RunResult.spent_usd`` counts only this run's calls). ``parse_error`` reports content
    that is not JSON when a schema was given; it is never raised.
    """

    key: str
    row_id: str
    stage: str
    attempt_kind: str
    model_requested: str
    content: str | None = None
    parsed: Any = None
    parse_error: str | None = None
    finish_reason: str | None = None
    model_answered: str | None = None
    model_returned: str | None = None
    answered_key: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = False
    latency_ms: float = 0.0
    cache_hit: bool = False
    attempts: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """A model answered (the content may still fail to parse: see ``parse_error``)."""
        return self.error is None

    @property
    def fallback_used(self) -> bool:
        """The answer came from a fallback route."""
        return self.answered_key is not None and self.answered_key != self.key

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (provenance columns are built from it)."""
        return asdict(self)


@dataclass(frozen=True)
class RunResult(Sequence[Result]):
    """What ``Gateway.run`` returns: a sequence of the completed results, in request order.

    ``skipped`` are the requests not run because the budget ran out (rerun them in
    record-missing mode). ``calls`` counts backend requests made (retries included).
    """

    results: tuple[Result, ...]
    skipped: tuple[CallRequest, ...]
    budget_exhausted: bool
    mode: Mode
    calls: int
    cache_hits: int
    spent_usd: float

    @overload
    def __getitem__(self, index: int) -> Result: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Result]: ...
    def __getitem__(self, index: int | slice) -> Result | Sequence[Result]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)


@dataclass(frozen=True)
class Preflight:
    """A pre-flight estimate of the calls a run would make (keys not yet in the store).

    Tokens are estimated as ``len(text) / 4`` over the messages and the schema, and
    ``max_tokens`` (else ``DEFAULT_COMPLETION_TOKENS``) per answer; the cost uses the
    pinned price table, unpriced models counting 0 (listed in ``unpriced_models``).
    """

    calls: int
    cached: int
    est_prompt_tokens: int
    est_completion_tokens: int
    est_usd: float
    unpriced_models: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict."""
        return asdict(self)


def estimate_tokens(request: CallRequest) -> tuple[int, int]:
    """(prompt, completion) tokens of a request, estimated as described on ``Preflight``."""
    text = canonical_json([dict(m) for m in request.messages])
    fmt = request.response_format()
    if fmt is not None:
        text += canonical_json(fmt)
    completion = request.max_tokens if request.max_tokens is not None else DEFAULT_COMPLETION_TOKENS
    return math.ceil(len(text) / _CHARS_PER_TOKEN), completion


def _estimated_usd(request: CallRequest) -> float:
    prompt, completion = estimate_tokens(request)
    return estimate(request.model, prompt, completion).usd


def _parse(request: CallRequest, content: str | None) -> tuple[Any, str | None]:
    if request.response_schema is None:
        return None, None
    if not content:
        return None, "empty content: the model returned no text for a structured answer"
    try:
        return json.loads(content), None
    except json.JSONDecodeError as exc:
        return None, f"content is not valid JSON ({exc.msg} at char {exc.pos})"


@dataclass
class _RunState:
    budget: Budget
    stop: threading.Event = field(default_factory=threading.Event)
    backend_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_call(self) -> None:
        with self.lock:
            self.backend_calls += 1


class Spent(Protocol):
    """What a piece of LLM work used of a budget: a ``RunResult``, or a stage's result that
    sums several runs (labeled text, an ``llm_text`` column, a story draft)."""

    @property
    def calls(self) -> int: ...

    @property
    def spent_usd(self) -> float: ...


class Gateway:
    """Runs call requests concurrently through the store and the backend (module docstring)."""

    def __init__(
        self,
        store: CallStore,
        backend: Backend,
        mode: Mode | str = Mode.LIVE,
        max_usd: float | None = None,
        max_calls: int | None = None,
        concurrency: int = 4,
        retries: int = 3,
        fallbacks: Iterable[str | Route] = (),
        backoff_base: float = 0.5,
        backoff_cap: float = 8.0,
        max_retry_after: float = 60.0,
    ):
        self.store, self.backend = store, backend
        self.mode = _mode(mode)
        _check_limits(max_usd, max_calls, concurrency, retries)
        self.max_usd, self.max_calls = max_usd, max_calls
        self.concurrency, self.retries = concurrency, retries
        self.fallbacks: tuple[str | Route, ...] = tuple(fallbacks)
        self.backoff_base, self.backoff_cap, self.max_retry_after = backoff_base, backoff_cap, max_retry_after
        self._limiters: dict[tuple[str, str], Limiter] = {}
        self._limiters_lock = threading.Lock()
        self._jitter = random.Random()

    def chain(self, request: CallRequest) -> list[CallRequest]:
        """The request followed by one request per fallback route (each with its own key)."""
        routes = [f if isinstance(f, Route) else Route(f, request.api_base) for f in self.fallbacks]
        return [request, *(replace(request, model=r.model, api_base=r.api_base) for r in routes)]

    def rest_of_budget(self, *used: Spent) -> Gateway:
        """A copy of this gateway whose budget is what the ``used`` runs left of it.

        For work split over several ``run`` calls that shares one budget (a judge pass after
        generation, the steps of a story draft): pass each earlier run, or chain the copies.
        Backend requests count, retries included (conservative); cache hits are free. The
        copy shares the store, backend and concurrency limits; an unlimited budget stays so.
        """
        rest = copy.copy(self)
        if self.max_calls is not None:
            rest.max_calls = max(0, self.max_calls - sum(r.calls for r in used))
        if self.max_usd is not None:
            rest.max_usd = max(0.0, self.max_usd - sum(r.spent_usd for r in used))
        return rest

    def limit_for(self, model: str, api_base: str | None = None) -> int:
        """The current concurrency limit for an endpoint+model (halved by each 429)."""
        return self._limiter(model, api_base).limit

    def preflight(self, requests: Iterable[CallRequest]) -> Preflight:
        """Estimate the calls ``run`` would make for ``requests`` (see ``Preflight``)."""
        unique = {r.key: r for r in requests}
        missing = [r for r in unique.values() if self._lookup(r) is None]
        tokens = [estimate_tokens(r) for r in missing]
        costs = [estimate(r.model, *t) for r, t in zip(missing, tokens, strict=True)]
        return Preflight(
            calls=len(missing),
            cached=len(unique) - len(missing),
            est_prompt_tokens=sum(t[0] for t in tokens),
            est_completion_tokens=sum(t[1] for t in tokens),
            est_usd=round(sum(c.usd for c in costs), 6),
            unpriced_models=tuple(
                sorted({r.model for r, c in zip(missing, costs, strict=True) if not c.priced})
            ),
        )

    def run(self, requests: Iterable[CallRequest]) -> RunResult:
        """Answer ``requests`` (from the store, else the backend, per the mode)."""
        requests = list(requests)
        answers: dict[str, Result] = {}
        misses: dict[str, CallRequest] = {}
        for request in requests:
            if request.key not in answers and request.key not in misses:
                hit = self._lookup(request)
                if hit is None:
                    misses[request.key] = request
                else:
                    answers[request.key] = hit
        if self.mode is Mode.REPLAY_STRICT and misses:
            raise _not_recorded(list(misses.values()))
        state = _RunState(Budget(self.max_calls, self.max_usd))
        answers.update(self._call_all(list(misses.values()), state))
        return RunResult(
            results=tuple(answers[r.key] for r in requests if r.key in answers),
            skipped=tuple(r for r in requests if r.key not in answers),
            budget_exhausted=state.budget.exhausted,
            mode=self.mode,
            calls=state.backend_calls,
            cache_hits=sum(1 for r in requests if r.key in answers and answers[r.key].cache_hit),
            spent_usd=round(state.budget.spent_usd, 10),
        )

    def _lookup(self, request: CallRequest) -> Result | None:
        for route in self.chain(request):
            record = self.store.get(route.key)
            if record is not None:
                return _result(request, record, cache_hit=True, attempts=record.attempts)
        return None

    def _call_all(self, misses: list[CallRequest], state: _RunState) -> dict[str, Result]:
        if not misses:
            return {}
        done: dict[str, Result] = {}
        pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(misses)), thread_name_prefix="llm-call"
        )
        futures: dict[Future[Result | None], CallRequest] = {
            pool.submit(self._call_chain, request, state): request for request in misses
        }
        try:
            for future in as_completed(futures):
                result = future.result()
                if result is not None:
                    done[futures[future].key] = result
        except BaseException:
            # an interrupt or a configuration error: start nothing new, let in-flight calls record
            state.stop.set()
            state.budget.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return done

    def _call_chain(self, request: CallRequest, state: _RunState) -> Result | None:
        errors: list[str] = []
        attempts = 0
        for route in self.chain(request):
            est = _estimated_usd(route)
            if state.stop.is_set() or not state.budget.reserve(est):
                return None  # not run: a resume calls it
            response, error, tries = self._attempt(route, state)
            attempts += tries
            record = None if response is None else self._record(route, response, tries)
            state.budget.settle(est, 0.0 if record is None else record.cost_usd)
            if record is not None:
                return _result(request, record, cache_hit=False, attempts=attempts)
            errors.append(str(error))
            if self.fallbacks:
                log.warning("LLM call for row %s failed on %s: %s", request.row_id, route.model, errors[-1])
        return _failed(request, errors, attempts)

    def _attempt(self, request: CallRequest, state: _RunState) -> tuple[Response | None, BackendError, int]:
        limiter = self._limiter(request.model, request.api_base)
        error = BackendError(f"{request.model}: the run was stopped before the call")
        attempt = 0
        while attempt <= self.retries and not state.stop.is_set():
            attempt += 1
            with limiter:
                state.count_call()
                try:
                    return self.backend.complete(request), error, attempt
                except BackendError as exc:
                    error = exc
            if not error.retryable or attempt > self.retries:
                break
            delay = self._delay(error, attempt, limiter)
            log.info(
                "retrying %s in %.2fs (attempt %d of %d): %s",
                request.model,
                delay,
                attempt + 1,
                self.retries + 1,
                error,
            )
            state.stop.wait(delay)
        return None, error, attempt

    def _delay(self, error: BackendError, attempt: int, limiter: Limiter) -> float:
        if error.status == 429:
            limit = limiter.halve()
            log.warning("rate limited: concurrency for this endpoint+model is now %d", limit)
            if error.retry_after is not None:
                return min(error.retry_after, self.max_retry_after)
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        return ceiling * self._jitter.uniform(0.5, 1.0)

    def _record(self, request: CallRequest, response: Response, attempts: int) -> CallRecord:
        cost = estimate(request.model, response.prompt_tokens, response.completion_tokens)
        record = CallRecord(
            key=request.key,
            request=request.canonical(),
            content=response.content,
            finish_reason=response.finish_reason,
            prompt_tokens=response.prompt_tokens,
            completion_tokens=response.completion_tokens,
            model_returned=response.model_returned,
            latency_ms=response.latency_ms,
            attempts=attempts,
            cost_usd=cost.usd,
            priced=cost.priced,
            backend=self.backend.name,
            backend_version=self.backend.version,
        )
        if self.store.put(record):
            return record
        return self.store.get(record.key) or record  # another writer was first: its answer wins

    def _limiter(self, model: str, api_base: str | None) -> Limiter:
        slot = (endpoint_of(api_base), model)
        with self._limiters_lock:
            if slot not in self._limiters:
                self._limiters[slot] = Limiter(self.concurrency)
            return self._limiters[slot]


def _mode(mode: Mode | str) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        names = ", ".join(m.value for m in Mode)
        raise UsageError(f"unknown LLM mode {mode!r}: use one of {names}") from None


def _check_limits(max_usd: float | None, max_calls: int | None, concurrency: int, retries: int) -> None:
    if max_usd is not None and max_usd < 0:
        raise UsageError(f"max_usd must be >= 0, not {max_usd}: fix --max-usd")
    if max_calls is not None and max_calls < 0:
        raise UsageError(f"max_calls must be >= 0, not {max_calls}: fix --max-calls")
    if concurrency < 1:
        raise UsageError(f"concurrency must be at least 1, not {concurrency}: raise it")
    if retries < 0:
        raise UsageError(f"retries must be >= 0, not {retries}: use 0 for no retries")


def _result(request: CallRequest, record: CallRecord, cache_hit: bool, attempts: int) -> Result:
    parsed, parse_error = _parse(request, record.content)
    return Result(
        key=request.key,
        row_id=request.row_id,
        stage=request.stage,
        attempt_kind=request.attempt,
        model_requested=request.model,
        content=record.content,
        parsed=parsed,
        parse_error=parse_error,
        finish_reason=record.finish_reason,
        model_answered=str(record.request.get("model", request.model)),
        model_returned=record.model_returned,
        answered_key=record.key,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        cost_usd=record.cost_usd,
        priced=record.priced,
        latency_ms=record.latency_ms,
        cache_hit=cache_hit,
        attempts=attempts,
    )


def _failed(request: CallRequest, errors: list[str], attempts: int) -> Result:
    detail = " | ".join(errors) or "no route was tried"
    return Result(
        key=request.key,
        row_id=request.row_id,
        stage=request.stage,
        attempt_kind=request.attempt,
        model_requested=request.model,
        attempts=attempts,
        error=redact(f"no model answered after {attempts} attempt(s): {detail}"),
    )


def _not_recorded(missing: list[CallRequest]) -> CallNotRecordedError:
    shown = "; ".join(
        f"key {r.key} (stage {r.stage or '-'}, plan row {r.row_id or '-'})" for r in missing[:5]
    )
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    return CallNotRecordedError(
        f"replay-strict: {len(missing)} call(s) are not in the call store: {shown}{more}. "
        "Restore the version's call slice, or rerun in record-missing mode to record them",
        [(r.key, r.stage, r.row_id) for r in missing],
    )
