"""The metadata DB's schema across releases (``synthreg/registry/schema.py``, Alembic).

A round-1 DB (made by the release before Alembic, commit 199cfb1: ``create_all``, no
``alembic_version``) is stamped and upgraded in place with every row kept; two processes opening one
DB at once migrate it once; a revision this synthreg does not know (a newer one wrote it) is refused
with exit 2 and the DB is left exactly as it was. Real SQLite files, a real PostgreSQL server (the
``team`` fixture) and the real round-1 code (``git archive 199cfb1``); no mocks.

``tests/golden/round1/registry.db`` is a registry DB that the round-1 release made (see the README
next to it): the always-running proof. The whole-workspace test runs the round-1 CLI itself, when
this checkout has that commit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_SPEC, Team
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from team_servers import PG_PASSWORD, Postgres

from synthreg.errors import IntegrationError, WorkspaceError
from synthreg.registry import schema
from synthreg.registry.store import AuditEvent, Version, make_engine, read_session, write_session

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden" / "round1" / "registry.db"
#: The last round-1 release: its store made the tables with create_all, before Alembic.
ROUND1 = "199cfb1"
ROUND1_TABLES = ("dataset", "version", "alias", "generationrun", "usage", "diffrecord", "auditevent")
GENESIS = "0" * 64
NEWER = "9999"

#: What the golden DB holds (the round-1 commands in its README made it).
GOLDEN_VERSIONS = [
    (1, "approved", "3a2530f31b2678a8011a0a34feae650d8242f0a2fcb886aab323b0a6d8228984", 3, "round-1 v1"),
    (2, "approved", "dc60428492dbc84673b48a67444baf01f584e52740dd22bfe42ca8cf8c4755df", 4, "round-1 v2"),
]
GOLDEN_HEAD = "ab546f56dd08dc343f91e5058582052aec5420ba9c68d27940316b7a05453b12"

#: The round-1 store makes its tables on a PostgreSQL DB (argv[1]) and appends one audit event.
ROUND1_PG_DB = """
import sys
from synthreg.registry.store import AuditEvent, make_engine, write_session
with write_session(make_engine(sys.argv[1])) as session:
    session.add(AuditEvent(actor="r1", action="init", prev_hash="0" * 64, hash="h" * 64))
"""

#: A process that opens DBs with make_engine, one URL per stdin line, in step with its siblings.
OPENER = r"""
import sys
from synthreg.registry.store import make_engine
print("ready", flush=True)
for line in sys.stdin:
    try:
        make_engine(line.strip()).dispose()
        print("ok", flush=True)
    except Exception as exc:
        print("ERR", type(exc).__name__, str(exc).replace("\n", " ")[:300], flush=True)
