"""synthreg: a versioned registry for synthetic datasets, with governance.

>>> import synthreg
>>> reg = synthreg.open(".")                       # doctest: +SKIP
>>> v = reg.create("fitness", spec="examples/fitness.yaml", seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from synthreg.env import apply_offline_defaults

# Before any heavy library is imported anywhere: offline, no telemetry (STACK.md).
apply_offline_defaults()

__version__ = "0.1.0"
__all__ = ["__version__", "init", "log_input", "open"]

if TYPE_CHECKING:
    from synthreg.registry.api import Registry


def open(path: str | Path = ".") -> Registry:
    """Open the registry workspace at ``path`` (or the nearest one above it)."""
    from synthreg.registry.api import Registry

    return Registry.open(path)


def init(
    path: str | Path = ".",
    remote: str | None = None,
    *,
    db: str | None = None,
    endpoint: str | None = None,
    mlflow: str | None = None,
) -> Registry:
    """Create (or reopen) a registry workspace at ``path`` and return it.

    ``db``, ``remote`` (+ ``endpoint``) and ``mlflow`` choose team backends by URL; credentials
    come from the environment only.
    """
    from synthreg.registry.api import Registry

    return Registry.init(path, remote=remote, db=db, endpoint=endpoint, mlflow=mlflow)


def log_input(ref: str, context: str = "training", workspace: str | Path = ".") -> None:
    """Inside an active MLflow run: log ``ref`` as a dataset input and record the use.

    >>> with mlflow.start_run():                        # doctest: +SKIP
    ...     synthreg.log_input("fitness@v3")
    """
    import mlflow

    from synthreg.errors import UsageError

    run = mlflow.active_run()
    if run is None:
        raise UsageError("synthreg.log_input needs an active MLflow run: call it inside mlflow.start_run()")
    open(workspace).use(ref, run.info.run_id, context)
