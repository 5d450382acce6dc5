"""The metadata store: SQLModel tables and an engine tuned for concurrent writers.

SQLite runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that "read the max version, insert the next" cannot race.
On PostgreSQL every write transaction first takes one advisory transaction lock (the same
one-writer-at-a-time order, across machines), and version numbers are allocated under
``SELECT ... FOR UPDATE`` of the dataset row; the UNIQUE constraints stay the backstop.
The schema is Alembic's (``schema.py``), not ``create_all``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Field, Session, SQLModel, create_engine

__all__ = [
    "WRITE_LOCK_KEY",
    "Alias",
    "ApiToken",
    "AuditEvent",
    "Dataset",
    "DiffRecord",
    "GenerationRun",
    "Usage",
    "Version",
    "make_engine",
    "read_session",
    "utcnow",
    "write_session",
]


def utcnow() -> dt.datetime:
    """Now, in UTC (timezone-aware, as SQLModel requires)."""
    return dt.datetime.now(dt.UTC)


def _json() -> Any:
    return Field(default=None, sa_column=Column(JSON))


class Dataset(SQLModel, table=True):
    """A named dataset; its versions are numbered from 1."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow)
    created_by: str = ""


class Version(SQLModel, table=True):
    """One immutable version of a dataset."""

    __table_args__ = (UniqueConstraint("dataset_id", "number"),)
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    number: int
    status: str  # approved | pending | rejected
    content_digest: str = Field(index=True)
    spec_sha256: str
    seed: int
    path: str  # relative to the workspace root
    rows: dict[str, int] | None = _json()
    total_rows: int = 0
    parent: int | None = None
    restored_from: int | None = None
    derived_from: int | None = None
    created_at: dt.datetime = Field(default_factory=utcnow)
    created_by: str = ""
    message: str = ""
    tags: dict[str, str] | None = _json()
    dvc_md5: str = ""
    git_commit: str = ""
    mlflow_run_id: str = ""
    validation: dict[str, Any] | None = _json()
    quality: dict[str, Any] | None = _json()


class GenerationRun(SQLModel, table=True):
    """Every fact about the run that made a version."""

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    prompt: str
    model: str
    seed: int
    params: dict[str, Any] | None = _json()
    spec_sha256: str
    content_digest: str
    files: list[dict[str, Any]] | None = _json()
    started_at: dt.datetime
    ended_at: dt.datetime
    seconds: float
    rows_per_s: float
    peak_rss_mb: float
    user: str
    host: str
    synthreg_version: str
    libraries: dict[str, str] | None = _json()
    timings: dict[str, float] | None = _json()
    git_commit: str = ""
    dvc_md5: str = ""
    mlflow_run_id: str = ""
    status: str = "ok"
    error: str = ""


class Alias(SQLModel, table=True):
    """A named pointer to a version (``current``, ``production``, ...)."""

    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="dataset.id", index=True)
    name: str
    version: int
    updated_at: dt.datetime = Field(default_factory=utcnow)


class Usage(SQLModel, table=True):
    """A version used by an MLflow run (``registry use`` / ``synthreg.log_input``)."""

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="version.id", index=True)
    run_id: str = Field(index=True)
    experiment_id: str = ""
    context: str = "training"
    at: dt.datetime = Field(default_factory=utcnow)
    actor: str = ""


class DiffRecord(SQLModel, table=True):
    """A diff already made between two versions (the JSON lives next to the report)."""

    id: int | None = Field(default=None, primary_key=True)
    dataset_a: str
    version_a: int
    dataset_b: str
    version_b: int
    path: str  # relative to the workspace: the diff's JSON
    summary: str = ""
    at: dt.datetime = Field(default_factory=utcnow)
    actor: str = ""


class ApiToken(SQLModel, table=True):
    """A token of ``registry serve``: its user, role (viewer < editor < reviewer < admin) and, when
    set, the one dataset it grants; only the token's SHA-256 is stored."""

    __table_args__ = (Index("ux_apitoken_sha256", "token_sha256", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    user: str = Field(index=True)
    role: str
    dataset: str | None = None
    token_sha256: str
    created_at: dt.datetime = Field(default_factory=utcnow)
    created_by: str = ""
    revoked_at: dt.datetime | None = None


class AuditEvent(SQLModel, table=True):
    """One write, chained to the previous event by SHA-256 (the chain cannot fork: unique prev_hash)."""

    __table_args__ = (
        Index("ux_auditevent_hash", "hash", unique=True),
        Index("ux_auditevent_prev_hash", "prev_hash", unique=True),
    )
    seq: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow)
    actor: str
    action: str
    dataset: str = ""
    version: int | None = None
    details: dict[str, Any] | None = _json()
    prev_hash: str
    hash: str


def _sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")  # first: the switch to WAL below waits for a lock too
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
            cur.execute("PRAGMA journal_mode=WAL")  # once per file: processes opening a new DB at once
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("immediate") else "BEGIN")


#: Key of the PostgreSQL advisory lock every write transaction takes first.
WRITE_LOCK_KEY = 0x5359_4E52


def make_engine(url: str) -> Engine:
    """An engine for ``url``, its schema migrated to this release's head (see ``schema.py``)."""
    from synthreg.registry.schema import ensure_schema

    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        engine = create_engine(url, connect_args={"timeout": 30})
        _sqlite_hooks(engine)
    elif url.startswith("postgresql"):
        _require_driver(url)
        engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    else:
        engine = create_engine(url)
    ensure_schema(engine)
    return engine


def _require_driver(url: str) -> None:
    import importlib.util

    from synthreg.errors import WorkspaceError

    driver = url.split("://", 1)[0].partition("+")[2] or "psycopg2"
    if importlib.util.find_spec(driver) is None:
        raise WorkspaceError(
            f"db_url {url.split('://', 1)[0]}://... needs the {driver} driver, which is not installed: "
            "pip install 'synthreg[team]' (psycopg) and use postgresql+psycopg://"
        )


@contextmanager
def _backend_errors(engine: Engine) -> Iterator[None]:
    """A DB that goes away or refuses mid-command: an error naming the URL and the fix (exit 1)."""
    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        from synthreg.registry.schema import backend_error

        raise backend_error(engine, exc) from exc


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reads."""
    with _backend_errors(engine), Session(engine, expire_on_commit=False) as session:
        yield session


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
    with _backend_errors(engine), engine.connect() as conn:
        conn.info["immediate"] = True
        try:
            with Session(bind=conn, expire_on_commit=False) as session:
                if conn.dialect.name == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                yield session
                session.commit()
        finally:
            conn.info.pop("immediate", None)
