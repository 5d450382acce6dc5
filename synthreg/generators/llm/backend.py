"""Backends: what actually answers a call request.

- ``LiteLLMBackend``: any provider litellm speaks to. litellm is imported inside
  ``complete`` (its import takes seconds; ``registry --help`` must stay fast). The API
  key is read from the environment at call time and never kept, logged or raised.
- ``FakeBackend``: a deterministic answer derived from the call key. For unit tests
  only; it is never a product default.

Backends raise ``BackendError`` (scrubbed message, HTTP status, retryable flag,
Retry-After); retries, fallbacks and budgets are the gateway's job.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from synthreg.generators.llm.callstore import CallRequest, endpoint_of
from synthreg.generators.llm.errors import BackendError
from synthreg.generators.llm.keys import api_key_for, redact

__all__ = ["Backend", "FakeBackend", "LiteLLMBackend", "Response", "litellm_kwargs", "parse_retry_after"]

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_MAX_MESSAGE = 600


@dataclass(frozen=True)
class Response:
    """One answer from a backend."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model_returned: str | None
    latency_ms: float


class Backend(Protocol):
    """What the gateway needs from a backend."""

    name: str

    @property
    def version(self) -> str:
        """The backend's version, recorded with every call."""
        ...

    def complete(self, request: CallRequest) -> Response:
        """Answer one request or raise ``BackendError``."""
        ...


def litellm_kwargs(request: CallRequest, timeout_s: float) -> dict[str, Any]:
    """The keyword arguments for ``litellm.completion`` (everything but the API key)."""
    kwargs: dict[str, Any] = {
        "model": request.model,
        "messages": [dict(m) for m in request.messages],
        "timeout": timeout_s,
        "max_retries": 0,  # the gateway retries; the OpenAI client must not retry behind its back
        "drop_params": True,  # seed & co. are best effort (LLM.md); the key records what was asked
    }
    if request.api_base:
        kwargs["api_base"] = request.api_base
    for name in ("temperature", "top_p", "max_tokens", "seed"):
        value = getattr(request, name)
        if value is not None:
            kwargs[name] = value
    fmt = request.response_format()
    if fmt is not None:
        kwargs["response_format"] = fmt
    kwargs.update(request.extra)
    return kwargs


class LiteLLMBackend:
    """Calls ``litellm.completion``; ``api_key_env`` names the variable(s) holding keys.

    ``api_key_env`` is one variable name, or a mapping from model / provider / ``*`` to a
    variable name; None lets litellm read the provider's usual variable (``OPENAI_API_KEY``...).
    """

    name = "litellm"

    def __init__(self, api_key_env: str | Mapping[str, str] | None = None, timeout_s: float = 60.0):
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s

    @property
    def version(self) -> str:
        """The installed litellm version (read from package metadata, without importing it)."""
        try:
            return metadata.version("litellm")
        except metadata.PackageNotFoundError:
            return "not-installed"

    def complete(self, request: CallRequest) -> Response:
        """One ``litellm.completion`` call; failures become a scrubbed ``BackendError``."""
        import litellm

        litellm.suppress_debug_info = True
        key = api_key_for(request.model, self.api_key_env)
        start = time.perf_counter()
        failure: BackendError | None = None
        try:
            raw = litellm.completion(**litellm_kwargs(request, self.timeout_s), api_key=key)
        except Exception as exc:  # every provider error, mapped below; the original (and its key) is dropped
            failure = _backend_error(exc, request, key)
        if failure is not None:
            raise failure
        return _response(raw, (time.perf_counter() - start) * 1000)


def _response(raw: Any, latency_ms: float) -> Response:
    choice = raw.choices[0]
    usage = getattr(raw, "usage", None)
    return Response(
        content=getattr(choice.message, "content", None),
        finish_reason=getattr(choice, "finish_reason", None),
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        model_returned=getattr(raw, "model", None),
        latency_ms=round(latency_ms, 3),
    )


def _backend_error(exc: Exception, request: CallRequest, key: str | None) -> BackendError:
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    name = type(exc).__name__
    transient = any(word in name for word in ("Timeout", "Connection", "ServiceUnavailable"))
    retryable = (status in _RETRYABLE_STATUS) or (status is not None and status >= 500) or transient
    where = endpoint_of(request.api_base) or "the provider's default endpoint"
    detail = redact(f"{name}: {exc}", [key] if key else [])[:_MAX_MESSAGE]
    http = f"HTTP {status}" if status is not None else "no answer"
    message = f"{request.model} at {where} failed ({http}): {detail}"
    return BackendError(message, status=status, retryable=retryable, retry_after=_retry_after(exc))


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    for source in (getattr(exc, "litellm_response_headers", None), getattr(response, "headers", None)):
        if not source:
            continue
        try:
            millis = source.get("retry-after-ms")
            if millis is not None:
                return max(0.0, float(millis) / 1000)
            value = source.get("retry-after")
        except (AttributeError, TypeError, ValueError):
            continue
        if value is not None:
            return parse_retry_after(str(value))
    return None


def parse_retry_after(value: str) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class FakeBackend:
    """Deterministic answers derived from the call key. Unit tests only, never a product default.

    With a response schema the content is a schema-valid JSON object (required strings
    from the key's hash, enums' first value, numbers 1, arrays of one item); without
    one, ``fake-<key prefix>``. Token counts are ``len(text) // 4 + 1``.
    """

    name = "fake"
    version = "1"

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def complete(self, request: CallRequest) -> Response:
        """The fake answer for ``request``."""
        with self._lock:
            self.calls += 1
        key = request.key
        if request.response_schema is not None:
            content = json.dumps(_example(dict(request.response_schema), key, ""), sort_keys=True)
        else:
            content = f"fake-{key[:16]}"
        prompt = sum(len(str(m.get("content", ""))) for m in request.messages)
        return Response(content, "stop", prompt // 4 + 1, len(content) // 4 + 1, f"fake:{request.model}", 0.0)


def _example(schema: dict[str, Any], seed: str, path: str) -> Any:
    """A value valid for a simple JSON schema, derived from ``seed``."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return _example(schema[combinator][0], seed, path)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            n: _example(props.get(n, {}), seed, f"{path}.{n}") for n in schema.get("required", list(props))
        }
    if kind == "array":
        return [_example(schema.get("items", {}), seed, f"{path}[0]")]
    simple = {"integer": 1, "number": 1, "boolean": True, "null": None}
    if kind in simple:
        return simple[kind]
    return "text-" + hashlib.sha256(f"{seed}\0{path}".encode()).hexdigest()[:12]
