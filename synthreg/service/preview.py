"""A page of a version's table, read by DuckDB from the Parquet parts (never the whole table)."""

from __future__ import annotations

from typing import Any

from synthreg.errors import NotFoundError
from synthreg.registry.api import Registry
from synthreg.registry.checkout import ensure_local, read_manifest
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import read_session

__all__ = ["page", "read_rows"]


def read_rows(parts: list[str], limit: int, offset: int = 0) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows ``offset`` .. ``offset + limit`` of Parquet files read as one table, in row order, by
    DuckDB in bounded memory (never the whole table)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = '256MB'; SET threads = 1")
        rel = con.execute("SELECT * FROM read_parquet(?) LIMIT ? OFFSET ?", [parts, limit, offset])
        columns = [d[0] for d in rel.description]
        return columns, [dict(zip(columns, r, strict=True)) for r in rel.fetchall()]
    finally:
        con.close()


def page(registry: Registry, ref: str, table: str, offset: int, limit: int) -> dict[str, Any]:
    """Rows ``offset`` .. ``offset + limit`` of ``table``, in row order, with the table's row count."""
    with read_session(registry.workspace.engine) as session:
        _, version = resolve(session, parse_ref(ref))
    vdir = registry.root / version.path
    facts = [f for f in read_manifest(vdir)["files"] if f["path"].startswith(f"tables/{table}/")]
    if not facts:
        raise NotFoundError(f"{ref} has no table {table!r}")
    ensure_local(registry.workspace, version, table)
    parts = sorted(str(vdir / f["path"]) for f in facts)
    total = sum(int(f["rows"]) for f in facts)
    columns, rows = read_rows(parts, limit, offset)
    return {"ref": ref, "table": table, "offset": offset, "limit": limit, "total": total, "columns": columns,
            "rows": rows}  # fmt: skip
