"""``registry disable REF (--ids FILE | --where EXPR) --reason TEXT``: append a derived
version without some rows, keeping referential integrity (children of disabled rows
go too). The old version stays readable; ``derivation.json`` records every step so
the derived version can be rebuilt from its frozen spec."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from synthreg.errors import SpecError, UsageError
from synthreg.generators.spec import Spec
from synthreg.generators.spec_io import apply_overrides, load_spec
from synthreg.registry.checkout import ensure_local, read_manifest
from synthreg.registry.disable import plan_removal, write_without
from synthreg.registry.facts import file_facts
from synthreg.registry.llm_tables import carry_llm
from synthreg.registry.publish import Candidate, Clock, VersionResult, publish
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import read_session
from synthreg.registry.workspace import Workspace
from synthreg.validators.suite import validate_tables

__all__ = ["disable", "read_ids"]


def read_ids(path: Path) -> list[str]:
    """Ids from a file, one per line (blank lines and # comments ignored)."""
    if not path.is_file():
        raise UsageError(f"--ids {path}: no such file; give a file with one id per line")
    ids = [line.strip() for line in path.read_text().splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if not ids:
        raise UsageError(f"--ids {path} holds no ids: one id per line")
    return ids


def _table(spec: Spec, table: str | None) -> str:
    if table is None:
        if len(spec.tables) == 1:
            return next(iter(spec.tables))
        raise UsageError(f"name the table with --table; tables: {', '.join(spec.table_order())}")
    if table not in spec.tables:
        raise UsageError(
            f"--table {table!r} is not a table of this dataset; tables: {', '.join(spec.tables)}"
        )
    return table


def disable(
    ws: Workspace,
    ref: str,
    *,
    table: str | None = None,
    ids: list[str] | None = None,
    where: str | None = None,
    reason: str = "",
) -> VersionResult:
    """Append a version of ``ref`` without the chosen rows of ``table`` (and their children)."""
    if (ids is None) == (where is None):
        raise UsageError("disable needs exactly one of --ids FILE or --where EXPR")
    if not reason:
        raise UsageError("disable needs --reason TEXT: say why these rows are disabled")
    with read_session(ws.engine) as session:
        dataset, source = resolve(session, parse_ref(ref))
    ensure_local(ws, source)
    src = ws.root / source.path
    spec = load_spec(src / "spec.yaml")
    name = _table(spec, table)
    removal = plan_removal(src, spec, name, ids=ids, where=where)
    clock = Clock()
    staging = ws.settings.state_dir / "staging" / uuid.uuid4().hex
    try:
        staging.mkdir(parents=True)
        done = clock("derive", lambda: write_without(src, staging, spec, removal))
        step = {"table": name, **({"ids": ids} if ids is not None else {"where": where}), "reason": reason}
        cand = _candidate(dataset.name, src, staging, spec, done, step, clock)
        cand.derived_from, cand.message = source.number, reason
        cand.details = {
            "reason": reason,
            "table": name,
            "removed": done.removed,
            **({"where": where} if where else {"ids": len(ids or [])}),
        }
        return publish(ws, cand, clock)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _candidate(
    name: str, src: Path, staging: Path, spec: Spec, done: Any, step: dict[str, Any], clock: Clock
) -> Candidate:
    manifest = read_manifest(src)
    previous = json.loads((src / "derivation.json").read_text()) if (src / "derivation.json").exists() else []
    steps = [*previous, step]
    (staging / "derivation.json").write_text(json.dumps(steps, indent=2) + "\n")
    spec_text = (src / "spec.yaml").read_text()
    (staging / "spec.yaml").write_text(spec_text)
    try:  # validate against the spec with the rows that are left
        checked = apply_overrides(spec, rows=dict(done.kept))
    except SpecError:
        checked = spec
    validation = clock(
        "validate", lambda: validate_tables(checked, staging / "tables", distributions=False)
    ).to_dict()
    (staging / "validation.json").write_text(json.dumps(validation, indent=2) + "\n")
    rows_by_file = {p: 0 for files in done.files.values() for p in files}
    import pyarrow.parquet as pq

    for path in rows_by_file:
        rows_by_file[path] = pq.ParquetFile(path).metadata.num_rows
    return Candidate(
        name=name,
        action="disable",
        staging=staging,
        spec=spec,
        spec_text=spec_text,
        content_digest=done.content_digest,
        rows=dict(done.kept),
        table_digests=dict(done.digests),
        files=file_facts(staging, rows_by_file),
        validation=validation,
        model=manifest.get("model") or manifest["generation"]["model"],
        params=manifest.get("params") or {},
        derivation={"steps": len(steps), "last": {k: v for k, v in step.items() if k != "ids"}},
        llm=carry_llm(src, staging),
    )
