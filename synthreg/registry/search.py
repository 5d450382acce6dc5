"""``registry search REF QUERY [--where ...]``: full-text search over a version's free text.

The first search of a version builds a SQLite FTS5 index (Porter stemming over Unicode words)
of every free-text column (:func:`synthreg.validators.semantic.text_columns`) with each row's
tags (task type, language, label, topic cluster): ``.registry/cache/search/<key>.sqlite``, the
key a hash of the version's content digest and spec, written to a temporary file and renamed
(a version never changes, so the index never goes stale). Hits are ranked by BM25.

Every hit carries its provenance: the version, table and row, and for LLM text the model, call
key, prompt hash, template and time of the call that wrote it. ``--where`` filters hits on the
table's columns and the tags (``tag_label``, ``tag_topic_cluster``, ...), with the grammar of
``registry disable --where``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthreg.errors import UsageError
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import load_spec
from synthreg.registry.checkout import ensure_local
from synthreg.registry.predicate import parse_where
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import Version, read_session
from synthreg.registry.text_monitor import TAG_COLUMNS, cache_dir_of, row_tags
from synthreg.registry.workspace import Workspace
from synthreg.validators.parts import open_parts
from synthreg.validators.semantic import TextColumn, text_columns

__all__ = ["INDEX_VERSION", "PROVENANCE_FIELDS", "search"]

#: Bumped when the index layout changes (old index files are then simply not used).
INDEX_VERSION = 1
#: The columns of an LLM row (or of its llm_text provenance) reported as a hit's provenance.
PROVENANCE_FIELDS = (
    "sample_id",
    "model_requested",
    "model_answered",
    "call_key",
    "prompt_hash",
    "template_id",
    "template_version",
    "seed",
    "temperature",
    "created_at",
)
_TERM = re.compile(r"\w+", re.UNICODE)
_TAG_TYPES = {n: pa.int64() if n == "tag_topic_cluster" else pa.string() for n in TAG_COLUMNS}
_ARROW_KINDS = {"int": pa.types.is_integer, "float": pa.types.is_floating, "bool": pa.types.is_boolean}


def _fts_query(query: str) -> str:
    terms = _TERM.findall(query)
    if not terms:
        raise UsageError(f"search query {query!r} has no word to look for: give one or more words")
    return " ".join(f'"{t}"' for t in terms)  # every word, as a plain term (no FTS syntax)


def _index_path(ws: Workspace, version: Version) -> Path:
    key = hashlib.sha256(
        f"{INDEX_VERSION}:{version.content_digest}:{version.spec_sha256}".encode()
    ).hexdigest()
    return ws.settings.state_dir / "cache" / "search" / f"{key[:32]}.sqlite"


def _fill(con: sqlite3.Connection, spec: Spec, vdir: Path, cols: list[TextColumn], cache: Path) -> None:
    con.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, tbl TEXT, col TEXT, row INTEGER)")
    con.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, task TEXT, lang TEXT, label TEXT, topic INTEGER)")
    con.execute("CREATE VIRTUAL TABLE docs USING fts5(text, tokenize = 'porter unicode61')")
    next_id = 1
    for col in cols:
        texts = open_parts(vdir / "tables", col.table).column(col.column).to_pylist()
        tags = row_tags(spec, vdir, col, cache).to_pylist()
        ids = range(next_id, next_id + len(texts))
        kept = [(i, r, t, tag) for i, r, t, tag in zip(ids, range(len(texts)), texts, tags, strict=True) if t]
        con.executemany(
            "INSERT INTO rows VALUES (?, ?, ?, ?)", [(i, col.table, col.column, r) for i, r, _, _ in kept]
        )
        con.executemany(
            "INSERT INTO tags VALUES (?, ?, ?, ?, ?)",
            [(i, *tag.values()) for i, _, _, tag in kept],
        )
        con.executemany("INSERT INTO docs (rowid, text) VALUES (?, ?)", [(i, t) for i, _, t, _ in kept])
        next_id += len(texts)


def _build(ws: Workspace, version: Version, spec: Spec, vdir: Path, cols: list[TextColumn]) -> Path:
    path = _index_path(ws, version)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".sqlite")
    os.close(fd)
    try:
        with contextlib.closing(sqlite3.connect(tmp)) as con:
            _fill(con, spec, vdir, cols, cache_dir_of(ws.settings.state_dir))
            con.commit()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _matches(path: Path, query: str) -> list[tuple[int, float, str, str, int, dict[str, Any], str]]:
    sql = (
        "SELECT d.rowid, bm25(docs), r.tbl, r.col, r.row, g.task, g.lang, g.label, g.topic, d.text "
        "FROM docs d JOIN rows r ON r.id = d.rowid JOIN tags g ON g.id = d.rowid "
        "WHERE docs MATCH ? ORDER BY bm25(docs), d.rowid"
    )
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        found = con.execute(sql, (_fts_query(query),)).fetchall()
    return [
        (
            int(i),
            -float(score),  # bm25() is lower for better matches: report higher = better
            tbl,
            col,
            int(row),
            {"tag_task_type": task, "tag_language": lang, "tag_label": label, "tag_topic_cluster": topic},
            text,
        )
        for i, score, tbl, col, row, task, lang, label, topic, text in found
    ]


def _spec_type(arrow_type: pa.DataType) -> str:
    for kind, test in _ARROW_KINDS.items():
        if test(arrow_type):
            return kind
    if pa.types.is_timestamp(arrow_type):
        return "datetime"
    if pa.types.is_date(arrow_type):
        return "date"
    return "text"


def _llm_provenance(vdir: Path, col: TextColumn, rows: list[int]) -> dict[int, dict[str, Any]]:
    path = vdir / "llm" / f"{col.table}.{col.column}.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path)
    wanted = set(rows)
    out = {}
    for record in table.to_pylist():
        if record.get("row") in wanted and record.get("ok", True):
            out[int(record["row"])] = {k: record.get(k) for k in PROVENANCE_FIELDS if k in record}
    return out


def _rows(vdir: Path, col: TextColumn, rows: list[int], tags: list[dict[str, Any]]) -> pa.Table:
    parts = open_parts(vdir / "tables", col.table)
    picked = parts.read(parts.columns).take(pa.array(rows, pa.int64()))
    for name in TAG_COLUMNS:
        picked = picked.append_column(name, pa.array([t[name] for t in tags], _TAG_TYPES[name]))
    return picked


def _where_columns(vdir: Path, col: TextColumn) -> dict[str, str]:
    schema = open_parts(vdir / "tables", col.table).schemas[0]
    return {f.name: _spec_type(f.type) for f in schema} | {n: _spec_type(t) for n, t in _TAG_TYPES.items()}


def _check_where(vdir: Path, cols: list[TextColumn], where: str) -> set[tuple[str, str]]:
    """The text columns whose table ``where`` can filter; UsageError when none."""
    usable, errors = set(), []
    for col in cols:
        try:
            parse_where(where, _where_columns(vdir, col))
            usable.add((col.table, col.column))
        except UsageError as exc:
            errors.append(exc)
    if not usable:
        raise errors[0]
    return usable


def _hit(col: TextColumn, label: str, f: Any, record: dict[str, Any], llm: dict[int, Any]) -> dict[str, Any]:
    tags = {k: record.pop(k) for k in TAG_COLUMNS}
    provenance: dict[str, Any] = {"version": label, "table": col.table, "row": f[4]}
    provenance |= {k: record.pop(k) for k in PROVENANCE_FIELDS if k in record}  # an LLM table's own
    provenance |= llm.get(f[4], {})  # an llm_text column's, from llm/<table>.<column>.parquet
    text = record.pop(col.column)
    return {
        "score": round(f[1], 6),
        "table": col.table,
        "column": col.column,
        "row": f[4],
        "text": text,
        "tags": tags,
        "values": record,
        "provenance": provenance,
    }


def _table_hits(vdir: Path, label: str, col: TextColumn, found: list[Any], where: str | None) -> list[Any]:
    rows = [f[4] for f in found]
    data = _rows(vdir, col, rows, [f[5] for f in found])
    keep = [True] * len(rows)
    if where is not None:
        keep = parse_where(where, _where_columns(vdir, col)).mask(data).to_pylist()
    llm = _llm_provenance(vdir, col, rows)
    return [_hit(col, label, f, r, llm) for f, r, ok in zip(found, data.to_pylist(), keep, strict=True) if ok]


def _grouped(found: list[Any]) -> Iterator[tuple[tuple[str, str], list[Any]]]:
    groups: dict[tuple[str, str], list[Any]] = {}
    for f in found:
        groups.setdefault((f[2], f[3]), []).append(f)
    yield from groups.items()


def search(ws: Workspace, ref: str, query: str, where: str | None = None, limit: int = 20) -> dict[str, Any]:
    """The best ``limit`` hits of ``query`` in ``ref``'s free text (see the module docstring)."""
    if limit < 1:
        raise UsageError(f"--limit {limit}: give a positive number of hits")
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    label = f"{dataset.name}@v{version.number}"
    vdir = ws.root / version.path
    spec = load_spec(vdir / "spec.yaml")
    cols = {(c.table, c.column): c for c in text_columns(spec)}
    if not cols:
        raise UsageError(
            f"{label} has no free-text column to search: search a version with text or LLM tables"
        )
    _fts_query(query)  # a query without words fails before any work
    ensure_local(ws, version)
    usable = set(cols) if where is None else _check_where(vdir, list(cols.values()), where)
    found = _matches(_build(ws, version, spec, vdir, list(cols.values())), query)
    hits: list[dict[str, Any]] = []
    for key, group in _grouped(found):
        if key in usable:
            hits += _table_hits(vdir, label, cols[key], group, where)
    hits.sort(key=lambda h: (-h["score"], h["table"], h["column"], h["row"]))
    return {"ref": label, "query": query, "where": where, "matches": len(hits), "hits": hits[:limit]}
