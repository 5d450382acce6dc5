"""Append a version: the commit phase shared by create, rollback and disable.

A :class:`Candidate` is a complete version waiting in a staging directory. Holding
the writer lock and a ``BEGIN IMMEDIATE`` transaction, :func:`publish` allocates the
version number, writes the card and manifest, renames the directory into place,
tracks it with DVC (and pushes), logs it to MLflow, commits it to git and inserts
the DB rows last. Any failure undoes every earlier step: a version is complete or
absent.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

import synthreg
from synthreg import env, faults
from synthreg.datacards.card import CardFacts, write_card
from synthreg.errors import ConflictError
from synthreg.generators.spec import Spec
from synthreg.integrations import dvc, git
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry.audit import anchor_lines, append_event, log_size, truncate_log
from synthreg.registry.cards import dir_facts
from synthreg.registry.facts import library_versions, peak_rss_mb
from synthreg.registry.policy import review_status
from synthreg.registry.records import insert_rows
from synthreg.registry.store import AuditEvent, Dataset, Version, utcnow, write_session
from synthreg.registry.workspace import Workspace

__all__ = ["Candidate", "Clock", "Undo", "VersionResult", "publish"]


@dataclass(frozen=True)
class VersionResult:
    """What a write that appended a version registered."""

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
    parent: int | None = None
    restored_from: int | None = None
    derived_from: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
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
            "parent": self.parent,
            "restored_from": self.restored_from,
            "derived_from": self.derived_from,
            "details": self.details,
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Clock:
    """Wall time per named step."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.started = time.perf_counter()

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        from synthreg import progress

        progress.report(stage=name)
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


class Undo:
    """Steps to undo, run in reverse if the commit phase fails."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], None]] = []

    def push(self, step: Callable[[], None]) -> None:
        """Remember how to undo the step just done."""
        self.steps.append(step)

    def run(self) -> None:
        """Undo everything, newest first; one failing step does not stop the others."""
        for step in reversed(self.steps):
            try:
                step()
            except Exception:
                continue


@dataclass
class Candidate:
    """A complete version in a staging directory, waiting for a number."""

    name: str
    action: str  # create | rollback | disable
    staging: Path
    spec: Spec
    spec_text: str
    content_digest: str
    rows: dict[str, int]
    table_digests: dict[str, str]
    files: list[dict[str, Any]]
    validation: dict[str, Any]  # ValidationResult.to_dict()
    model: str
    params: dict[str, Any]
    status: str | None = None  # None: decided by the review policy from the validation
    tags: dict[str, str] = field(default_factory=dict)
    message: str = ""
    restored_from: int | None = None
    derived_from: int | None = None
    derivation: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None  # facts of a generation run (create only)
    llm: dict[str, Any] | None = None  # replay facts carried from the source version (rollback, disable)
    quality: dict[str, Any] | None = None  # quality metrics (quality.json), when measured
    details: dict[str, Any] = field(default_factory=dict)
    sidecar: Any = None  # create's helper process (registry.sidecar), which logs the MLflow run
    #: md5 the engine's workers took of data files, by path relative to the version dir:
    #: (md5, size, mtime_ns); DVC takes them instead of reading the files again (facts.known_md5)
    md5: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    @property
    def validation_summary(self) -> dict[str, Any]:
        """success, evaluated, failed, engine."""
        return {k: self.validation.get(k) for k in ("success", "evaluated", "failed", "engine")}


@dataclass
class Context:
    """One publish in progress."""

    ws: Workspace
    cand: Candidate
    number: int
    parent: int | None
    status: str
    actor: str
    clock: Clock
    undo: Undo = field(default_factory=Undo)
    card: CardFacts | None = None  # what the DataCard was rendered from (the MLflow run reuses it)

    @property
    def rel_dir(self) -> str:
        """``data/NAME/vN``."""
        return f"data/{self.cand.name}/v{self.number}"

    @property
    def stage_name(self) -> str:
        """The DVC stage of the version."""
        return f"{self.cand.name}-v{self.number}"

    @property
    def dvc_file(self) -> str:
        """The version's own DVC pipeline file (its lock file is beside it)."""
        return dvc.stage_file(self.rel_dir)