"""


# ----------------------------------------------------------------------------------------- helpers


def sqlite_tables(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def sqlite_rows(db: Path, columns: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Every round-1 table's rows (in rowid order), as raw SQLite values, for ``columns`` (default: all)."""
    out: dict[str, Any] = {}
    with closing(sqlite3.connect(db)) as conn:
        for table in ROUND1_TABLES:
            cols = columns[table] if columns else [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            names = ", ".join(f'"{c}"' for c in cols)
            out[table] = (cols, conn.execute(f"SELECT {names} FROM {table} ORDER BY rowid").fetchall())
    return out


def sqlite_dump(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return list(conn.iterdump())


def golden_copy(dest: Path) -> Path:
    """The round-1 DB copied to ``dest`` (never opened in place: SQLite writes next to what it opens)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(GOLDEN, dest)
    return dest


def registry(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Today's CLI in its own process (cwd: this repository, so ``-m synthreg`` is today's)."""
    return subprocess.run(
        [sys.executable, "-m", "synthreg", "-C", str(root), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def workspace_on(root: Path, db_url: str) -> Path:
    """The least a CLI command needs to open a DB: a registry.toml naming it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "registry.toml").write_text(f'[registry]\ndb_url = "{db_url}"\n')
    return root


def open_at_once(urls: list[str], processes: int = 3) -> list[str]:
    """``processes`` processes open each URL at the same moment (all started, then released together).

    Returns every answer that was not "ok"."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    failures: list[str] = []
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for url in urls:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(url + "\n")
                proc.stdin.flush()
            answers = [proc.stdout.readline().strip() for proc in procs if proc.stdout is not None]
            failures += [f"{url}: {a}" for a in answers if a != "ok"]
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
    return failures


def pg_state(url: str) -> dict[str, Any]:
    """Tables, indexes, revision rows and row counts of a PostgreSQL DB (a plain engine: no migration)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            tables = sorted(insp.get_table_names())
            state: dict[str, Any] = {
                "tables": tables,
                "indexes": {t: sorted(ix["name"] for ix in insp.get_indexes(t)) for t in tables},
                "counts": {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables},
            }
            if "alembic_version" in tables:
                state["revision"] = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            return state
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def round1_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The round-1 package, extracted from this repository's history (``git archive 199cfb1``)."""
    has_commit = shutil.which("git") is not None and (
        subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{ROUND1}^{{commit}}"], capture_output=True
        ).returncode
        == 0
    )
    if not has_commit:
        pytest.skip(
            f"this checkout has no commit {ROUND1} (round 1): the golden DB test "
            "(tests/golden/round1/registry.db) covers the upgrade"
        )
    dest = tmp_path_factory.mktemp("round1-src")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ROUND1, "synthreg"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    store = (dest / "synthreg/registry/store.py").read_text()
    assert "SQLModel.metadata.create_all" in store and "ensure_schema" not in store  # pre-Alembic
    return dest


def round1(src: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command of the round-1 release (its package first on the path; cwd holds no synthreg)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------- round 1 -> today (SQLite)


def test_golden_db_is_a_round1_db(tmp_path: Path) -> None:
    """The golden file is what round 1 wrote: its tables, no Alembic, the rows its README promises."""
    assert GOLDEN.stat().st_size < 300_000
    db = golden_copy(tmp_path / "registry.db")
    assert sqlite_tables(db) == set(ROUND1_TABLES)  # no alembic_version: round 1 had no Alembic
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # as round 1 left it
        names = conn.execute("SELECT name FROM dataset").fetchall()
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert names == [("customers",)]
    assert not any(name.startswith("ux_auditevent") for name in indexes)


def test_round1_sqlite_db_upgrades_in_place(tmp_path: Path) -> None:
    db = golden_copy(tmp_path / "registry.db")
    before = sqlite_rows(db)
    events = before["auditevent"][1]
    assert [e[3] for e in events] == ["init", "create", "create"]  # seq, at, actor, action, ...
    assert [e[7] for e in events] == [GENESIS, events[0][8], events[1][8]]  # prev_hash -> previous hash
    assert events[-1][8] == GOLDEN_HEAD

    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == [(schema.HEAD,)]
        unique = {ix["name"]: ix["unique"] for ix in inspect(engine).get_indexes("auditevent")}
        assert unique.get("ux_auditevent_hash") and unique.get("ux_auditevent_prev_hash")

        # Today's models read the round-1 rows.
        with read_session(engine) as session:
            versions = session.exec(select(Version).order_by(Version.number)).all()
            assert [(v.number, v.status, v.content_digest, v.seed, v.message) for v in versions] == (
                GOLDEN_VERSIONS
            )
            assert [v.rows for v in versions] == [{"users": 50, "orders": 100}] * 2
            assert versions[0].tags == {"origin": "round1"} and versions[1].parent == 1

        # The chain can no longer fork (r0002): a second event after the same one is refused,
        # so is a repeated hash; an event after the head is still appended.
        head_prev = events[-1][7]
        with pytest.raises(IntegrityError), write_session(engine) as session:
            session.add(AuditEvent(actor="t", action="fork", prev_hash=head_prev, hash="f" * 64))
        with pytest.raises(IntegrityError), write_session(engine) as session:
            session.add(AuditEvent(actor="t", action="fork", prev_hash="e" * 64, hash=GOLDEN_HEAD))
        with write_session(engine) as session:
            session.add(AuditEvent(actor="t", action="append", prev_hash=GOLDEN_HEAD, hash="a" * 64))

        assert schema.ensure_schema(engine) == schema.HEAD  # opening again changes nothing
    finally:
        engine.dispose()

    after = sqlite_rows(db, {table: cols for table, (cols, _) in before.items()})
    for table, (_, rows) in before.items():
        kept = after[table][1][: len(rows)] if table == "auditevent" else after[table][1]
        assert kept == rows, f"{table} changed in the upgrade"
    assert [e[3] for e in after["auditevent"][1]] == ["init", "create", "create", "append"]


def test_round1_db_opened_by_processes_at_once_is_migrated_once(tmp_path: Path) -> None:
    """Three processes open each of several round-1 DBs at the same moment: each succeeds (no
    "database is locked", no revision applied twice) and each DB ends at head, one revision row."""
    dbs = [golden_copy(tmp_path / f"r{i}" / "registry.db") for i in range(5)]
    assert open_at_once([f"sqlite:///{db}" for db in dbs]) == []
    for db in dbs:
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.HEAD,)]
        versions = sqlite_rows(db)["version"][1]
        assert [(v[2], v[3], v[4]) for v in versions] == [v[:3] for v in GOLDEN_VERSIONS]


def test_forked_round1_chain_fails_the_upgrade_and_leaves_the_db_as_it_was(tmp_path: Path) -> None:
    """A round-1 DB whose chain already forked cannot take r0002's unique index: the open fails
    naming the cause, and nothing of the migration stays (not even the stamp)."""
    db = golden_copy(tmp_path / "registry.db")
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            "INSERT INTO auditevent (at, actor, action, dataset, prev_hash, hash) "
            "VALUES ('2026-01-01 00:00:00', 'b', 'create', 'customers', ?, ?)",
            (sqlite_rows(db)["auditevent"][1][-1][7], "b" * 64),
        )
    before = sqlite_dump(db)
    with pytest.raises(IntegrationError, match=r"UNIQUE constraint failed: auditevent\.prev_hash"):
        make_engine(f"sqlite:///{db}")
    assert sqlite_dump(db) == before
    assert "alembic_version" not in sqlite_tables(db)


@pytest.mark.slow  # ~20 s: two real creates (GX, DVC, MLflow); the golden DB tests above are the fast proof
def test_round1_workspace_works_with_today_cli(round1_src: Path, tmp_path: Path, mlflow_uri: str) -> None:
    """A workspace the round-1 CLI made (init + create): today's show and create work on it."""
    spec = tmp_path / "small.yaml"
    spec.write_text(SMALL_SPEC)
    rows = ["--rows", "users=50", "--rows", "orders=100"]
    made = round1(round1_src, tmp_path, "-m", "synthreg", "init", "ws")
    assert made.returncode == 0, made.stderr
    ws = tmp_path / "ws"
    made = round1(round1_src, tmp_path, "-m", "synthreg", "-C", "ws", "create", "customers",
                  "--spec", str(spec), *rows, "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    v1 = json.loads(made.stdout)
    db = ws / ".registry" / "registry.db"
    assert "alembic_version" not in sqlite_tables(db)  # the round-1 code made it, not today's

    shown = registry(ws, "show", "customers", "--json")
    assert shown.returncode == 0, shown.stderr
    facts = json.loads(shown.stdout)
    assert (facts["version"], facts["content_digest"], facts["rows"]) == (1, v1["content_digest"], v1["rows"])

    created = registry(ws, "create", "customers", "--spec", str(spec), "--seed", "4", *rows, "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["version"] == 2
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.HEAD,)]
        assert conn.execute("SELECT number, parent FROM version ORDER BY number").fetchall() == [
            (1, None),
            (2, 1),
        ]
    verified = registry(ws, "audit", "verify")  # round 1's chain and today's event, one chain
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact: 3 events" in verified.stdout


# ------------------------------------------------------------------------ a newer schema (SQLite)


def test_newer_sqlite_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    ws = workspace_on(tmp_path / "ws", "sqlite:///.registry/registry.db")
    db = golden_copy(ws / ".registry" / "registry.db")
    make_engine(f"sqlite:///{db}").dispose()
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (NEWER,))
    before = sqlite_dump(db)

    result = registry(ws, "list")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"schema revision {NEWER}" in result.stderr and "Upgrade synthreg" in result.stderr
    assert f"sqlite:///{db}" in result.stderr  # names the DB
    assert "Traceback" not in result.stderr
    assert sqlite_dump(db) == before


