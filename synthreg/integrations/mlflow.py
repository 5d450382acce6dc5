"""MLflow: one run per generated version, with the dataset as a run input.

MLflow limits dataset digests to 36 characters: the run logs the first 32 hex
characters of the content digest as the digest and the full value as a tag.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthreg.errors import IntegrationError, first_line

__all__ = [
    "DIGEST_CHARS",
    "RunRecord",
    "delete_run",
    "failure",
    "find_models_for_runs",
    "find_runs_by_digest",
    "get_run",
    "is_server",
    "log_dataset",
    "log_version",
    "set_tag",
    "workspace_runs",
]

DIGEST_CHARS = 32


@dataclass
class RunRecord:
    """What to log for one version."""

    experiment: str
    run_name: str
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    artifacts: list[Path]
    dataset_name: str
    dataset_uri: str
    content_digest: str
    dataset_tags: Mapping[str, str] = field(default_factory=dict)


def _client(tracking_uri: str) -> Any:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def preload(tracking_uri: str) -> None:
    """Import MLflow and open the tracking store (a local DB is checked and migrated once per
    process), so that a later :func:`log_version` in this process starts at once."""
    _client(tracking_uri)


def preload_modules() -> None:
    """Import MLflow and its SQL tracking store, opening nothing (the warm server's imports)."""
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store
    import mlflow.tracking  # noqa: F401


def forget_inherited_connections() -> None:
    """In a forked child: drop the tracking stores' pooled DB connections inherited from the
    parent (SQLAlchemy's ``dispose(close=False)``), so the child opens its own. A connection
    used by two processes at once can corrupt SQLite's locking."""
    import sys

    store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    engines = getattr(getattr(store, "SqlAlchemyStore", None), "_engine_map", {})
    for engine in list(engines.values()):
        engine.dispose(close=False)


def is_server(tracking_uri: str) -> bool:
    """True for a tracking server (``http(s)://``), False for a local store."""
    return tracking_uri.startswith(("http://", "https://"))


def _experiment_id(client: Any, name: str, artifact_root: Path, tracking_uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    if is_server(tracking_uri):  # the server keeps artifacts where it was told (--artifacts-destination)
        return str(client.create_experiment(name))
    location = (artifact_root / name.replace("/", "_")).resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def failure(tracking_uri: str, what: str, exc: BaseException) -> IntegrationError:
    """An MLflow store that is down or refuses: the URI (never a password) and the fix."""
    from synthreg.config import redact_url

    detail = first_line(exc)
    if is_server(tracking_uri):
        fix = (
            "check that the tracking server is up and reachable (mlflow server ...), that its backend "
            "store and artifact store answer, and MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD "
            "if it needs them"
        )
    else:
        fix = "check that the MLflow DB file is readable and writable"
    return IntegrationError(f"MLflow at {redact_url(tracking_uri)} could not {what}: {detail}; {fix}")


def _dataset_input(record: RunRecord) -> Any:
    return _input(
        record.dataset_name, record.dataset_uri, record.content_digest, "generated", dict(record.dataset_tags)
    )


def _input(name: str, uri: str, content_digest: str, context: str, tags: dict[str, str]) -> Any:
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": both are local
        source = resolve_dataset_source(uri)
    dataset = MetaDataset(  # type: ignore[abstract]  # MetaDataset is concrete at runtime
        source, name=name, digest=content_digest[:DIGEST_CHARS]
    )
    input_tags = [InputTag(key="mlflow.data.context", value=context)]
    input_tags += [InputTag(key=k, value=str(v)) for k, v in tags.items()]
    return DatasetInput(dataset=dataset._to_mlflow_entity(), tags=input_tags)


def get_run(tracking_uri: str, run_id: str) -> dict[str, Any] | None:
    """A run's id, experiment, name and status, or None when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        run = _client(tracking_uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise failure(tracking_uri, f"read run {run_id}", exc) from exc
    except Exception as exc:
        raise failure(tracking_uri, f"read run {run_id}", exc) from exc
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "status": run.info.status,
    }


def log_dataset(
    tracking_uri: str, run_id: str, name: str, uri: str, content_digest: str, context: str
) -> None:
    """Log a version as a dataset input of an existing run (finished runs accept inputs too)."""
    try:
        tags = {"synthreg.content_digest": content_digest}
        _client(tracking_uri).log_inputs(run_id, datasets=[_input(name, uri, content_digest, context, tags)])
    except Exception as exc:
        raise failure(tracking_uri, f"log {name} to run {run_id}", exc) from exc


def set_tag(tracking_uri: str, run_id: str, key: str, value: str) -> None:
    """Tag a run (best effort: an old run may be gone)."""
    try:
        _client(tracking_uri).set_tag(run_id, key, value)
    except Exception:
        logging.getLogger(__name__).warning("could not tag MLflow run %s", run_id)


def find_models_for_runs(tracking_uri: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Logged models whose source run is one of ``run_ids``."""
    if not run_ids:
        return []
    client = _client(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    try:
        models = client.search_logged_models(experiment_ids=exps)
    except Exception:  # an MLflow without logged models
        return []
    return [
        {"model_id": m.model_id, "name": m.name, "source_run_id": m.source_run_id}
        for m in models
        if m.source_run_id in set(run_ids)
    ]


def log_version(tracking_uri: str, artifact_root: Path, record: RunRecord) -> str:
    """Create a finished run for a version; return its run id."""
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = _client(tracking_uri)
        exp_id = _experiment_id(client, record.experiment, artifact_root, tracking_uri)
        run = client.create_run(exp_id, run_name=record.run_name, tags=dict(record.tags))
        run_id = str(run.info.run_id)
        params = [Param(k, str(v)[:6000]) for k, v in record.params.items()]
        metrics = [Metric(k, float(v), 0, 0) for k, v in record.metrics.items()]
        tags = [RunTag("synthreg.content_digest", record.content_digest)]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        client.log_inputs(run_id, datasets=[_dataset_input(record)])
        for path in record.artifacts:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED")
        return run_id
    except IntegrationError:
        raise
    except Exception as exc:
        raise failure(tracking_uri, f"log run {record.run_name}", exc) from exc


def delete_run(tracking_uri: str, run_id: str) -> None:
    """Delete a run (undo of a failed create); errors are ignored."""
    try:
        _client(tracking_uri).delete_run(run_id)
    except Exception:  # best effort: the version never became visible
        logging.getLogger(__name__).warning("could not delete MLflow run %s", run_id)


#: The tag naming the workspace (its root's file URI) that logged a version's run.
WORKSPACE_TAG = "synthreg.workspace"


def workspace_runs(tracking_uri: str, workspace_uri: str) -> list[dict[str, Any]]:
    """Active version runs (``synthreg/*`` experiments) that this workspace logged: id, name, start
    (epoch milliseconds)."""
    if "'" in workspace_uri:  # MLflow's filter strings cannot quote it
        return []
    try:
        client = _client(tracking_uri)
        exps = [e.experiment_id for e in client.search_experiments(filter_string="name LIKE 'synthreg/%'")]
        found: list[dict[str, Any]] = []
        token = None
        while exps:
            page = client.search_runs(
                exps,
                filter_string=f"tags.`{WORKSPACE_TAG}` = '{workspace_uri}'",
                max_results=1000,
                page_token=token,
            )
            found += [
                {"run_id": r.info.run_id, "run_name": r.info.run_name, "start_ms": r.info.start_time or 0}
                for r in page
            ]
            token = page.token
            if not token:
                break
        return found
    except Exception as exc:
        raise failure(tracking_uri, "search the workspace's runs", exc) from exc


def find_runs_by_digest(tracking_uri: str, content_digest: str) -> list[dict[str, Any]]:
    """Runs (any experiment) whose inputs include a dataset with this digest."""
    client = _client(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string=f"dataset.digest = '{content_digest[:DIGEST_CHARS]}'")
    return [
        {
            "run_id": r.info.run_id,
            "experiment_id": r.info.experiment_id,
            "run_name": r.info.run_name,
            "status": r.info.status,
            "made_by_synthreg": "synthreg.action" in r.data.tags,
        }
        for r in runs
    ]
