"""A loopback OpenAI-compatible chat server for tests (stdlib only, 127.0.0.1 only).

>>> with LLMServer() as server:                                   # doctest: +SKIP
...     server.fail("429", times=2, retry_after="0")
...     litellm.completion(model="openai/test-model", api_base=server.api_base, api_key="x", ...)

Answers are derived deterministically from the request: with a ``response_format``
JSON schema the content is a schema-valid object (required strings filled with text
derived from a hash of the messages, enums with their first value, numbers with 1,
arrays with one item); without one, a short text derived from the same hash.

Scripted faults (``fail``) are consumed one per request, in the order they were added,
optionally only for one model: ``429`` (with ``Retry-After``), ``500``, ``401`` (whose
body echoes the Authorization header, like a careless provider), ``empty`` content and
``malformed`` JSON content. ``delay_ms`` delays every answer. ``answer`` (a callable
taking the request body) scripts the content of chosen answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LLMServer", "example_for_schema"]

HOST = "127.0.0.1"
FAULTS = ("429", "500", "401", "empty", "malformed")


def example_for_schema(schema: dict[str, Any], seed_text: str, path: str = "") -> Any:
    """A value valid for a (simple) JSON schema, derived from ``seed_text``."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return example_for_schema(schema[combinator][0], seed_text, path)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        names = schema.get("required", list(props))
        return {name: example_for_schema(props.get(name, {}), seed_text, f"{path}.{name}") for name in names}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), seed_text, f"{path}[0]")]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    digest = hashlib.sha256(f"{seed_text}\0{path}".encode()).hexdigest()[:12]
    return f"text-{digest}"


@dataclass
class _Fault:
    kind: str
    remaining: int
    model: str | None
    retry_after: str | None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counters
        return

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        owner = self.server.owner
        # header names are case-insensitive (HTTP/1.1, and clients differ): keep them lower-cased
        fault = owner.record(body, {k.lower(): v for k, v in self.headers.items()})
        with owner.serving():
            if owner.delay_ms:
                time.sleep(owner.delay_ms / 1000)
        if fault is not None and fault.kind in ("429", "500", "401"):
            self._send_fault(fault)
            return
        scripted = owner.answer(body) if owner.answer is not None and fault is None else None
        content = scripted if scripted is not None else _content_for(body, fault.kind if fault else None)
        self._send(200, _completion(body, content))

    def _send_fault(self, fault: _Fault) -> None:
        if fault.kind == "429":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}}, headers)
        elif fault.kind == "401":
            auth = self.headers.get("Authorization", "")
            self._send(401, {"error": {"message": f"bad credentials: {auth}", "type": "auth"}})
        else:
            self._send(500, {"error": {"message": "internal error", "type": "server_error"}})

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _content_for(body: dict[str, Any], fault: str | None) -> str:
    if fault == "empty":
        return ""
    seed_text = json.dumps([body.get("model"), body.get("messages")], sort_keys=True)
    if fault == "malformed":
        return '{"text": "unterminated'
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {})
        return json.dumps(example_for_schema(schema, seed_text))
    return "answer-" + hashlib.sha256(seed_text.encode()).hexdigest()[:16]


def _completion(body: dict[str, Any], content: str) -> dict[str, Any]:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return {
        "id": "chatcmpl-" + hashlib.sha256(content.encode()).hexdigest()[:10],
        "object": "chat.completion",
        "created": 1700000000,
        "model": f"{body.get('model')}-0001",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_chars // 4 + 1,
            "completion_tokens": len(content) // 4 + 1,
            "total_tokens": prompt_chars // 4 + len(content) // 4 + 2,
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LLMServer


class LLMServer:
    """The loopback server: start with ``with LLMServer() as s`` (or ``start``/``stop``)."""

    def __init__(self) -> None:
        self.delay_ms = 0
        #: Scripted content: called with each request body (when no fault is taken); a string it
        #: returns is sent as the answer's content, None keeps the derived answer.
        self.answer: Callable[[dict[str, Any]], str | None] | None = None
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        #: The most requests that were being answered at the same moment (concurrency, counted).
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by the OS)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() first")
        return int(self._httpd.server_address[1])

    @property
    def api_base(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what litellm takes as ``api_base``."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def count(self) -> int:
        """How many chat requests arrived (faulted ones included)."""
        with self._lock:
            return len(self.requests)

    def fail(
        self, kind: str, times: int = 1, model: str | None = None, retry_after: str | None = "0"
    ) -> None:
        """Script ``times`` faults of ``kind`` (one of FAULTS), optionally only for ``model``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: use one of {FAULTS}")
        with self._lock:
            self._faults.append(_Fault(kind, times, model, retry_after))

    def record(self, body: dict[str, Any], headers: dict[str, str]) -> _Fault | None:
        """Count a request and take the next fault scripted for its model (if any)."""
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            for fault in self._faults:
                if fault.remaining > 0 and fault.model in (None, body.get("model")):
                    fault.remaining -= 1
                    return fault
        return None

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count a request as in flight while its answer is being prepared."""
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def start(self) -> LLMServer:
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        httpd = _Server((HOST, 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the socket and join the thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd, self._thread = None, None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
