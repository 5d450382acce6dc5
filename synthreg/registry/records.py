"""The DB rows of a new version: Version, GenerationRun and the ``current`` alias."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

from synthreg.registry.store import Alias, Dataset, GenerationRun, Version, utcnow

if TYPE_CHECKING:
    from synthreg.registry.publish import Context

__all__ = ["insert_rows", "move_current", "set_alias"]


def insert_rows(ctx: Context, session: Session, dataset: Dataset, manifest: dict[str, Any], sha: str) -> None:
    """Version (+ GenerationRun for generated versions), and ``current`` when approved."""
    cand = ctx.cand
    assert dataset.id is not None
    version = Version(
        dataset_id=dataset.id,
        number=ctx.number,
        status=ctx.status,
        content_digest=cand.content_digest,
        spec_sha256=cand.spec.sha256(),
        seed=cand.spec.seed,
        path=ctx.rel_dir,
        rows=cand.rows,
        total_rows=sum(cand.rows.values()),
        parent=ctx.parent,
        restored_from=cand.restored_from,
        derived_from=cand.derived_from,
        created_by=ctx.actor,
        message=cand.message,
        tags=cand.tags,
        dvc_md5=manifest["dvc"]["md5"],
        git_commit=sha,
        mlflow_run_id=manifest["mlflow"]["run_id"],
        validation=cand.validation,
        quality=None
        if cand.quality is None
        else {
            "quality_score": cand.quality.get("quality_score"),
            "components": cand.quality.get("components"),
        },
    )
    session.add(version)
    session.flush()
    if cand.generation:
        _insert_run(session, version, cand.spec_text, manifest, sha)
    if ctx.status == "approved":
        set_alias(session, dataset.id, "current", ctx.number)


def _insert_run(session: Session, version: Version, prompt: str, manifest: dict[str, Any], sha: str) -> None:
    g = manifest["generation"]
    assert version.id is not None
    session.add(
        GenerationRun(
            version_id=version.id,
            prompt=g.get("prompt") or prompt,
            model=g.get("llm_model") or manifest["model"],
            seed=version.seed,
            params=manifest["params"],
            spec_sha256=version.spec_sha256,
            content_digest=version.content_digest,
            files=manifest["files"],
            started_at=dt.datetime.fromisoformat(g["started_at"]),
            ended_at=utcnow(),
            seconds=g["seconds"],
            rows_per_s=g["rows_per_s"],
            peak_rss_mb=g["peak_rss_mb"],
            user=g["user"],
            host=g["host"],
            synthreg_version=g["synthreg_version"],
            libraries=g["libraries"],
            timings=g["timings"],
            git_commit=sha,
            dvc_md5=version.dvc_md5,
            mlflow_run_id=version.mlflow_run_id,
        )
    )


def set_alias(session: Session, dataset_id: int, alias: str, number: int) -> None:
    """Point ``alias`` of a dataset at version ``number``."""
    row = session.exec(select(Alias).where(Alias.dataset_id == dataset_id, Alias.name == alias)).first()
    if row is None:
        session.add(Alias(dataset_id=dataset_id, name=alias, version=number))
    else:
        row.version, row.updated_at = number, utcnow()
        session.add(row)


def move_current(session: Session, dataset_id: int) -> int | None:
    """Point ``current`` at the newest approved version (or drop it when there is none)."""
    newest = session.exec(
        select(Version)
        .where(Version.dataset_id == dataset_id, Version.status == "approved")
        .order_by(Version.number.desc())  # type: ignore[attr-defined]
    ).first()
    row = session.exec(select(Alias).where(Alias.dataset_id == dataset_id, Alias.name == "current")).first()
    if newest is None:
        if row is not None:
            session.delete(row)
        return None
    set_alias(session, dataset_id, "current", newest.number)
    return newest.number
