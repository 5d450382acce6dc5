"""Storing an evaluation with its version, all or nothing.

``evaluation.json`` and ``evaluation.html`` go into the version directory after the version was
made, so they are not among its immutable files: like the DataCards, they are committed to the
workspace's git by the write that makes them, and ``registry verify`` checks them against git
HEAD and ``evaluation.json`` against the sha256 that the newest ``evaluate`` audit event of the
version records. A later evaluate replaces both (a new event, a new commit).

One write, under the workspace lock: the TSTR and TRTR MLflow runs (made first), a ``use`` event
and usage row for each (context ``tstr`` / ``trtr``), the files, the ``evaluate`` event with the
refreshed DataCard, and an ``approve`` event when the review policy now approves a pending
version. A failure undoes it all: runs deleted, files and git HEAD put back, the audit log
truncated, the DB transaction rolled back. The evaluation metrics are then added to the version's
own MLflow run (best effort: the evaluation is already recorded).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from synthreg import env
from synthreg.integrations import git, mlflow_runs
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry.audit import log_size, truncate_log
from synthreg.registry.evaluate import EvaluationRun
from synthreg.registry.events import record
from synthreg.registry.policy import EVALUATION_FACTS, evaluate_rule
from synthreg.registry.query import resolve
from synthreg.registry.records import move_current
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import AuditEvent, Dataset, Version, write_session
from synthreg.registry.usage import record_use
from synthreg.registry.workspace import Workspace

__all__ = ["EVALUATION_FILES", "evaluation_problems", "read_evaluation", "store"]

#: the files evaluate writes into a version directory
EVALUATION_FILES = ("evaluation.json", "evaluation.html")


def read_evaluation(vdir: Path) -> dict[str, Any] | None:
    """The version's evaluation.json, or None before any evaluate."""
    path = vdir / "evaluation.json"
    return json.loads(path.read_text()) if path.is_file() else None


