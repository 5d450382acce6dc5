"""``registry create``: spec -> generated, validated, carded, tracked, logged version.

Data flow (DESIGN.md): generate into a staging dir; hash; validate; then, holding
the writer lock and a ``BEGIN IMMEDIATE`` transaction, allocate the version number,
write card and manifest, rename the directory into place, track it with DVC, log
it to MLflow, commit it to git, and insert the DB rows last. Any failure after
the rename undoes every step, so a version is either complete or absent.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

import synthreg
from synthreg import env
from synthreg.datacards.card import CardFacts, write_card
from synthreg.errors import ConflictError, ValidationFailedError
from synthreg.generators.engine import ENGINE_MODEL, GenerationResult, generate
from synthreg.generators.spec import Spec
from synthreg.integrations import dvc, git
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry.audit import append_event
from synthreg.registry.facts import file_facts, library_versions, peak_rss_mb
from synthreg.registry.policy import review_status
from synthreg.registry.records import insert_rows
from synthreg.registry.refs import check_name
from synthreg.registry.store import Dataset, Version, utcnow, write_session
from synthreg.registry.workspace import Workspace
from synthreg.validators.suite import ValidationResult, validate_tables

__all__ = ["CreateResult", "create_version"]


@dataclass(frozen=True)
class CreateResult:
    """What ``create`` registered."""

    dataset: str
    version: int
    status: str
    content_digest: str
    rows: dict[str, int]
    path: str
    mlflow_run_id: str
    validation: dict[str, Any]
    spec_sha256: str
    git_commit: str
    dvc_md5: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``create --json`` document."""
        return {
            "dataset": self.dataset,
            "version": self.version,
            "ref": f"{self.dataset}@v{self.version}",
            "status": self.status,
            "content_digest": self.content_digest,
            "rows": self.rows,
            "path": self.path,
            "mlflow_run_id": self.mlflow_run_id,
            "validation": self.validation,
            "spec_sha256": self.spec_sha256,
            "git_commit": self.git_commit,
            "dvc_md5": self.dvc_md5,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class _Staged:
    """A generated, hashed and validated version waiting in the staging dir."""

    spec: Spec
    spec_text: str
    staging: Path
    gen: GenerationResult
    files: list[dict[str, Any]]
    validation: ValidationResult
    started_at: dt.datetime
    timings: dict[str, float]


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def _stage(ws: Workspace, spec: Spec, clock: _Clock, workers: int | None) -> _Staged:
    started_at = utcnow()
    staging = ws.settings.state_dir / "staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    spec_text = spec.frozen_yaml()
    (staging / "spec.yaml").write_text(spec_text, encoding="utf-8")
    gen: GenerationResult = clock("generate", lambda: generate(spec, staging, workers=workers))
    rows_by_file = {p: t.rows for t in gen.tables.values() for p in t.files}
    files = clock("hash", lambda: file_facts(staging, rows_by_file))
    validation = clock("validate", lambda: validate_tables(spec, staging / "tables"))
    (staging / "validation.json").write_text(json.dumps(validation.to_dict(), indent=2) + "\n")
    return _Staged(spec, spec_text, staging, gen, files, validation, started_at, clock.timings)


def _validation_summary(validation: ValidationResult) -> dict[str, Any]:
    return {
        "success": validation.success,
        "evaluated": validation.evaluated,
        "failed": validation.failed,
        "engine": validation.engine,
    }


class _Undo:
    """Steps to undo, run in reverse if the commit phase fails."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def push(self, step: Callable[[], None]) -> None:
        self.steps.append(step)

    def run(self) -> None:
        for step in reversed(self.steps):
            try:
                step()
            except Exception:  # keep undoing: each step is independent
                continue


def create_version(
    ws: Workspace,
    name: str,
    spec: Spec,
    *,
    tags: dict[str, str] | None = None,
    message: str = "",
    workers: int | None = None,
) -> CreateResult:
    """Generate ``spec`` and register it as the next version of ``name``."""
    check_name(name)
    clock = _Clock()
    wall = time.perf_counter()
    staged = _stage(ws, spec, clock, workers)
    try:
        with ws.lock():
            result = _commit(ws, name, staged, tags or {}, message, clock, wall)
    finally:
        shutil.rmtree(staged.staging, ignore_errors=True)
    if result.status == "rejected":
        raise ValidationFailedError(
            f"{name}@v{result.version} failed validation ({result.validation['failed']} of "
            f"{result.validation['evaluated']} checks): it is recorded as rejected; see "
            f"{result.path}/validation.json",
            result=result,
        )
    return result


def _next_number(session: Session, dataset_id: int | None) -> tuple[int, int | None]:
    if dataset_id is None:
        return 1, None
    last = session.exec(select(func.max(Version.number)).where(Version.dataset_id == dataset_id)).one()
    return (last or 0) + 1, last


def _dataset(session: Session, name: str, spec: Spec, actor: str) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        dataset = Dataset(name=name, description=spec.description, created_by=actor)
        session.add(dataset)
        session.flush()
    return dataset


def _commit(
    ws: Workspace,
    name: str,
    staged: _Staged,
    tags: dict[str, str],
    message: str,
    clock: _Clock,
    wall: float,
) -> CreateResult:
    actor = env.actor()
    undo = _Undo()
    try:
        with write_session(ws.engine) as session:
            dataset = _dataset(session, name, staged.spec, actor)
            number, parent = _next_number(session, dataset.id)
            status = review_status(ws.settings, staged.validation.success)
            ctx = _CommitContext(ws, name, number, parent, status, staged, tags, message, actor)
            result = _publish(ctx, session, dataset, undo, clock, wall)
    except BaseException:
        undo.run()
        raise
    return result


@dataclass
class _CommitContext:
    ws: Workspace
    name: str
    number: int
    parent: int | None
    status: str
    staged: _Staged
    tags: dict[str, str]
    message: str
    actor: str

    @property
    def rel_dir(self) -> str:
        return f"data/{self.name}/v{self.number}"

    @property
    def stage_name(self) -> str:
        return f"{self.name}-v{self.number}"


def _publish(
    ctx: _CommitContext, session: Session, dataset: Dataset, undo: _Undo, clock: _Clock, wall: float
) -> CreateResult:
    root, staged = ctx.ws.root, ctx.staged
    final = root / ctx.rel_dir
    if final.exists():
        raise ConflictError(f"{final} already exists but is not in the DB: run 'registry doctor'")
    created_at = utcnow().isoformat(timespec="seconds")
    clock("card", lambda: write_card(staged.staging, _card_facts(ctx, created_at)))
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.staging.rename(final)
    undo.push(lambda: shutil.rmtree(final, ignore_errors=True))
    dvc_md5 = clock("dvc", lambda: _track(ctx, undo))
    run_id = clock("mlflow", lambda: _log_mlflow(ctx, dvc_md5, undo))
    event = append_event(
        session,
        actor=ctx.actor,
        action="create",
        dataset=ctx.name,
        version=ctx.number,
        details={"status": ctx.status, "content_digest": staged.gen.content_digest, "message": ctx.message},
    )
    manifest = _manifest(ctx, created_at, dvc_md5, run_id, event.hash, clock.timings)
    (final / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    sha = clock("git", lambda: _git_commit(ctx, event.hash, undo))
    seconds = time.perf_counter() - wall
    clock("db", lambda: insert_rows(ctx, session, dataset, manifest, sha, seconds))
    return CreateResult(
        dataset=ctx.name,
        version=ctx.number,
        status=ctx.status,
        content_digest=staged.gen.content_digest,
        rows=staged.gen.rows,
        path=ctx.rel_dir,
        mlflow_run_id=run_id,
        validation=_validation_summary(staged.validation),
        spec_sha256=staged.spec.sha256(),
        git_commit=sha,
        dvc_md5=dvc_md5,
        seconds=time.perf_counter() - wall,
        timings=dict(clock.timings),
    )


def _card_facts(ctx: _CommitContext, created_at: str) -> CardFacts:
    staged = ctx.staged
    return CardFacts(
        name=ctx.name,
        version=ctx.number,
        status=ctx.status,
        created_at=created_at,
        created_by=ctx.actor,
        spec=staged.spec,
        spec_sha256=staged.spec.sha256(),
        content_digest=staged.gen.content_digest,
        model=f"{ENGINE_MODEL}/{synthreg.__version__}",
        rows=staged.gen.rows,
        schemas={n: t.schema for n, t in staged.gen.tables.items()},
        validation=_validation_summary(staged.validation),
        params=staged.gen.params,
        parent=ctx.parent,
        files=staged.files,
        synthreg_version=synthreg.__version__,
    )


def _track(ctx: _CommitContext, undo: _Undo) -> str:
    root = ctx.ws.root
    backups = {f: (root / f).read_bytes() if (root / f).exists() else None for f in ("dvc.yaml", "dvc.lock")}

    def restore() -> None:
        for fname, content in backups.items():
            if content is None:
                (root / fname).unlink(missing_ok=True)
            else:
                (root / fname).write_bytes(content)

    undo.push(restore)
    md5 = dvc.track_stage(
        root,
        ctx.stage_name,
        cmd=f"python -m synthreg materialize {ctx.rel_dir}",
        deps=[f"{ctx.rel_dir}/spec.yaml"],
        outs=[f"{ctx.rel_dir}/tables"],
    )
    dvc.push(root, [ctx.stage_name])
    return md5


def _log_mlflow(ctx: _CommitContext, dvc_md5: str, undo: _Undo) -> str:
    staged, settings = ctx.staged, ctx.ws.settings
    gen, final = staged.gen, ctx.ws.root / ctx.rel_dir
    total = sum(gen.rows.values())
    record = mlflow_int.RunRecord(
        experiment=f"synthreg/{ctx.name}",
        run_name=f"{ctx.name}@v{ctx.number}",
        params={
            "seed": staged.spec.seed,
            "rows": json.dumps(gen.rows),
            "spec_sha256": staged.spec.sha256(),
            "generator": f"{ENGINE_MODEL}/{synthreg.__version__}",
            "dataset": ctx.name,
            "version": ctx.number,
            **{f"engine.{k}": v for k, v in gen.params.items()},
        },
        metrics={
            "rows": total,
            "generation_seconds": gen.seconds,
            "rows_per_s": total / gen.seconds if gen.seconds else 0.0,
            "validation_success_ratio": staged.validation.to_dict()["success_ratio"],
            "validation_failed": staged.validation.failed,
        },
        tags={
            "synthreg.dataset": ctx.name,
            "synthreg.version": str(ctx.number),
            "synthreg.status": ctx.status,
            "synthreg.dvc_md5": dvc_md5,
            **{f"tag.{k}": v for k, v in ctx.tags.items()},
        },
        artifacts=[
            final / "spec.yaml",
            final / "datacard.md",
            final / "datacard.json",
            final / "validation.json",
        ],
        dataset_name=f"{ctx.name}@v{ctx.number}",
        dataset_uri=final.resolve().as_uri(),
        content_digest=gen.content_digest,
        dataset_tags={"synthreg.content_digest": gen.content_digest},
    )
    run_id = mlflow_int.log_version(settings.mlflow_tracking_uri, settings.mlflow_artifact_root, record)
    undo.push(lambda: mlflow_int.delete_run(settings.mlflow_tracking_uri, run_id))
    return run_id


def _git_commit(ctx: _CommitContext, audit_head: str, undo: _Undo) -> str:
    root = ctx.ws.root
    spec_file = root / "specs" / f"{ctx.name}.yaml"
    old_spec = spec_file.read_bytes() if spec_file.exists() else None
    spec_file.parent.mkdir(exist_ok=True)
    spec_file.write_text(ctx.staged.spec_text, encoding="utf-8")

    def restore_spec() -> None:
        if old_spec is None:
            spec_file.unlink(missing_ok=True)
        else:
            spec_file.write_bytes(old_spec)

    undo.push(restore_spec)
    previous = git.head(root)
    files = [
        f"{ctx.rel_dir}/{f}"
        for f in (
            "spec.yaml",
            "manifest.json",
            "datacard.md",
            "datacard.json",
            "validation.json",
            ".gitignore",
        )
    ]
    git.add(root, [*files, "dvc.yaml", "dvc.lock", f"specs/{ctx.name}.yaml"])
    undo.push(lambda: git.reset_to(root, previous))
    msg = f"create {ctx.name}@v{ctx.number} ({ctx.status})\n\n{ctx.message}\n\naudit-head: {audit_head}\n"
    return git.commit(root, msg)


def _manifest(
    ctx: _CommitContext,
    created_at: str,
    dvc_md5: str,
    run_id: str,
    audit_head: str,
    timings: dict[str, float],
) -> dict[str, Any]:
    staged, gen = ctx.staged, ctx.staged.gen
    total = sum(gen.rows.values())
    return {
        "manifest_version": 1,
        "dataset": ctx.name,
        "version": ctx.number,
        "parent": ctx.parent,
        "status": ctx.status,
        "created_at": created_at,
        "created_by": ctx.actor,
        "message": ctx.message,
        "tags": ctx.tags,
        "description": staged.spec.description,
        "content_digest": gen.content_digest,
        "spec_sha256": staged.spec.sha256(),
        "seed": staged.spec.seed,
        "tables": {
            n: {"rows": t.rows, "digest": t.digest, "files": [p.name for p in t.files]}
            for n, t in gen.tables.items()
        },
        "files": staged.files,
        "generation": {
            "model": f"{ENGINE_MODEL}/{synthreg.__version__}",
            "prompt_sha256": staged.spec.sha256(),
            "params": {"rows": gen.rows, **gen.params},
            "started_at": staged.started_at.isoformat(),
            "seconds": gen.seconds,
            "rows_per_s": total / gen.seconds if gen.seconds else 0.0,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "user": ctx.actor,
            "host": socket.gethostname(),
            "synthreg_version": synthreg.__version__,
            "libraries": library_versions(),
            "timings": {k: round(v, 4) for k, v in timings.items()},
        },
        "validation": _validation_summary(staged.validation),
        "dvc": {"stage": ctx.stage_name, "md5": dvc_md5},
        "mlflow": {"run_id": run_id, "experiment": f"synthreg/{ctx.name}"},
        "audit_head": audit_head,
    }
