"""The metadata DB's schema, managed by Alembic (``synthreg/registry/migrations``).

Opening a store checks the schema revision with one query. A fresh DB is migrated to the head;
a DB of an older release (tables, no ``alembic_version``: round 1) is stamped at the baseline
and upgraded in place; a revision this synthreg does not know was written by a newer one and is
refused. Alembic is imported only when something has to change.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from synthreg.config import redact_url
from synthreg.errors import IntegrationError, WorkspaceError, first_line

__all__ = ["BASELINE", "HEAD", "REVISIONS", "current_revision", "ensure_schema"]

#: Every revision this release knows, oldest first (the files in migrations/versions).
REVISIONS = ("0001", "0002", "0003")
BASELINE, HEAD = REVISIONS[0], REVISIONS[-1]
_MIGRATIONS = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock held while migrating (two machines may open at once).
_PG_LOCK = 0x5359_4E54


def current_revision(conn: Connection) -> str | None:
    """The DB's revision: None for an empty DB, ``BASELINE`` for a round-1 DB without Alembic."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" in tables:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        if row is not None:
            return str(row[0])
    return BASELINE if "dataset" in tables else None


def ensure_schema(engine: Engine) -> str:
    """Bring the DB to ``HEAD`` (or refuse a newer one); returns the revision it started at."""
    try:
        with engine.connect() as conn:
            found = _revision_fast(conn)
        if found == HEAD:
            return HEAD
        with engine.connect() as conn:
            # SQLite: each transaction below starts with BEGIN IMMEDIATE (store.py's hook), so that two
            # processes opening one DB at once read the revision and migrate in turn, not both at once.
            conn.info["immediate"] = True
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK})
                conn.commit()
            try:
                found = current_revision(conn)
                conn.commit()
                _check_known(found, engine)
                if found != HEAD:
                    _upgrade(conn, found)
            finally:
                conn.info.pop("immediate", None)
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK})
                    conn.commit()
        return found or "empty"
    except SQLAlchemyError as exc:
        raise backend_error(engine, exc) from exc


def backend_error(engine: Engine, exc: BaseException) -> IntegrationError:
    """A DB that does not answer or refuses: the URL (never its password) and the fix."""
    url = redact_url(engine.url.render_as_string(hide_password=True))
    from synthreg.integrations.probes import db_fix

    return IntegrationError(
        f"the metadata DB at {url} did not answer: {first_line(exc)}; {db_fix(engine.dialect.name)}"
    )


def _revision_fast(conn: Connection) -> str | None:
    """One query in the common case (the DB is at some revision already)."""
    try:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except SQLAlchemyError:
        conn.rollback()
        return current_revision(conn)
    conn.rollback()
    return str(row[0]) if row is not None else current_revision(conn)


def _check_known(found: str | None, engine: Engine) -> None:
    if found is not None and found not in REVISIONS:
        url = redact_url(engine.url.render_as_string(hide_password=True))
        raise WorkspaceError(
            f"the metadata DB at {url} has schema revision {found}, newer than this synthreg knows "
            f"(it knows up to {HEAD}): a newer synthreg wrote it. Upgrade synthreg on this machine "
            "(pip install -U synthreg); do not open it with this one"
        )


def _upgrade(conn: Connection, found: str | None) -> None:
    import logging

    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = conn
    # One transaction that alembic runs inside (it commits nothing itself): what it reads is what it
    # migrates from (SQLite's DDL is not transactional to alembic, so it would otherwise commit per
    # revision and a second process could apply the same revision in between), and a failed
    # migration rolls back, stamp included.
    with conn.begin():
        if found == BASELINE and "alembic_version" not in set(inspect(conn).get_table_names()):
            command.stamp(config, BASELINE)  # a round-1 DB: its tables are the baseline
        command.upgrade(config, "head")
