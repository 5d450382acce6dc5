"""``registry use`` / ``synthreg.log_input`` and ``registry lineage``: who used a version,
where it came from, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, or_, select

from synthreg import env
from synthreg.errors import NotFoundError
from synthreg.integrations import mlflow as mlflow_int
from synthreg.registry.events import record
from synthreg.registry.query import resolve
from synthreg.registry.refs import parse_ref
from synthreg.registry.store import Dataset, GenerationRun, Usage, Version, read_session, write_session
from synthreg.registry.workspace import Workspace

__all__ = ["UseResult", "lineage", "record_use", "use"]


@dataclass(frozen=True)
class UseResult:
    """A recorded use of a version by an MLflow run."""

    ref: str
    run_id: str
    experiment_id: str
    context: str
    digest: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ref": self.ref,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "context": self.context,
            "mlflow_digest": self.digest[: mlflow_int.DIGEST_CHARS],
        }


def use(ws: Workspace, ref: str, run_id: str, context: str = "training") -> UseResult:
    """Log the version as a dataset input of MLflow run ``run_id`` and record a Usage row."""
    uri = ws.settings.mlflow_tracking_uri
    run = mlflow_int.get_run(uri, run_id)
    if run is None:
        raise NotFoundError(
            f"MLflow run {run_id!r} does not exist in {uri}: check the run id "
            "(mlflow ui, or mlflow.active_run().info.run_id)"
        )
    with ws.lock(), write_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        label = record_use(ws, session, dataset, version, run_id, run["experiment_id"], context)
    return UseResult(label, run_id, run["experiment_id"], context, version.content_digest)


def record_use(
    ws: Workspace,
    session: Session,
    dataset: Dataset,
    version: Version,
    run_id: str,
    experiment_id: str,
    context: str,
    *,
    refresh_card: bool = True,
) -> str:
    """Inside the caller's write transaction: the version as a dataset input of MLflow run
    ``run_id``, a Usage row and a ``use`` event (and the DataCard rewritten, unless the caller
    rewrites it later itself). Returns the version's label."""
    label = f"{dataset.name}@v{version.number}"
    uri = ws.settings.mlflow_tracking_uri
    mlflow_int.log_dataset(
        uri, run_id, label, (ws.root / version.path).resolve().as_uri(), version.content_digest, context
    )
    assert version.id is not None
    actor = env.actor()
    session.add(
        Usage(version_id=version.id, run_id=run_id, experiment_id=experiment_id, context=context, actor=actor)
    )
    record(
        ws,
        session,
        actor=actor,
        action="use",
        dataset=dataset.name,
        version=version.number,
        details={"run_id": run_id, "context": context, "experiment_id": experiment_id},
        card=(dataset, version) if refresh_card else None,
    )
    return label


def _relatives(session: Session, dataset: Dataset, version: Version) -> dict[str, Any]:
    links = {
        "parent": version.parent,
        "restored_from": version.restored_from,
        "derived_from": version.derived_from,
    }
    children = session.exec(
        select(Version).where(
            Version.dataset_id == dataset.id,
            or_(
                Version.parent == version.number,
                Version.restored_from == version.number,
                Version.derived_from == version.number,
            ),
        )
    ).all()
    kids = [
        {
            "version": c.number,
            "relation": "restored_from"
            if c.restored_from == version.number
            else "derived_from"
            if c.derived_from == version.number
            else "parent",
            "status": c.status,
        }
        for c in children
    ]
    return {"parents": {k: v for k, v in links.items() if v is not None}, "children": kids}


def lineage(ws: Workspace, ref: str) -> dict[str, Any]:
    """Parents, children, the generation run, and every MLflow run and model that used the version."""
    uri = ws.settings.mlflow_tracking_uri
    with read_session(ws.engine) as session:
        dataset, version = resolve(session, parse_ref(ref))
        relatives = _relatives(session, dataset, version)
        run = session.exec(select(GenerationRun).where(GenerationRun.version_id == version.id)).first()
        usages = session.exec(select(Usage).where(Usage.version_id == version.id)).all()
    recorded: dict[str, dict[str, Any]] = {
        u.run_id: {"run_id": u.run_id, "context": u.context, "found_by": ["registry"]} for u in usages
    }
    for found in mlflow_int.find_runs_by_digest(uri, version.content_digest):
        if found["made_by_synthreg"]:
            continue  # the run that made this (or an identical) version, not a consumer
        entry = recorded.setdefault(found["run_id"], {"run_id": found["run_id"], "found_by": []})
        entry["found_by"].append("mlflow")
        entry.update(experiment_id=found["experiment_id"], run_name=found["run_name"])
    return {
        "ref": f"{dataset.name}@v{version.number}",
        "content_digest": version.content_digest,
        **relatives,
        "generation": None
        if run is None
        else {
            "model": run.model,
            "seed": run.seed,
            "mlflow_run_id": run.mlflow_run_id,
            "git_commit": run.git_commit,
        },
        "mlflow_run_id": version.mlflow_run_id,
        "consumers": sorted(recorded.values(), key=lambda r: r["run_id"]),
        "models": mlflow_int.find_models_for_runs(uri, list(recorded)),
    }