def publish(ws: Workspace, cand: Candidate, clock: Clock) -> VersionResult:
    """Append ``cand`` as the next version of its dataset."""
    with ws.lock():
        undo = Undo()
        try:
            with write_session(ws.engine) as session:
                dataset = _dataset(session, cand)
                number, parent = _next_number(session, dataset.id)
                passed = bool(cand.validation.get("success"))
                status = cand.status or review_status(ws.settings, passed, _policy_facts(cand))
                ctx = Context(ws, cand, number, parent, status, env.actor(), clock, undo)
                result = _steps(ctx, session, dataset)
        except BaseException:
            undo.run()
            raise
        faults.point("publish.committed")
        return result


def _policy_facts(cand: Candidate) -> dict[str, Any]:
    """The facts a review rule may use (registry.toml [review] auto_approve)."""
    return {
        "success_ratio": cand.validation.get("success_ratio"),
        "failed_checks": cand.validation.get("failed"),
        "rows": sum(cand.rows.values()),
        "quality_score": (cand.quality or {}).get("quality_score"),
    }


def _dataset(session: Session, cand: Candidate) -> Dataset:
    dataset = session.exec(select(Dataset).where(Dataset.name == cand.name)).first()
    if dataset is None:
        dataset = Dataset(name=cand.name, description=cand.spec.description, created_by=env.actor())
        session.add(dataset)
        session.flush()
    return dataset


def _next_number(session: Session, dataset_id: int | None) -> tuple[int, int | None]:
    # Lock the dataset's row while the next number is read and inserted (PostgreSQL; SQLite's
    # BEGIN IMMEDIATE already holds the whole DB). UNIQUE(dataset_id, number) is the backstop.
    session.exec(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update()).first()
    last = session.exec(select(func.max(Version.number)).where(Version.dataset_id == dataset_id)).one()
    return (last or 0) + 1, last


