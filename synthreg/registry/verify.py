"""``registry verify REF [--rebuild]``: detect tampering with a version's files
(``registry audit verify`` is in :mod:`synthreg.registry.audit_verify`)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synthreg.digest import DIGEST_BLOCK_ROWS, TableHasher, combine_digests
from synthreg.errors import VerificationError
from synthreg.registry.checkout import missing_files, read_manifest
from synthreg.registry.llm_tables import slice_problems
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import Version, read_session
from synthreg.registry.version_files import git_problems, spec_problems
from synthreg.registry.workspace import Workspace

__all__ = ["VerifyResult", "content_digest_of", "verify_version"]


@dataclass(frozen=True)
class VerifyResult:
    """What was checked and what did not match."""

    ref: str
    ok: bool
    checked: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"ref": self.ref, "ok": self.ok, "checked": self.checked, "problems": self.problems}


def content_digest_of(tables_dir: Path) -> tuple[str, dict[str, str]]:
    """Recompute the content digest of ``tables_dir/<table>/part-*.parquet``."""
    digests = {}
    for table_dir in sorted(p for p in tables_dir.iterdir() if p.is_dir()):
        parts = sorted(table_dir.glob("part-*.parquet"))
        hasher = TableHasher(pq.read_schema(parts[0]))
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=DIGEST_BLOCK_ROWS):
                hasher.update(batch)
        digests[table_dir.name] = hasher.hexdigest()
    return combine_digests(digests), digests


def verify_version(ws: Workspace, ref: str, *, rebuild: bool = False) -> VerifyResult:
    """Every file of a version: the data files and the content digest against the manifest and the
    DB, spec.yaml against spec_sha256, the other files against git; optionally rebuild."""
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
    label = f"{dataset.name}@v{version.number}"
    vdir = ws.root / version.path
    manifest = read_manifest(vdir)
    checked: dict[str, Any] = {"files": len(manifest["files"])}
    problems = _data_problems(vdir, manifest, version, checked)
    problems += slice_problems(vdir, manifest)
    problems += spec_problems(vdir, manifest, version)
    in_git, checked["small_files"] = git_problems(ws, version)
    problems += in_git
    problems += _evaluation_problems(ws, dataset.name, version)
    if rebuild:
        checked["rebuilt_digest"] = _rebuild(vdir)
        if checked["rebuilt_digest"] != version.content_digest:
            problems.append(
                f"rebuilt from spec.yaml: digest {checked['rebuilt_digest'][:16]} != recorded "
                f"{version.content_digest[:16]}"
            )
    result = VerifyResult(label, not problems, checked, problems)
    _record(
        ws,
        "verify",
        dataset.name,
        version.number,
        {"ok": not problems, "rebuild": rebuild, "problems": problems[:5]},
    )
    if problems:
        raise VerificationError(f"{label}: " + "; ".join(problems), result=result)
    return result


def _data_problems(
    vdir: Path, manifest: dict[str, Any], version: Version, checked: dict[str, Any]
) -> list[str]:
    """The Parquet parts against their sha256 in the manifest, then the content digest."""
    problems = [
        f"file {p} is missing or does not match its sha256 in manifest.json"
        for p in missing_files(vdir, manifest, check_hashes=True)
    ]
    if manifest["content_digest"] != version.content_digest:
        problems.append(
            f"manifest digest {manifest['content_digest'][:16]} != DB digest {version.content_digest[:16]}"
        )
    if not problems:
        digest, _ = content_digest_of(vdir / "tables")
        checked["content_digest"] = digest
        if digest != version.content_digest:
            problems.append(f"content digest {digest[:16]} != recorded {version.content_digest[:16]}")
    return problems


def _evaluation_problems(ws: Workspace, dataset: str, version: Version) -> list[str]:
    from synthreg.registry.evaluate_store import evaluation_problems

    with read_session(ws.engine) as session:
        return evaluation_problems(ws, session, dataset, version)


def _record(ws: Workspace, action: str, dataset: str, version: int, details: dict[str, Any]) -> None:
    """Verification is a write too: who checked what, when, with which outcome."""
    from synthreg import env
    from synthreg.registry.events import record
    from synthreg.registry.store import write_session

    with ws.lock(), write_session(ws.engine) as session:
        record(
            ws, session, actor=env.actor(), action=action, dataset=dataset, version=version, details=details
        )


def _rebuild(vdir: Path) -> str:
    from synthreg.registry.materialize import materialize_into

    work = Path(tempfile.mkdtemp(prefix="synthreg-rebuild-"))
    try:
        return materialize_into(vdir, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
