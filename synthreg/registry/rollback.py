"""``registry rollback NAME --to vN``: append a version whose content is vN's.

Rollback never deletes (as Delta's RESTORE): the new version's parent is the current
head, ``restored_from`` is vN, and ``current`` moves to it once it is approved. Data files
are hard-linked from vN (no copy; DVC's cache already holds the same objects).

The restored version is a new version like any other: the review policy of registry.toml
(``require_human``, ``auto_approve``) decides its status from vN's validation and quality,
with or without ``--force``. A version that failed validation is never restored (its copy
could never become current).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from synthreg.errors import ConflictError, UsageError
from synthreg.generators.spec_io import load_spec
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry.checkout import ensure_local, read_manifest
from synthreg.registry.llm_tables import carry_llm
from synthreg.registry.publish import Candidate, Clock, VersionResult, publish
from synthreg.registry.query import resolve
from synthreg.registry.refs import Ref, check_name
from synthreg.registry.review import validation_failed
from synthreg.registry.store import Alias, Version, read_session
from synthreg.registry.workspace import Workspace

__all__ = ["RollbackNoop", "rollback"]


@dataclass(frozen=True)
class RollbackNoop:
    """Rolling back to what ``current`` already is changes nothing."""

    dataset: str
    version: int
    message: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {"dataset": self.dataset, "version": self.version, "noop": True, "message": self.message}


def rollback(
    ws: Workspace, name: str, to: int, *, reason: str = "", force: bool = False
) -> VersionResult | RollbackNoop:
    """Restore version ``to`` of ``name`` as a new version."""
    check_name(name)
    with read_session(ws.engine) as session:
        dataset, target = resolve(session, Ref(name, version=to))
        current = _current(session, dataset.id)
    if current is not None and (current.number == to or current.content_digest == target.content_digest):
        return RollbackNoop(
            name,
            current.number,
            f"{name}@v{current.number} (current) already has the content of v{to}: nothing to do",
        )
    if validation_failed(target):
        raise ConflictError(_failed_refusal(name, target))
    if target.status == "rejected":
        if not force:
            raise ConflictError(
                f"refused: {name}@v{to} was rejected; to restore it anyway use --force --reason TEXT"
            )
        if not reason:
            raise UsageError("--force needs --reason TEXT: say why a rejected version is restored")
    ensure_local(ws, target)
    clock = Clock()
    staging = ws.settings.state_dir / "staging" / uuid.uuid4().hex
    try:
        cand = _candidate(ws, name, target, staging, reason, force)
        result = publish(ws, cand, clock)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    mlflow_int.set_tag(
        ws.settings.mlflow_tracking_uri, target.mlflow_run_id, "synthreg.restored_as", f"v{result.version}"
    )
    return result


def _current(session: object, dataset_id: int | None) -> Version | None:
    from sqlmodel import Session, select

    assert isinstance(session, Session)
    alias = session.exec(select(Alias).where(Alias.dataset_id == dataset_id, Alias.name == "current")).first()
    if alias is None:
        return None
    return session.exec(
        select(Version).where(Version.dataset_id == dataset_id, Version.number == alias.version)
    ).first()


def _failed_refusal(name: str, target: Version) -> str:
    label = f"{name}@v{target.number}"
    approve = (
        f"reject the newer versions (registry review --reject) so current moves back to {label}"
        if target.status == "approved"  # approved by a validation override
        else f"approve {label} itself: registry review {label} --approve --override-validation --reason TEXT"
    )
    return (
        f"refused: {label} failed validation, and a restored copy would be rejected by the review policy "
        f"(a version that failed validation never becomes current): create a fixed version, or {approve}"
    )


def _link_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:  # another filesystem: copy
                shutil.copy2(path, target)


def _candidate(
    ws: Workspace, name: str, target: Version, staging: Path, reason: str, force: bool
) -> Candidate:
    src = ws.root / target.path
    manifest = read_manifest(src)
    staging.mkdir(parents=True)
    _link_tree(src / "tables", staging / "tables")
    # the facts of vN's content come along: the review policy and the card read them
    facts = ("spec.yaml", "validation.json", "derivation.json", "quality.json", "validation.html", "pii.json")
    for extra in facts:
        if (src / extra).exists():
            shutil.copy2(src / extra, staging / extra)
    if (src / "plots").is_dir():
        shutil.copytree(src / "plots", staging / "plots")
    validation = json.loads((src / "validation.json").read_text())
    quality = json.loads((src / "quality.json").read_text()) if (src / "quality.json").is_file() else None
    llm = carry_llm(src, staging)
    return Candidate(
        name=name,
        action="rollback",
        staging=staging,
        spec=load_spec(staging / "spec.yaml"),
        spec_text=(staging / "spec.yaml").read_text(),
        content_digest=manifest["content_digest"],
        rows={t: v["rows"] for t, v in manifest["tables"].items()},
        table_digests={t: v["digest"] for t, v in manifest["tables"].items()},
        files=manifest["files"],
        validation=validation,
        model=manifest.get("model") or manifest["generation"]["model"],
        params=manifest.get("params") or {},
        status=None,  # the review policy decides, as for any new version
        quality=quality,
        message=reason or f"rollback to v{target.number}",
        restored_from=target.number,
        derivation=manifest.get("derivation"),
        llm=llm,
        details={"reason": reason, "forced": force} if force else {"reason": reason},
    )
