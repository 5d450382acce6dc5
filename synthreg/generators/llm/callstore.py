"""Call keys and the call store: the reproducibility core of the LLM stages.

A call key is the sha256 of a canonical JSON of everything that shapes an answer:
the provider-qualified model, the endpoint (api_base host and path, never a key or a
query string), the rendered messages, the sampling parameters (temperature, top_p,
max_tokens, seed), the sha256 of the response-format schema, the template
(id, version, hash) and the sample's identity (stage, plan row id, attempt kind
``gen`` | ``repair#k`` | ``judge``). The row id keeps N identical prompts from
collapsing into one answer. API keys are never part of it.

The store is an append-only SQLite table ``calls`` (UPDATE and DELETE are refused by
triggers); the first answer recorded for a key wins. A slice of it (the calls one
dataset version used) can be exported to a small SQLite file or to JSONL.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from synthreg.generators.llm.errors import (
    CallNotRecordedError,
    CallRequestError,
    ExportExistsError,
    ReadOnlyStoreError,
)
from synthreg.generators.llm.keys import is_secret_name, scrub

__all__ = [
    "KEY_VERSION",
    "CallRecord",
    "CallRequest",
    "CallStore",
    "call_key",
    "canonical_json",
    "endpoint_of",
]

#: Bumped if the canonical request layout ever changes (old keys then stop matching).
KEY_VERSION = 1
_ATTEMPT_KINDS = ("gen", "judge")
_REPAIR_PREFIX = "repair#"


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, NaN refused: the text that gets hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def endpoint_of(api_base: str | None) -> str:
    """``host[:port]/path`` of an api_base: no scheme, credentials, query or fragment."""
    if not api_base:
        return ""
    parts = urlsplit(api_base if "://" in api_base else f"http://{api_base}")
    try:
        port = parts.port
    except ValueError:
        raise CallRequestError(f"api_base {parts.netloc!r} has a bad port: fix the URL") from None
    host = (parts.hostname or "").lower()
    return f"{host}:{port}{parts.path.rstrip('/')}" if port else f"{host}{parts.path.rstrip('/')}"


def public_api_base(api_base: str | None) -> str | None:
    """``api_base`` without credentials, query or fragment: what a version may record (its
    ``endpoint_of`` is unchanged, so requests rebuilt from it have the same call keys)."""
    if not api_base:
        return api_base
    parts = urlsplit(api_base if "://" in api_base else f"http://{api_base}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}{parts.path}"


def _check_attempt(attempt: str) -> None:
    if attempt in _ATTEMPT_KINDS:
        return
    if attempt.startswith(_REPAIR_PREFIX) and attempt[len(_REPAIR_PREFIX) :].isdigit():
        return
    raise CallRequestError(f"attempt kind {attempt!r} is not gen, judge or repair#<k>: use one of those")


_RESERVED = frozenset(
    {
        "model",
        "messages",
        "api_base",
        "temperature",
        "top_p",
        "max_tokens",
        "seed",
        "response_format",
        "timeout",
        "stream",
        "n",
    }
)


def _check_extra(extra: Mapping[str, Any]) -> None:
    for name in extra:
        if name in _RESERVED or is_secret_name(name):
            raise CallRequestError(
                f"extra parameter {name!r} is not allowed: use the CallRequest field, and never pass keys"
            )


@dataclass(frozen=True)
class CallRequest:
    """One LLM call, fully rendered, plus the identity of the sample it is for.

    ``model`` is provider-qualified (``openai/gpt-4o-mini``). ``response_schema`` is a JSON
    schema for structured output (sent as ``response_format`` type ``json_schema``). The
    API key is never part of a request: backends read it from the environment.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    api_base: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    response_schema: Mapping[str, Any] | None = None
    schema_name: str = "output"
    schema_strict: bool = True
    template_id: str = ""
    template_version: str = ""
    template_hash: str = ""
    stage: str = ""
    row_id: str = ""
    attempt: str = "gen"
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Other sampling parameters passed through (``frequency_penalty``...); part of the key."""

    def __post_init__(self) -> None:
        if "/" not in self.model or self.model.startswith("/"):
            raise CallRequestError(
                f"model {self.model!r} is not provider-qualified: "
                "write it as provider/model (openai/gpt-4o-mini)"
            )
        if not self.messages:
            raise CallRequestError(
                f"the call for row {self.row_id!r} has no messages: render the template first"
            )
        _check_attempt(self.attempt)
        _check_extra(self.extra)
        object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        object.__setattr__(self, "row_id", str(self.row_id))

    def response_format(self) -> dict[str, Any] | None:
        """The OpenAI-style ``response_format`` for the schema, or None."""
        if self.response_schema is None:
            return None
        spec = {"name": self.schema_name, "schema": dict(self.response_schema), "strict": self.schema_strict}
        return {"type": "json_schema", "json_schema": spec}

    def canonical(self) -> dict[str, Any]:
        """The JSON-able request the key hashes (and the store keeps)."""
        fmt = self.response_format()
        return {
            "v": KEY_VERSION,
            "model": self.model,
            "endpoint": endpoint_of(self.api_base),
            "messages": [dict(m) for m in self.messages],
            "params": {
                "temperature": None if self.temperature is None else float(self.temperature),
                "top_p": None if self.top_p is None else float(self.top_p),
                "max_tokens": None if self.max_tokens is None else int(self.max_tokens),
                "seed": None if self.seed is None else int(self.seed),
                **{k: v for k, v in sorted(self.extra.items())},
            },
            "response_format_sha256": None if fmt is None else _sha256(canonical_json(fmt)),
            "template": {
                "id": self.template_id,
                "version": self.template_version,
                "hash": self.template_hash,
            },
            "sample": {"stage": self.stage, "row_id": self.row_id, "attempt": self.attempt},
        }

    @cached_property
    def key(self) -> str:
        """The call key (see the module docstring)."""
        return call_key(self)

    def __hash__(self) -> int:
        return hash(self.key)


def call_key(request: CallRequest) -> str:
    """sha256 (hex) of the canonical JSON of ``request``."""
    return _sha256(canonical_json(scrub(request.canonical())))


@dataclass(frozen=True)
class CallRecord:
    """One recorded answer: what the store keeps per call key."""

    key: str
    request: dict[str, Any]
    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    model_returned: str | None
    latency_ms: float
    attempts: int
    cost_usd: float
    priced: bool
    backend: str
    backend_version: str
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """The record as one JSONL line's object (the store's columns, nested)."""
        return {
            "key": self.key,
            "request": self.request,
            "response": {"content": self.content, "finish_reason": self.finish_reason},
            "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            "model_returned": self.model_returned,
            "latency_ms": self.latency_ms,
            "attempts": self.attempts,
            "cost_usd": self.cost_usd,
            "priced": self.priced,
            "backend": self.backend,
            "backend_version": self.backend_version,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallRecord:
        """The inverse of ``to_json``."""
        response, usage = data.get("response") or {}, data.get("usage") or {}
        return cls(
            key=data["key"],
            request=dict(data.get("request") or {}),
            content=response.get("content"),
            finish_reason=response.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            model_returned=data.get("model_returned"),
            latency_ms=float(data.get("latency_ms") or 0.0),
            attempts=int(data.get("attempts") or 1),
            cost_usd=float(data.get("cost_usd") or 0.0),
            priced=bool(data.get("priced")),
            backend=str(data.get("backend") or ""),
            backend_version=str(data.get("backend_version") or ""),
            created_at=str(data.get("created_at") or ""),
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key               TEXT PRIMARY KEY,
    request           TEXT NOT NULL,
    response          TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    model_returned    TEXT,
    latency_ms        REAL NOT NULL,
    attempts          INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    priced            INTEGER NOT NULL,
    backend           TEXT NOT NULL,
    backend_version   TEXT NOT NULL,
    created_at        TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS calls_no_update BEFORE UPDATE ON calls
BEGIN SELECT RAISE(ABORT, 'the call store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS calls_no_delete BEFORE DELETE ON calls
BEGIN SELECT RAISE(ABORT, 'the call store is append-only'); END;
"""
_COLUMNS = (
    "key, request, response, prompt_tokens, completion_tokens, model_returned, latency_ms, "
    "attempts, cost_usd, priced, backend, backend_version, created_at"
)