# ----------------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def pg(team: Team) -> Postgres:
    """The session's PostgreSQL server (PGPASSWORD is in the environment; URLs carry no password)."""
    return team.pg


def test_fresh_pg_db_is_migrated_to_head(pg: Postgres) -> None:
    url = pg.create_db("mig")
    assert pg_state(url)["tables"] == []
    make_engine(url).dispose()
    state = pg_state(url)
    assert state["revision"] == [(schema.HEAD,)]
    assert set(ROUND1_TABLES) <= set(state["tables"])
    assert {"ux_auditevent_hash", "ux_auditevent_prev_hash"} <= set(state["indexes"]["auditevent"])
    engine = make_engine(url)
    try:
        with write_session(engine) as session:
            session.add(AuditEvent(actor="t", action="init", prev_hash=GENESIS, hash="1" * 64))
        with pytest.raises(IntegrityError), write_session(engine) as session:
            session.add(AuditEvent(actor="t", action="fork", prev_hash=GENESIS, hash="2" * 64))
    finally:
        engine.dispose()


def test_fresh_pg_db_opened_by_processes_at_once_is_migrated_once(pg: Postgres) -> None:
    urls = [pg.create_db("race") for _ in range(3)]
    assert open_at_once(urls, processes=2) == []
    for url in urls:
        state = pg_state(url)
        assert state["revision"] == [(schema.HEAD,)]  # one row, at head
        assert set(ROUND1_TABLES) <= set(state["tables"])