def _steps(ctx: Context, session: Session, dataset: Dataset) -> VersionResult:
    root, cand, clock = ctx.ws.root, ctx.cand, ctx.clock
    final = root / ctx.rel_dir
    if final.exists():
        raise ConflictError(f"{final} already exists but is not in the DB: run 'registry doctor --repair'")
    created_at = utcnow().isoformat(timespec="seconds")
    ctx.card = clock("card", lambda: _write_card(ctx, created_at))
    final.parent.mkdir(parents=True, exist_ok=True)
    faults.point("publish.card")
    cand.staging.rename(final)
    ctx.undo.push(lambda: shutil.rmtree(final, ignore_errors=True))
    faults.point("publish.rename")
    dvc_md5 = clock("dvc", lambda: _track(ctx))
    # The run is logged (by create's helper process, when there is one) while DVC pushes: the
    # run only needs the stage's md5, and the undo below deletes it whichever of the two fails.
    run_id_when_done = _start_mlflow(ctx, dvc_md5)
    clock("dvc.push", lambda: dvc.push(root, [dvc.target({"file": ctx.dvc_file, "stage": ctx.stage_name})]))
    faults.point("publish.dvc")
    run_id = clock("mlflow", run_id_when_done)
    faults.point("publish.mlflow")
    details = {
        "status": ctx.status,
        "content_digest": cand.content_digest,
        "message": cand.message,
        **({"restored_from": cand.restored_from} if cand.restored_from else {}),
        **({"derived_from": cand.derived_from} if cand.derived_from else {}),
        **cand.details,
    }
    size = log_size(root)
    ctx.undo.push(lambda: truncate_log(root, size))
    event = append_event(
        session,
        root=root,
        actor=ctx.actor,
        action=cand.action,
        dataset=cand.name,
        version=ctx.number,
        details=details,
    )
    faults.point("publish.event")
    manifest = build_manifest(ctx, created_at, dvc_md5, run_id, event.hash)
    (final / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    faults.point("publish.manifest")
    sha = clock("git", lambda: _git_commit(ctx, event))
    faults.point("publish.git")
    clock("db", lambda: insert_rows(ctx, session, dataset, manifest, sha))
    faults.point("publish.db")
    return VersionResult(
        dataset=cand.name,
        version=ctx.number,
        status=ctx.status,
        content_digest=cand.content_digest,
        rows=cand.rows,
        path=ctx.rel_dir,
        mlflow_run_id=run_id,
        validation=cand.validation_summary,
        spec_sha256=cand.spec.sha256(),
        git_commit=sha,
        dvc_md5=dvc_md5,
        seconds=time.perf_counter() - clock.started,
        timings=dict(clock.timings),
        parent=ctx.parent,
        restored_from=cand.restored_from,
        derived_from=cand.derived_from,
        details=cand.details,
    )


def _write_card(ctx: Context, created_at: str) -> CardFacts:
    facts = card_facts(ctx, created_at)
    write_card(ctx.cand.staging, facts)
    return facts


def card_facts(ctx: Context, created_at: str) -> CardFacts:
    """The facts the DataCard is rendered from."""
    import pyarrow.parquet as pq

    cand = ctx.cand
    schemas = {
        t: pq.read_schema(next((cand.staging / "tables" / t).glob("part-*.parquet"))) for t in cand.rows
    }
    return CardFacts(
        name=cand.name,
        version=ctx.number,
        status=ctx.status,
        created_at=created_at,
        created_by=ctx.actor,
        spec=cand.spec,
        spec_sha256=cand.spec.sha256(),
        content_digest=cand.content_digest,
        model=cand.model,
        rows=cand.rows,
        schemas=schemas,
        validation=cand.validation_summary,
        params=cand.params,
        parent=ctx.parent,
        files=cand.files,
        synthreg_version=synthreg.__version__,
        origin={
            k: v for k, v in (("restored_from", cand.restored_from), ("derived_from", cand.derived_from)) if v
        },
        **dir_facts(cand.staging),  # quality.json, plots/, pii.json written by the stage
    )


def _track(ctx: Context) -> str:
    """The version's DVC stage, in its own ``dvc.yaml`` inside the version's folder (so the undo
    that removes the folder removes it too), its outputs committed to the DVC cache."""
    root = ctx.ws.root
    deps = [f"{ctx.rel_dir}/spec.yaml"]
    for extra in ("derivation.json", "llm_calls.jsonl"):  # what materialize reads besides the spec
        if (root / ctx.rel_dir / extra).is_file():
            deps.append(f"{ctx.rel_dir}/{extra}")
    md5 = dvc.track_stage(
        root,
        ctx.dvc_file,
        ctx.stage_name,
        cmd=f"python -m synthreg materialize {ctx.rel_dir}",
        deps=deps,
        outs=[f"{ctx.rel_dir}/tables"],
        known_md5={root / ctx.rel_dir / rel: known for rel, known in ctx.cand.md5.items()},
    )
    return md5


def _start_mlflow(ctx: Context, dvc_md5: str) -> Callable[[], str]:
    """Start logging the version's run; the returned call gives its id. The undo that deletes the
    run is registered now: if a later step fails first, it waits for the run and deletes it."""
    settings = ctx.ws.settings
    uri = settings.mlflow_tracking_uri
    record = _run_record(ctx, dvc_md5)
    made_by_helper: Callable[[], str | None] = lambda: None  # noqa: E731
    if ctx.cand.sidecar is not None:
        waiting, made_by_helper = ctx.cand.sidecar.start_log_version(
            uri, settings.mlflow_artifact_root, record
        )
    else:  # in this process, when asked: nothing runs beside DVC
        waiting = functools.partial(mlflow_int.log_version, uri, settings.mlflow_artifact_root, record)
    done: list[str] = []

    def run_id() -> str:
        if not done:
            done.append(waiting())
        return done[0]

    def delete() -> None:
        """The run, if one was made: never logs one just to delete it, whatever interrupted."""
        try:
            made = done[0] if done else made_by_helper()
        except BaseException:
            return
        if made:
            with contextlib.suppress(Exception):
                mlflow_int.delete_run(uri, made)

    ctx.undo.push(delete)
    return run_id


def _run_record(ctx: Context, dvc_md5: str) -> mlflow_int.RunRecord:
    cand = ctx.cand
    final = ctx.ws.root / ctx.rel_dir
    total = sum(cand.rows.values())
    gen = cand.generation or {}
    llm = (ctx.card.llm if ctx.card else None) or {}  # the slice was read once, for the card
    lineage = {"synthreg.restored_from": cand.restored_from, "synthreg.derived_from": cand.derived_from}
    return mlflow_int.RunRecord(
        experiment=f"synthreg/{cand.name}",
        run_name=f"{cand.name}@v{ctx.number}",
        params={
            "seed": cand.spec.seed,
            "rows": json.dumps(cand.rows),
            "spec_sha256": cand.spec.sha256(),
            "generator": cand.model,
            "dataset": cand.name,
            "version": ctx.number,
            "action": cand.action,
            **{f"engine.{k}": v for k, v in cand.params.items() if not isinstance(v, dict)},
        },
        metrics={
            "rows": total,
            "generation_seconds": float(gen.get("seconds", 0.0)),
            "rows_per_s": float(gen.get("rows_per_s", 0.0)),
            "validation_success_ratio": float(cand.validation.get("success_ratio", 0.0)),
            "validation_failed": float(cand.validation.get("failed") or 0),
            **({"quality_score": float(cand.quality["quality_score"])} if cand.quality else {}),
            **{f"llm_{k}": float(llm[k]) for k in ("calls", "tokens_in", "tokens_out", "cost_usd") if llm},
        },
        tags={
            "synthreg.dataset": cand.name,
            "synthreg.version": str(ctx.number),
            "synthreg.status": ctx.status,
            "synthreg.action": cand.action,
            "synthreg.dvc_md5": dvc_md5,
            mlflow_int.WORKSPACE_TAG: ctx.ws.root.resolve().as_uri(),  # doctor finds orphaned runs by it
            **{k: str(v) for k, v in lineage.items() if v},
            **{f"tag.{k}": v for k, v in cand.tags.items()},
        },
        artifacts=[
            final / f
            for f in (
                "spec.yaml",
                "datacard.md",
                "datacard.json",
                "validation.json",
                "quality.json",
                "validation.html",
                "llm_calls.jsonl",
            )
            if (final / f).exists()
        ],
        dataset_name=f"{cand.name}@v{ctx.number}",
        dataset_uri=final.resolve().as_uri(),
        content_digest=cand.content_digest,
        dataset_tags={"synthreg.content_digest": cand.content_digest},
    )


def _git_commit(ctx: Context, event: AuditEvent) -> str:
    root, cand = ctx.ws.root, ctx.cand
    spec_file = root / "specs" / f"{cand.name}.yaml"
    old_spec = spec_file.read_bytes() if spec_file.exists() else None
    spec_file.parent.mkdir(exist_ok=True)
    spec_file.write_text(cand.spec_text, encoding="utf-8")

    def restore_spec() -> None:
        if old_spec is None:
            spec_file.unlink(missing_ok=True)
        else:
            spec_file.write_bytes(old_spec)

    ctx.undo.push(restore_spec)
    previous = git.head(root)
    small = [
        "spec.yaml",
        "manifest.json",
        "datacard.md",
        "datacard.json",
        "validation.json",
        ".gitignore",
        "derivation.json",
        "quality.json",
        "validation.html",
        "pii.json",
        "plots",
        "README.md",
        "croissant.json",
        "llm_calls.jsonl",
        "llm",
        "dvc.yaml",
        "dvc.lock",
    ]
    paths = [f"{ctx.rel_dir}/{f}" for f in small if (root / ctx.rel_dir / f).exists()]
    git.add(root, [*paths, f"specs/{cand.name}.yaml"])
    ctx.undo.push(lambda: git.reset_to(root, previous))
    title = f"{cand.action} {cand.name}@v{ctx.number} ({ctx.status})"
    msg = f"{title}\n\n{cand.message}\n\n{anchor_lines(event)}"
    return git.commit(root, msg)


def build_manifest(
    ctx: Context, created_at: str, dvc_md5: str, run_id: str, audit_head: str
) -> dict[str, Any]:
    """Every fact needed to rebuild the version's DB rows (``registry doctor --rebuild``)."""
    cand = ctx.cand
    generation = dict(cand.generation or {})
    if generation:
        generation.update(
            peak_rss_mb=round(peak_rss_mb(), 1),
            host=socket.gethostname(),
            synthreg_version=synthreg.__version__,
            libraries=library_versions(),
            timings={k: round(v, 4) for k, v in ctx.clock.timings.items()},
        )
    return {
        "manifest_version": 1,
        "dataset": cand.name,
        "version": ctx.number,
        "parent": ctx.parent,
        "action": cand.action,
        "restored_from": cand.restored_from,
        "derived_from": cand.derived_from,
        "derivation": cand.derivation,
        "status": ctx.status,
        "created_at": created_at,
        "created_by": ctx.actor,
        "message": cand.message,
        "tags": cand.tags,
        "description": cand.spec.description,
        "content_digest": cand.content_digest,
        "spec_sha256": cand.spec.sha256(),
        "seed": cand.spec.seed,
        "model": cand.model,
        "tables": {n: {"rows": cand.rows[n], "digest": cand.table_digests[n]} for n in cand.rows},
        "files": cand.files,
        "params": cand.params,
        "generation": generation or None,
        **({"llm": cand.llm} if cand.llm else {}),
        "validation": cand.validation_summary,
        "dvc": {"stage": ctx.stage_name, "md5": dvc_md5, "file": ctx.dvc_file},
        "mlflow": {"run_id": run_id, "experiment": f"synthreg/{cand.name}"},
        "audit_head": audit_head,
    }