_INSERT = f"INSERT OR IGNORE INTO calls ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"


def _row(record: CallRecord) -> tuple[Any, ...]:
    response = scrub({"content": record.content, "finish_reason": record.finish_reason})
    return (
        record.key,
        canonical_json(scrub(record.request)),
        canonical_json(response),
        record.prompt_tokens,
        record.completion_tokens,
        record.model_returned,
        record.latency_ms,
        record.attempts,
        record.cost_usd,
        int(record.priced),
        record.backend,
        record.backend_version,
        record.created_at,
    )


def _record(row: Sequence[Any]) -> CallRecord:
    response = json.loads(row[2])
    return CallRecord(
        key=row[0],
        request=json.loads(row[1]),
        content=response.get("content"),
        finish_reason=response.get("finish_reason"),
        prompt_tokens=row[3],
        completion_tokens=row[4],
        model_returned=row[5],
        latency_ms=row[6],
        attempts=row[7],
        cost_usd=row[8],
        priced=bool(row[9]),
        backend=row[10],
        backend_version=row[11],
        created_at=row[12],
    )


class CallStore:
    """The append-only SQLite call store. Thread-safe (one connection behind a lock).

    WAL and ``busy_timeout`` let several processes record into one file; each insert is
    a single ``INSERT OR IGNORE`` statement, so the first answer for a key wins.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path | None, read_only: bool = False):
        self._conn = connection
        self._lock = threading.Lock()
        self.path = path
        self.read_only = read_only

    @classmethod
    def open(cls, path: str | Path, read_only: bool = False) -> CallStore:
        """Open (or create) a store file; a ``.jsonl`` export always opens read-only, in memory.

        ``read_only`` opens a SQLite file without touching it (no WAL switch, no side
        files): use it for a version's shipped call slice, whose bytes are tracked.
        """
        path = Path(path)
        if path.suffix == ".jsonl":
            return cls._from_jsonl(path)
        if read_only:
            return cls._read_only(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        return cls(conn, path)

    @classmethod
    def memory(cls) -> CallStore:
        """A store that lives only in memory (tests, dry runs)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(_SCHEMA)
        return cls(conn, None)

    @classmethod
    def _read_only(cls, path: Path) -> CallStore:
        if not path.is_file():
            raise CallNotRecordedError(f"call store {path} does not exist: check the path or export it again")
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        return cls(conn, path, read_only=True)

    @classmethod
    def _from_jsonl(cls, path: Path) -> CallStore:
        if not path.is_file():
            raise CallNotRecordedError(
                f"call export {path} does not exist: check the path or export it again"
            )
        store = cls.memory()
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    store.put(CallRecord.from_json(json.loads(line)))
        store.path, store.read_only = path, True
        return store

    def get(self, key: str) -> CallRecord | None:
        """The record for ``key``, or None."""
        with self._lock:
            row = self._conn.execute(f"SELECT {_COLUMNS} FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else _record(row)

    def put(self, record: CallRecord) -> bool:
        """Record an answer (scrubbed). False when the key was already there: the first answer wins."""
        if self.read_only:
            raise ReadOnlyStoreError(
                f"{self.path} is opened read-only (an export): record into a writable SQLite store instead"
            )
        with self._lock:
            cursor = self._conn.execute(_INSERT, _row(record))
        return cursor.rowcount == 1

    def keys(self) -> list[str]:
        """Every recorded key, in the order they were recorded."""
        with self._lock:
            return [row[0] for row in self._conn.execute("SELECT key FROM calls ORDER BY rowid")]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM calls WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    def records(self, keys: Iterable[str]) -> Iterator[CallRecord]:
        """The records of ``keys`` in that order (duplicates once); every key must exist."""
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in self]
        if missing:
            shown = ", ".join(k[:16] for k in missing[:5])
            raise CallNotRecordedError(
                f"{len(missing)} call(s) are not in the store ({shown}...): record them before exporting",
                [(k, "", "") for k in missing],
            )
        for key in wanted:
            record = self.get(key)
            if record is not None:
                yield record

    def export(self, keys: Iterable[str], path: str | Path) -> int:
        """Write the calls of ``keys`` to a new ``.jsonl`` or SQLite file; returns how many."""
        path = Path(path)
        if path.exists():
            raise ExportExistsError(f"{path} already exists: remove it or export to another path")
        records = list(self.records(keys))
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.unlink(missing_ok=True)
        if path.suffix == ".jsonl":
            lines = "".join(canonical_json(r.to_json()) + "\n" for r in records)
            tmp.write_text(lines, encoding="utf-8")
        else:
            _write_sqlite(tmp, records)
        tmp.replace(path)
        return len(records)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_sqlite(path: Path, records: list[CallRecord]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(_INSERT, [_row(r) for r in records])
        conn.execute("COMMIT")
    finally:
        conn.close()