def store(ws: Workspace, run: EvaluationRun) -> dict[str, Any]:
    """Record ``run`` with its version (see the module docstring); return evaluation.json's data."""
    from synthreg.registry.evaluate_report import render_html

    staging = Path(tempfile.mkdtemp(prefix="synthreg-evaluate-"))
    run_ids: dict[str, str] = {}
    try:
        run_ids = _model_runs(ws, run)
        data = {
            **run.data,
            "evaluated_by": env.actor(),
            "mlflow_runs": run_ids,
            "seconds": {k: v["seconds"] for k, v in run.stages.items()},
        }
        (staging / "evaluation.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        (staging / "evaluation.html").write_text(render_html(data), encoding="utf-8")
        data["policy"] = _commit(ws, run, staging, run_ids)
    except BaseException:
        for run_id in run_ids.values():
            mlflow_int.delete_run(ws.settings.mlflow_tracking_uri, run_id)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    data["mlflow_metrics_logged"] = _log_summary(ws, run)
    return data


def _model_runs(ws: Workspace, run: EvaluationRun) -> dict[str, str]:
    util = run.utility
    if util is None:
        return {}
    out = {}
    for kind in ("tstr", "trtr"):
        out[kind] = mlflow_runs.log_run(
            ws.settings.mlflow_tracking_uri,
            ws.settings.mlflow_artifact_root,
            experiment=mlflow_runs.EVALUATION_EXPERIMENT,
            run_name=f"{kind} {run.label} {util.target}",
            params={
                "target": util.target,
                "task": util.task,
                "model": util.model,
                "trained_on": "synthetic" if kind == "tstr" else "real",
                "train_rows": util.rows[kind],
                "test_rows": util.rows["test"],
                "seed": run.data["seed"],
            },
            metrics=getattr(util, kind),
            tags={"synthreg.evaluation": kind, "synthreg.evaluated": run.label},
        )
    return out


def _commit(ws: Workspace, run: EvaluationRun, staging: Path, run_ids: dict[str, str]) -> dict[str, Any]:
    with ws.lock():
        head, size = git.head(ws.root), log_size(ws.root)
        backup = Path(tempfile.mkdtemp(prefix="synthreg-evaluate-old-"))
        vdir: Path | None = None
        try:
            with write_session(ws.engine) as session:
                dataset, version = resolve(session, parse_ref(run.label))
                vdir = ws.root / version.path
                _swap(staging, vdir, backup)
                _uses(ws, session, dataset, version, run_ids)
                git.add(ws.root, [f"{version.path}/{name}" for name in EVALUATION_FILES])
                sha = hashlib.sha256((vdir / "evaluation.json").read_bytes()).hexdigest()
                details = {"sha256": sha, "summary": run.data["summary"], "mlflow_runs": run_ids}
                record(
                    ws,
                    session,
                    actor=env.actor(),
                    action="evaluate",
                    dataset=dataset.name,
                    version=version.number,
                    details=details,
                    card=(dataset, version),
                )
                return _apply_policy(ws, session, dataset, version, run.data["summary"])
        except BaseException:
            if vdir is not None:
                _swap(backup, vdir, None)
            git.reset_to(ws.root, head)
            truncate_log(ws.root, size)
            raise
        finally:
            shutil.rmtree(backup, ignore_errors=True)


def _swap(source: Path, vdir: Path, backup: Path | None) -> None:
    """Move the evaluation files of ``source`` into ``vdir`` (the old ones into ``backup``)."""
    for name in EVALUATION_FILES:
        old = vdir / name
        if backup is not None and old.exists():
            shutil.move(old, backup / name)
        elif old.exists():
            old.unlink()
        if (source / name).exists():
            shutil.move(source / name, old)


def _uses(
    ws: Workspace, session: Session, dataset: Dataset, version: Version, run_ids: dict[str, str]
) -> None:
    """Each model run used the version: an MLflow dataset input, a usage row, a ``use`` event."""
    uri = ws.settings.mlflow_tracking_uri
    for context, run_id in run_ids.items():
        found = mlflow_int.get_run(uri, run_id) or {}
        experiment = str(found.get("experiment_id", ""))
        record_use(ws, session, dataset, version, run_id, experiment, context, refresh_card=False)


def _apply_policy(
    ws: Workspace, session: Session, dataset: Dataset, version: Version, summary: dict[str, Any]
) -> dict[str, Any]:
    """A pending version that the review rule approves now that its evaluation facts are known."""
    rule = ws.settings.auto_approve.strip()
    uses_evaluation = bool(set(re.findall(r"[A-Za-z_]+", rule)) & set(EVALUATION_FACTS))
    outcome = {"rule": rule, "before": version.status, "after": version.status}
    passed = bool((version.validation or {}).get("success"))
    if version.status != "pending" or not passed or ws.settings.require_human or not uses_evaluation:
        return outcome
    facts = {
        "validation_passed": True,
        "quality_score": (version.quality or {}).get("quality_score"),
        "success_ratio": (version.validation or {}).get("success_ratio"),
        "failed_checks": (version.validation or {}).get("failed"),
        "rows": version.total_rows,
        **{k: summary.get(k) for k in EVALUATION_FACTS},
    }
    if not evaluate_rule(rule, facts):
        return outcome
    version.status = "approved"
    session.add(version)
    session.flush()
    assert dataset.id is not None
    current = move_current(session, dataset.id)
    note = f"review policy {rule!r} after evaluate"
    record(
        ws,
        session,
        actor=env.actor(),
        action="approve",
        dataset=dataset.name,
        version=version.number,
        details={"before": "pending", "after": "approved", "note": note, "current": current},
        card=(dataset, version),
    )
    return {**outcome, "after": "approved"}


def _log_summary(ws: Workspace, run: EvaluationRun) -> bool:
    """The summary as ``evaluation.*`` metrics of the version's own MLflow run."""
    from synthreg.registry.store import read_session

    with read_session(ws.engine) as session:
        _, version = resolve(session, parse_ref(run.label))
    metrics = {f"evaluation.{k}": float(v) for k, v in run.data["summary"].items() if v is not None}
    if not version.mlflow_run_id or not metrics:
        return False
    return mlflow_runs.log_metrics(ws.settings.mlflow_tracking_uri, version.mlflow_run_id, metrics)


def evaluation_problems(ws: Workspace, session: Session, dataset: str, version: Version) -> list[str]:
    """evaluation.json against the sha256 of the newest ``evaluate`` event of the version."""
    event = session.exec(
        select(AuditEvent)
        .where(
            AuditEvent.action == "evaluate",
            AuditEvent.dataset == dataset,
            AuditEvent.version == version.number,
        )
        .order_by(AuditEvent.seq.desc())  # type: ignore[union-attr]
    ).first()
    path = ws.root / version.path / "evaluation.json"
    if event is None:
        return (
            [f"{version.path}/evaluation.json exists but no evaluate event records it: remove it"]
            if path.exists()
            else []
        )
    if not path.is_file():
        return [
            f"{version.path}/evaluation.json is missing (recorded by audit event {event.seq}): "
            f"restore it with git checkout HEAD -- {version.path}/evaluation.json"
        ]
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    recorded = str((event.details or {}).get("sha256", ""))
    if actual != recorded:
        return [
            f"{version.path}/evaluation.json hashes to {actual[:16]}, not to {recorded[:16]} recorded by "
            f"audit event {event.seq}: it was edited; restore it from the commit of that event, or run "
            "registry evaluate again"
        ]
    return []
