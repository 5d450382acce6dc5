"""``registry export REF --format jsonl|csv|hf [--dest DIR]``: a version in the formats training reads.

- ``jsonl``: ``<table>/part-NNNNN.jsonl``, ``SHARD_ROWS`` rows a shard, one JSON object a line;
- ``csv``: ``<table>.csv`` with a header row;
- ``hf``: a Hugging Face ``DatasetDict`` (one split per table) written by ``save_to_disk``, which
  ``datasets.load_from_disk(DIR)`` reads, with the DataCard as its ``README.md``.

Rows of a table with free text carry its tags (``tag_task_type``, ``tag_language``, ``tag_label``,
``tag_topic_cluster``; see :func:`synthreg.registry.text_monitor.row_tags`). The DataCard
(``datacard.md``, ``datacard.json``) lies alongside, and ``export.json`` lists every file with
its sha256. Everything is written into a temporary directory beside ``DIR`` and renamed into
place, so an export that fails leaves nothing; an existing, non-empty ``DIR`` is refused. Every
export is an audit event (``export``), anchored in git like any other.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthreg import env
from synthreg.errors import UsageError
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import load_spec
from synthreg.registry.checkout import ensure_local
from synthreg.registry.events import record
from synthreg.registry.facts import bytes_sha256
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import read_session, write_session
from synthreg.registry.text_monitor import TAG_COLUMNS, cache_dir_of, row_tags
from synthreg.registry.workspace import Workspace
from synthreg.validators.parts import open_parts
from synthreg.validators.semantic import text_columns

__all__ = ["FORMATS", "SHARD_ROWS", "ExportResult", "export"]

FORMATS = ("jsonl", "csv", "hf")
SHARD_ROWS = 100_000
_CARD_FILES = ("datacard.md", "datacard.json")


@dataclass(frozen=True)
class ExportResult:
    """Where an export went: the directory, its format, rows per table and the files written."""

    ref: str
    format: str
    dest: Path
    rows: dict[str, int]
    files: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ref": self.ref,
            "format": self.format,
            "dest": str(self.dest),
            "rows": self.rows,
            "files": self.files,
        }


def _tagged(spec: Spec, vdir: Path, table: str, state_dir: Path) -> pa.Table:
    parts = open_parts(vdir / "tables", table)
    data = parts.read(parts.columns)
    for i, col in enumerate(c for c in text_columns(spec) if c.table == table):
        tags = row_tags(spec, vdir, col, cache_dir_of(state_dir))
        for name in TAG_COLUMNS:
            if i and name != "tag_topic_cluster":
                continue  # task, language and label are the table's: once
            out = name if not i else f"tag_{col.column}_topic_cluster"
            if out not in data.schema.names:
                data = data.append_column(out, tags.column(name))
    return data


def _jsonl(data: pa.Table, out: Path) -> None:
    out.mkdir(parents=True)
    for shard, start in enumerate(range(0, max(data.num_rows, 1), SHARD_ROWS)):
        rows = data.slice(start, SHARD_ROWS).to_pylist()
        lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        (out / f"part-{shard:05d}.jsonl").write_text(lines, encoding="utf-8")


def _write(fmt: str, tables: dict[str, pa.Table], tmp: Path) -> None:
    if fmt == "jsonl":
        for name, data in tables.items():
            _jsonl(data, tmp / name)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        for name, data in tables.items():
            pacsv.write_csv(data, tmp / f"{name}.csv")
    else:
        import datasets

        datasets.disable_progress_bars()
        splits = {name: datasets.Dataset(data) for name, data in tables.items()}
        datasets.DatasetDict(splits).save_to_disk(str(tmp))


def _finish(tmp: Path, vdir: Path, fmt: str, label: str, rows: dict[str, int]) -> list[str]:
    """The DataCard alongside, and export.json listing every file with its sha256."""
    for name in _CARD_FILES:
        if (vdir / name).is_file():
            shutil.copyfile(vdir / name, tmp / name)
    if fmt == "hf" and (vdir / "datacard.md").is_file():
        shutil.copyfile(vdir / "datacard.md", tmp / "README.md")
    files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    manifest = {"ref": label, "format": fmt, "rows": rows, "files": {f: bytes_sha256(tmp / f) for f in files}}
    (tmp / "export.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return [*files, "export.json"]


def _check_dest(dest: Path) -> None:
    if dest.is_file() or dest.is_symlink():
        raise UsageError(f"--dest {dest} is a file: give a new or empty directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise UsageError(f"--dest {dest} is not empty: choose an empty or new directory")


def export(ws: Workspace, ref: str, fmt: str, dest: Path | None = None) -> ExportResult:
    """Write ``ref`` as ``fmt`` into ``dest`` (default ``./NAME-vN-FORMAT``) and record the event."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r} is not known: use {', '.join(FORMATS)}")
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    label = f"{dataset.name}@v{version.number}"
    target = (dest if dest is not None else Path.cwd() / f"{dataset.name}-v{version.number}-{fmt}").resolve()
    _check_dest(target)
    ensure_local(ws, version)
    vdir = ws.root / version.path
    spec = load_spec(vdir / "spec.yaml")
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp.mkdir()
    try:
        tables = {t: _tagged(spec, vdir, t, ws.settings.state_dir) for t in spec.table_order()}
        rows = {t: d.num_rows for t, d in tables.items()}
        _write(fmt, tables, tmp)
        files = _finish(tmp, vdir, fmt, label, rows)
        _check_dest(target)  # still free after the work
        if target.is_dir():
            target.rmdir()
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        details = {"format": fmt, "dest": str(target), "rows": rows, "files": len(files)}
        with ws.lock(), write_session(ws.engine) as session:
            record(
                ws, session, actor=env.actor(), action="export", dataset=dataset.name,
                version=version.number, details=details,
            )  # fmt: skip
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # an export that is not on record is not left behind
        raise
    return ExportResult(label, fmt, target, rows, files)
