"""Every environment variable synthreg reads or sets, in one place."""

from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Overrides the MLflow tracking URI of every workspace (tests share one DB this way).
MLFLOW_TRACKING_URI = "SYNTHREG_MLFLOW_TRACKING_URI"
#: Overrides the actor recorded in audit events (default: the OS user).
ACTOR = "SYNTHREG_ACTOR"
#: Default number of generation workers.
WORKERS = "SYNTHREG_WORKERS"
#: Show tracebacks of unexpected errors.
DEBUG = "SYNTHREG_DEBUG"
#: ``1``: generation workers run the per-row expectations on the parts they write; ``0``: never.
#: Unset: on a remote Dask cluster, or with 4+ pool workers when Great Expectations is imported.
FUSED = "SYNTHREG_FUSED"


def offline_defaults() -> dict[str, str]:
    """Variables that keep the stack offline and quiet (STACK.md); user values win."""
    site_cache = Path(tempfile.gettempdir()) / f"synthreg-dvc-site-{os.getuid()}"
    return {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # a tracking server's "View run" links would land on stdout, which is for data (--json)
        "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
        # a tracking server that is down fails a command in seconds, not after minutes of retries
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(site_cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",  # the text extra's model loads from site-packages
        "GX_ANALYTICS_ENABLED": "false",
        "MPLBACKEND": "Agg",
        "GIT_PYTHON_REFRESH": "quiet",
    }


def apply_offline_defaults() -> None:
    """Set the offline defaults with ``setdefault``: a value the user set is kept."""
    for key, value in offline_defaults().items():
        os.environ.setdefault(key, value)


#: The authenticated user of a request of ``registry serve`` (set per request, in its thread).
_REQUEST_ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("synthreg_actor", default=None)


@contextlib.contextmanager
def acting_as(user: str) -> Iterator[None]:
    """Within this block (this thread or task), writes are recorded as ``user``'s."""
    token = _REQUEST_ACTOR.set(user)
    try:
        yield
    finally:
        _REQUEST_ACTOR.reset(token)


def actor() -> str:
    """Who is acting: the authenticated user of a service request, else ``$SYNTHREG_ACTOR``, else
    the OS user."""
    authenticated = _REQUEST_ACTOR.get()
    if authenticated:
        return authenticated
    explicit = os.environ.get(ACTOR)
    if explicit:
        return explicit
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


class _Process:
    """Facts about this process that are not in the environment."""

    #: True in the ``registry`` command, one command per process. ``create`` then imports Great
    #: Expectations and MLflow in its helper process, off its own critical path. A library user's
    #: long-lived process imports them once, itself, and every helper forked later inherits them.
    one_shot = False


def mark_one_shot() -> None:
    """This process runs one command and exits (the ``registry`` entry point calls this)."""
    _Process.one_shot = True


def one_shot() -> bool:
    """Whether :func:`mark_one_shot` was called in this process."""
    return _Process.one_shot


def worker_context() -> Any:
    """The ``multiprocessing`` context of synthreg's worker pools: fork where there is one (the
    workers start with this process's imports), else spawn."""
    import multiprocessing

    return multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