def test_round1_pg_db_upgrades_in_place(pg: Postgres, round1_src: Path, tmp_path: Path) -> None:
    """A PostgreSQL DB whose tables the round-1 store made, with an audit event in it."""
    url = pg.create_db("r1")
    made = round1(round1_src, tmp_path, "-c", ROUND1_PG_DB, url)
    assert made.returncode == 0, made.stderr
    assert "alembic_version" not in pg_state(url)["tables"]

    make_engine(url).dispose()
    state = pg_state(url)
    assert state["revision"] == [(schema.HEAD,)]
    assert {"ux_auditevent_hash", "ux_auditevent_prev_hash"} <= set(state["indexes"]["auditevent"])
    assert state["counts"]["auditevent"] == 1


def test_newer_pg_schema_is_refused_without_the_password(pg: Postgres, tmp_path: Path) -> None:
    url = pg.create_db("newer")
    name = url.rsplit("/", 1)[1]
    make_engine(url).dispose()
    pg.sql(f"UPDATE alembic_version SET version_num = '{NEWER}'", db=name)
    before = pg_state(url)
    assert before["revision"] == [(NEWER,)]

    result = registry(workspace_on(tmp_path / "ws", url), "list")
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"schema revision {NEWER}" in result.stderr and "Upgrade synthreg" in result.stderr
    assert f"127.0.0.1:{pg.port}/{name}" in result.stderr
    assert PG_PASSWORD not in result.stdout + result.stderr

    # A URL that carries the password (the library, not registry.toml, which refuses it): not echoed.
    with_password = url.replace("synthreg@", f"synthreg:{PG_PASSWORD}@")
    with pytest.raises(WorkspaceError) as refused:
        make_engine(with_password)
    assert refused.value.exit_code == 2 and NEWER in str(refused.value)
    assert PG_PASSWORD not in str(refused.value)
    assert pg_state(url) == before
