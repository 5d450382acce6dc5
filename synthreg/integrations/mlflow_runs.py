"""MLflow runs that are not generation runs: the TSTR/TRTR models of ``registry evaluate``, the
evaluation metrics added to a version's run, and the runs ``registry compare`` reads back."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from synthreg.errors import IntegrationError
from synthreg.integrations.mlflow import _client, _experiment_id, failure

__all__ = ["EVALUATION_EXPERIMENT", "log_metrics", "log_run", "read_runs"]

#: the experiment the TSTR and TRTR runs of ``registry evaluate`` go to
EVALUATION_EXPERIMENT = "synthreg-evaluation"


def log_run(
    tracking_uri: str,
    artifact_root: Path,
    *,
    experiment: str,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
) -> str:
    """Create a finished run with params, metrics and tags; return its id."""
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = _client(tracking_uri)
        exp_id = _experiment_id(client, experiment, artifact_root, tracking_uri)
        run_id = str(client.create_run(exp_id, run_name=run_name).info.run_id)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.set_terminated(run_id, status="FINISHED")
        return run_id
    except IntegrationError:
        raise
    except Exception as exc:
        raise failure(tracking_uri, f"log run {run_name}", exc) from exc


def log_metrics(tracking_uri: str, run_id: str, metrics: Mapping[str, float]) -> bool:
    """Add metrics to an existing (finished) run; False when MLflow refused (logged as a warning)."""
    from mlflow.entities import Metric

    try:
        _client(tracking_uri).log_batch(
            run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()]
        )
    except Exception as exc:
        logging.getLogger(__name__).warning("could not log metrics to MLflow run %s: %s", run_id, exc)
        return False
    return True


def read_runs(tracking_uri: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Name, status, metrics, params and tags of each run; a run MLflow no longer has is
    returned with ``missing: True``."""
    client = _client(tracking_uri)
    out = []
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception:
            out.append({"run_id": run_id, "missing": True, "metrics": {}, "params": {}, "tags": {}})
            continue
        out.append(
            {
                "run_id": run_id,
                "missing": False,
                "run_name": run.info.run_name,
                "experiment_id": run.info.experiment_id,
                "status": run.info.status,
                "metrics": dict(run.data.metrics),
                "params": dict(run.data.params),
                "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
            }
        )
    return out
