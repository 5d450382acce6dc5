"""The DB rows of a new version: Version, GenerationRun and the ``current`` alias."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import Session, select

import synthreg
from synthreg.registry.store import Alias, Dataset, GenerationRun, Version, utcnow

if TYPE_CHECKING:
    from synthreg.registry.create import _CommitContext

__all__ = ["insert_rows", "set_alias"]


def insert_rows(
    ctx: _CommitContext,
    session: Session,
    dataset: Dataset,
    manifest: dict[str, Any],
    sha: str,
    seconds: float,
) -> None:
    staged, gen = ctx.staged, ctx.staged.gen
    assert dataset.id is not None
    version = Version(
        dataset_id=dataset.id,
        number=ctx.number,
        status=ctx.status,
        content_digest=gen.content_digest,
        spec_sha256=staged.spec.sha256(),
        seed=staged.spec.seed,
        path=ctx.rel_dir,
        rows=gen.rows,
        total_rows=sum(gen.rows.values()),
        parent=ctx.parent,
        created_by=ctx.actor,
        message=ctx.message,
        tags=ctx.tags,
        dvc_md5=manifest["dvc"]["md5"],
        git_commit=sha,
        mlflow_run_id=manifest["mlflow"]["run_id"],
        validation=staged.validation.to_dict(),
    )
    session.add(version)
    session.flush()
    g = manifest["generation"]
    assert version.id is not None
    session.add(
        GenerationRun(
            version_id=version.id,
            prompt=staged.spec_text,
            model=g["model"],
            seed=staged.spec.seed,
            params=g["params"],
            spec_sha256=version.spec_sha256,
            content_digest=gen.content_digest,
            files=staged.files,
            started_at=staged.started_at,
            ended_at=utcnow(),
            seconds=seconds,
            rows_per_s=g["rows_per_s"],
            peak_rss_mb=g["peak_rss_mb"],
            user=ctx.actor,
            host=g["host"],
            synthreg_version=synthreg.__version__,
            libraries=g["libraries"],
            timings=g["timings"],
            git_commit=sha,
            dvc_md5=version.dvc_md5,
            mlflow_run_id=version.mlflow_run_id,
        )
    )
    if ctx.status == "approved":
        set_alias(session, dataset.id, "current", ctx.number)


def set_alias(session: Session, dataset_id: int, alias: str, number: int) -> None:
    row = session.exec(select(Alias).where(Alias.dataset_id == dataset_id, Alias.name == alias)).first()
    if row is None:
        session.add(Alias(dataset_id=dataset_id, name=alias, version=number))
    else:
        row.version, row.updated_at = number, utcnow()
        session.add(row)
